"""Running a renewal's steps (``_core/renewal.py``): one dispatch, two kinds of I/O.

The renewal decides and yields steps; a runner carries each one out and sends back its
result, or throws in the exception it raised. The dispatch is written once
(:func:`advance`, and ``_CacheSteps`` for the cache's steps); only the I/O differs:

- :func:`run_blocking`, in the calling thread: a ``Send`` through a blocking endpoint
  (requests', ``httpx.Client``'s), a ``Sleep`` through the clock, the cache's steps as
  plain calls;
- :func:`run_async`, on an event loop (asyncio or trio, through anyio), never blocking it: a
  ``Send`` through an async endpoint, a ``Sleep`` through anyio, and the cache's steps on a
  thread of the renewal's own. A token cache is a blocking object, and its locks belong to
  the thread that took them (filelock's and redis-py's are thread-local), so lock, load,
  save and unlock all run on that one thread, one at a time, in order. A lock that thread
  takes after the renewal stopped waiting for it (cancelled at an event loop's end, say) is
  released there as soon as it is taken, never left held.

The renewal's own code (between two steps) runs under the source's lock over the lifecycle,
held for microseconds, never across I/O, a sleep or an ``await``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._core.steps import Load, Lock, Save, Send, Sleep, Step, Unlock
from .._core.token import Token

if TYPE_CHECKING:
    from .._caches.protocol import TokenCache
    from .._core.clock import Clock
    from .._core.outcome import Outcome
    from .._core.renewal import Steps
    from .._telemetry import Renewal
    from .source import TokenSource

T = TypeVar("T")
Body = Callable[[], dict[str, str]]


class Endpoint(Protocol):
    """A blocking token endpoint: one attempt at a time, never raising for what the network
    or the server does."""

    def attempt(self, path: str, body: Body, deadline: float, clock: Clock) -> Outcome: ...

    def close(self) -> None:
        """Drop idle connections (a private session's; a user's stays as it is)."""


class AsyncEndpoint(Protocol):
    """An async token endpoint (``httpx.AsyncClient``'s, aiohttp's)."""

    async def attempt(self, path: str, body: Body, deadline: float, clock: Clock) -> Outcome: ...


def advance(
    steps: Steps, state_lock: threading.Lock, result: object, error: BaseException | None
) -> Step | Token:
    """Send the last step's ``result`` (or throw its ``error``) into ``steps`` under
    ``state_lock``: the next step, or the token once the renewal returned."""
    with state_lock:
        try:
            return steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            token: Token = done.value
            return token


class _CacheSteps:
    """The cache's steps as plain calls, with the lock they hold."""

    def __init__(self, cache: TokenCache | None) -> None:
        self.cache = cache
        self.held = contextlib.ExitStack()  # the lock a Lock step took, until its Unlock

    def run(self, step: Step) -> object:
        """Carry out the cache ``step``, in the thread the cache's locks belong to."""
        cache = self.cache
        assert cache is not None
        if isinstance(step, Lock):
            return self.held.enter_context(cache.lock(step.key, step.timeout))
        if isinstance(step, Load):
            return cache.load(step.key)
        if isinstance(step, Save):
            cache.save(step.key, step.data, step.ttl)
            return None
        assert isinstance(step, Unlock)
        self.held.close()
        return None


def run_blocking(steps: Steps, endpoint: Endpoint, source: TokenSource, renewal: Renewal) -> Token:
    """Run ``steps`` to its end in this thread; each token call recorded in ``renewal``. The
    endpoint's idle connections are dropped afterwards: token calls are minutes apart, and a
    pooled one would only be dropped by the server (or reused by a forked child)."""
    cache_steps, clock = _CacheSteps(source.cache), source.clock
    result: object = None
    error: BaseException | None = None
    try:
        while not isinstance(step := advance(steps, source.lock, result, error), Token):
            try:
                if isinstance(step, Send):
                    with renewal.attempt(step.path) as attempt:
                        result = endpoint.attempt(step.path, step.body, step.deadline, clock)
                        attempt.answered(result)
                elif isinstance(step, Sleep):
                    clock.sleep(step.seconds)
                    result = None
                else:
                    result = cache_steps.run(step)
                error = None
            except BaseException as exc:  # noqa: BLE001 - thrown into the renewal, which decides
                result, error = None, exc
        return step
    finally:
        endpoint.close()


async def run_async(
    steps: Steps, endpoint: AsyncEndpoint, source: TokenSource, renewal: Renewal
) -> Token:
    """Run ``steps`` to its end on this event loop; see the module docstring."""
    import anyio

    cache_steps, clock = _CacheSteps(source.cache), source.clock
    # The cache's steps, one at a time, in order, on one thread (started at the first one).
    thread = ThreadPoolExecutor(1, thread_name_prefix="requests-emma token cache")
    result: object = None
    error: BaseException | None = None
    try:
        while not isinstance(step := advance(steps, source.lock, result, error), Token):
            try:
                if isinstance(step, Send):
                    with renewal.attempt(step.path) as attempt:
                        result = await endpoint.attempt(step.path, step.body, step.deadline, clock)
                        attempt.answered(result)
                elif isinstance(step, Sleep):
                    await _sleep(clock, step.seconds)
                    result = None
                else:  # an Unlock shielded: it runs even for a cancelled task
                    with anyio.CancelScope(shield=isinstance(step, Unlock)):
                        result = await wait_for(thread.submit(cache_steps.run, step))
                error = None
            except BaseException as exc:  # noqa: BLE001 - thrown into the renewal, which decides
                if isinstance(step, Lock):
                    # The renewal stopped waiting for it: if the lock was taken after all
                    # (queued on the cache's thread, this runs once that step ended), nobody
                    # would unlock it but this.
                    thread.submit(cache_steps.held.close)
                result, error = None, exc
        return step
    finally:
        thread.shutdown(wait=False)


async def wait_for(future: Future[T], timeout: float | None = None) -> T:
    """The result of ``future`` (set by any thread or loop), awaited without blocking this
    event loop and without cancelling ``future`` if this task is cancelled; ``TimeoutError``
    after ``timeout`` seconds."""
    if future.done():
        return future.result()
    import anyio

    with anyio.fail_after(timeout):
        return await _wait(future)


async def _wait(future: Future[T]) -> T:
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        token, ready = trio.lowlevel.current_trio_token(), trio.Event()

        def wake(_: Future[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # that loop has ended
                token.run_sync_soon(ready.set)

        future.add_done_callback(wake)
        await ready.wait()
        return future.result()
    import asyncio

    # shield: wrap_future's future cancels the concurrent one when it is itself cancelled.
    # Its exception is marked retrieved, for a waiter cancelled before it came: asyncio
    # would log it as never retrieved, though the waiters that stayed got it.
    waited = asyncio.wrap_future(future)
    waited.add_done_callback(_retrieved)
    return await asyncio.shield(waited)


def _retrieved(waited: Any) -> None:
    if not waited.cancelled():
        waited.exception()


async def _sleep(clock: Clock, seconds: float) -> None:
    """Wait ``seconds`` on the event loop; a test's clock takes the wait itself."""
    import anyio

    from .._system_clock import SystemClock, real_waits

    if real_waits(clock):
        await anyio.sleep(seconds)
    elif type(clock) is not SystemClock:
        clock.sleep(seconds)  # a test's clock: it records, or moves itself, and returns
