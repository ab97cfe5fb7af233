"""One token call, whatever the HTTP stack carries it: the attempt's skeleton, written once.

An endpoint (requests', httpx's or httpx2's, aiohttp's) is a :class:`BlockingEndpoint` or
an :class:`AsyncEndpoint` that brings three things: its ``exchange`` (one POST, returning
the status, the body read up to the cap and the ``Retry-After`` header), the
:class:`~.._core.exchange.Failure` kinds of its exceptions (``failures``, or ``classify``),
and a ``scrub`` that takes the request body (the client secret, a refresh token) out of an
exception and its chain. The skeleton adds what every attempt does: nothing sent once the
deadline has passed; the whole exchange bounded by it (a socket watch in a thread,
``_socket_watch.py``; a cancel scope on an event loop); every failure an
:class:`~.._core.outcome.Outcome`, never an exception, except an interruption or a
cancellation from outside, which leaves scrubbed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .._core.exchange import (
    CappedBody,
    Failure,
    Timeout,
    deadline_passed,
    failure_outcome,
    timeouts,
)
from .._core.outcome import Outcome, response_outcome
from .._errors import without_tracebacks
from .._socket_watch import watch_for

if TYPE_CHECKING:
    from .._core.clock import Clock

#: What an exchange returns: status, body (``None``: past the cap), ``Retry-After``.
Answer = tuple[int, "bytes | None", "str | None"]
#: The body of a token call, called where the request is built (it holds the secrets).
Body = Callable[[], dict[str, str]]
#: Seconds an async exchange's response (or session) has to close once its attempt is
#: over, shielded from cancellation.
CLOSE_GRACE = 1.0


class Endpoint:
    """What the blocking and the async endpoints share: the configuration, and what an
    exception means."""

    #: What stopped an attempt, by the exception that says so. The first match wins; what
    #: none names (an OSError for a missing CA bundle, a URL the stack refuses) is OTHER.
    failures: tuple[tuple[type[Exception] | tuple[type[Exception], ...], Failure], ...] = ()

    def __init__(self, base_url: str, timeout: Timeout) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def classify(self, exc: Exception) -> Failure:
        """What ``exc``, raised by the exchange, says stopped the attempt."""
        return next((kind for cls, kind in self.failures if isinstance(exc, cls)), Failure.OTHER)

    def scrub(self, exc: BaseException) -> BaseException:
        """``exc`` without what would show the request body: here the tracebacks, whose
        frames hold it in their locals; enough for a stack whose exceptions hold no request."""
        return without_tracebacks(exc)

    def _failed(self, exc: BaseException, at_deadline: bool, sent: tuple[float, float]) -> Outcome:
        """The outcome of an exchange that raised ``exc``. An interruption or a cancellation
        (KeyboardInterrupt, SystemExit, an event loop's cancellation) is raised again, on its
        way, but without the frames below, whose locals hold the request body."""
        cause = self.scrub(exc)
        if not isinstance(exc, Exception):
            raise cause from None
        if at_deadline:
            return deadline_passed(*sent, cause)
        return failure_outcome(self.classify(exc), cause, sent_at=sent[0], sent_wall=sent[1])


class BlockingEndpoint(Endpoint):
    """A token endpoint whose exchange blocks its thread."""

    def exchange(self, url: str, body: Body, timeout: Timeout) -> Answer:
        """One POST of ``body()`` to ``url``, with the ``(connect, read)`` timeouts."""
        raise NotImplementedError

    def attempt(self, path: str, body: Body, deadline: float, clock: Clock) -> Outcome:
        """One POST to ``path`` before ``deadline`` (monotonic), its sockets shut down by a
        watch when the deadline passes; never raises for what the network or the server
        does."""
        sent = clock.monotonic(), clock.wall()
        left = deadline - sent[0]
        if left <= 0:
            return deadline_passed(*sent)
        with watch_for(left) as watch:
            try:
                answer = self.exchange(self.base_url + path, body, timeouts(self.timeout, left))
            except BaseException as exc:  # noqa: BLE001 - an outcome, or raised again scrubbed
                return self._failed(exc, watch.fired, sent)
            if watch.fired:
                # Cut off at the deadline: what arrived may look complete (http.client takes a
                # connection closed inside the headers for their end) but is not.
                return deadline_passed(*sent)
        return response_outcome(*answer, sent_at=sent[0], sent_wall=sent[1], wall_now=clock.wall())


class AsyncEndpoint(Endpoint):
    """A token endpoint whose exchange runs on an event loop (asyncio or trio)."""

    async def exchange(self, url: str, body: Body, timeout: Timeout) -> Answer:
        """One POST of ``body()`` to ``url``, with the ``(connect, read)`` timeouts."""
        raise NotImplementedError

    async def attempt(self, path: str, body: Body, deadline: float, clock: Clock) -> Outcome:
        """One POST to ``path`` before ``deadline`` (monotonic), in a cancel scope that ends
        it there; never raises for what the network or the server does. A cancellation from
        outside is raised, scrubbed."""
        import anyio

        sent = clock.monotonic(), clock.wall()
        left = deadline - sent[0]
        if left <= 0:
            return deadline_passed(*sent)
        with anyio.move_on_after(left) as scope:
            try:
                answer = await self.exchange(
                    self.base_url + path, body, timeouts(self.timeout, left)
                )
            except BaseException as exc:  # noqa: BLE001 - an outcome, or raised again scrubbed
                # The deadline's own cancellation is raised again too: the scope catches it on
                # its way out.
                return self._failed(exc, scope.cancel_called, sent)
        if scope.cancelled_caught:
            return deadline_passed(*sent)
        return response_outcome(*answer, sent_at=sent[0], sent_wall=sent[1], wall_now=clock.wall())


def read_capped(
    chunks: Iterable[bytes], undecodable: type[Exception], *, success: bool
) -> bytes | None:
    """The body in its decoded ``chunks``, or ``None`` once it grows past the cap. An error
    body that does not decode (``undecodable`` raised) reads as empty: its status says
    enough. A token body (``success``) that does not decode raises."""
    body = CappedBody()
    try:
        for chunk in chunks:
            if not body.add(chunk):
                break
    except undecodable:
        if success:
            raise
        return b""
    return body.content
