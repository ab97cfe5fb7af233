"""One token call, whatever the HTTP stack carries it: the attempt's skeleton, written once.

An endpoint (requests', httpx's or httpx2's, aiohttp's) brings three things: its exchange
(one POST, returning the status, the body read up to the cap and the ``Retry-After``
header), a map from its exceptions to the :class:`~.._core.exchange.Failure` kinds, and a
scrub that takes the request body (the client secret, a refresh token) out of an exception
and its chain. The skeleton adds what every attempt does: nothing sent once the deadline
has passed; the whole exchange bounded by it (a socket watch in a thread, a cancel scope on
an event loop); every failure an :class:`~.._core.outcome.Outcome`, never an exception,
except an interruption or a cancellation from outside, which leaves scrubbed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .._core.exchange import Failure, Timeout, deadline_passed, failure_outcome, timeouts
from .._core.outcome import Outcome, response_outcome
from .._errors import without_tracebacks

if TYPE_CHECKING:
    from .._core.clock import Clock
    from .._socket_watch import Watch

#: What an exchange returns: status, body (``None``: past the cap), ``Retry-After``.
Answer = tuple[int, "bytes | None", "str | None"]
#: The body of a token call, called where the request is built (it holds the secrets).
Body = Callable[[], dict[str, str]]
Classify = Callable[[Exception], Failure]
Scrub = Callable[[BaseException], BaseException]
#: Seconds an async exchange's response (or session) has to close once its attempt is
#: over, shielded from cancellation.
CLOSE_GRACE = 1.0


def attempt(
    exchange: Callable[[Timeout, Watch], Answer],
    watch: Callable[[float], contextlib.AbstractContextManager[Watch]],
    classify: Classify,
    scrub: Scrub,
    timeout: Timeout,
    deadline: float,
    clock: Clock,
) -> Outcome:
    """One blocking exchange before ``deadline`` (monotonic), its sockets shut down by
    ``watch`` when the deadline passes."""
    sent_at, sent_wall = clock.monotonic(), clock.wall()
    left = deadline - sent_at
    if left <= 0:
        return deadline_passed(sent_at, sent_wall)
    with watch(left) as watching:
        try:
            answer = exchange(timeouts(timeout, left), watching)
        except BaseException as exc:  # noqa: BLE001 - an outcome, or raised again scrubbed
            return _failed(exc, watching.fired, classify, scrub, sent_at, sent_wall)
        if watching.fired:
            # Cut off at the deadline: what arrived may look complete (http.client takes a
            # connection closed inside the headers for their end) but is not.
            return deadline_passed(sent_at, sent_wall)
    return response_outcome(*answer, sent_at=sent_at, sent_wall=sent_wall, wall_now=clock.wall())


async def attempt_async(
    exchange: Callable[[Timeout], Awaitable[Answer]],
    classify: Classify,
    timeout: Timeout,
    deadline: float,
    clock: Clock,
    scrub: Scrub = without_tracebacks,
) -> Outcome:
    """One exchange on an event loop (asyncio or trio) before ``deadline``, in a cancel
    scope that ends it there. A cancellation from outside is raised, scrubbed. The default
    ``scrub``, the tracebacks only, is for a stack whose exceptions hold no request."""
    import anyio

    sent_at, sent_wall = clock.monotonic(), clock.wall()
    left = deadline - sent_at
    if left <= 0:
        return deadline_passed(sent_at, sent_wall)
    with anyio.move_on_after(left) as scope:
        try:
            answer = await exchange(timeouts(timeout, left))
        except BaseException as exc:  # noqa: BLE001 - an outcome, or raised again scrubbed
            # The deadline's own cancellation is raised again too: the scope catches it on
            # its way out.
            return _failed(exc, scope.cancel_called, classify, scrub, sent_at, sent_wall)
    if scope.cancelled_caught:
        return deadline_passed(sent_at, sent_wall)
    return response_outcome(*answer, sent_at=sent_at, sent_wall=sent_wall, wall_now=clock.wall())


def _failed(
    exc: BaseException,
    at_deadline: bool,
    classify: Classify,
    scrub: Scrub,
    sent_at: float,
    sent_wall: float,
) -> Outcome:
    """The outcome of an exchange that raised ``exc``. An interruption or a cancellation
    (KeyboardInterrupt, SystemExit, an event loop's cancellation) is raised again, on its
    way, but without the frames below, whose locals hold the request body."""
    cause = scrub(exc)
    if not isinstance(exc, Exception):
        raise cause from None
    if at_deadline:
        return deadline_passed(sent_at, sent_wall, cause)
    return failure_outcome(classify(exc), cause, sent_at=sent_at, sent_wall=sent_wall)
