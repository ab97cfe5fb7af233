"""Running a renewal's steps (``_core/renewal.py``): one dispatch, two kinds of I/O.

The renewal decides and yields steps; a runner carries each one out and sends back its
result, or throws in the exception it raised. The dispatch is written once
(:func:`cache_call` and :func:`advance`); only the I/O differs:

- :func:`run_blocking`, in the calling thread: a ``Send`` through a blocking endpoint
  (requests', ``httpx.Client``'s), a ``Sleep`` through the clock, the cache's steps as
  plain calls;
- :func:`run_async`, on an event loop (asyncio or trio, through anyio), never blocking it: a
  ``Send`` through an async endpoint, a ``Sleep`` through anyio, and the cache's steps on a
  thread of the renewal's own. A token cache is a blocking object, and its locks belong to
  the thread that took them (filelock's and redis-py's are thread-local), so lock, load,
  save and unlock all run on that one thread, one at a time. A lock that thread takes after
  the renewal stopped waiting for it (cancelled at an event loop's end, say) is released
  there at once, never left held.

The renewal's own code (between two steps) runs under ``state_lock``, the source's lock over
the lifecycle, held for microseconds, never across I/O, a sleep or an ``await``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._core.steps import Load, Lock, Save, Send, Sleep, Step, Unlock

if TYPE_CHECKING:
    from .._caches.protocol import TokenCache
    from .._core.clock import Clock
    from .._core.outcome import Outcome
    from .._core.renewal import Steps
    from .._core.token import Token
    from .._telemetry import Renewal

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
) -> tuple[Step | None, Token | None]:
    """Send the last step's ``result`` (or throw its ``error``) into ``steps`` under
    ``state_lock``: ``(next step, None)``, or ``(None, token)`` once the renewal returned."""
    with state_lock:
        try:
            return (steps.send(result) if error is None else steps.throw(error)), None
        except StopIteration as done:
            token: Token = done.value
            return None, token


class _CacheSteps:
    """The cache's steps as plain calls, with the locks they hold."""

    def __init__(self, cache: TokenCache | None) -> None:
        self.cache = cache
        self.held: list[contextlib.AbstractContextManager[object]] = []
        self.dropped = False  # the renewal no longer waits for a lock being taken
        self.guard = threading.Lock()

    def call(self, step: Step) -> Callable[[], object]:
        """The blocking call that carries out the cache ``step``."""
        cache = self.cache
        assert cache is not None
        if isinstance(step, Lock):
            lock = cache.lock(step.key, step.timeout)
            return lambda: self._enter(lock)
        if isinstance(step, Load):
            key = step.key
            return lambda: cache.load(key)
        if isinstance(step, Save):
            key, data, ttl = step.key, step.data, step.ttl
            return lambda: cache.save(key, data, ttl)
        assert isinstance(step, Unlock)
        return lambda: self.held.pop().__exit__(None, None, None)

    def _enter(self, lock: contextlib.AbstractContextManager[object]) -> None:
        lock.__enter__()
        with self.guard:
            if not self.dropped:
                self.held.append(lock)
                return
        lock.__exit__(None, None, None)  # taken too late: nobody will unlock it

    def drop(self) -> Callable[[], object] | None:
        """The renewal stopped waiting for a lock: a call that releases it if it was taken
        meanwhile (run it on the cache's thread), else ``None``."""
        with self.guard:
            self.dropped = True
            if not self.held:
                return None
            lock = self.held.pop()
        return lambda: lock.__exit__(None, None, None)


def run_blocking(
    steps: Steps,
    endpoint: Endpoint,
    cache: TokenCache | None,
    clock: Clock,
    state_lock: threading.Lock,
    renewal: Renewal,
) -> Token:
    """Run ``steps`` to its end in this thread; each token call recorded in ``renewal``. The
    endpoint's idle connections are dropped afterwards: token calls are minutes apart, and a
    pooled one would only be dropped by the server (or reused by a forked child)."""
    cache_steps = _CacheSteps(cache)
    result: object = None
    error: BaseException | None = None
    try:
        while True:
            step, token = advance(steps, state_lock, result, error)
            if step is None:
                assert token is not None
                return token
            try:
                if isinstance(step, Send):
                    with renewal.attempt(step.path) as attempt:
                        result = endpoint.attempt(step.path, step.body, step.deadline, clock)
                        attempt.answered(result)
                elif isinstance(step, Sleep):
                    clock.sleep(step.seconds)
                    result = None
                else:
                    result = cache_steps.call(step)()
                error = None
            except BaseException as exc:  # noqa: BLE001 - thrown into the renewal, which decides
                result, error = None, exc

    finally:
        endpoint.close()


async def run_async(
    steps: Steps,
    endpoint: AsyncEndpoint,
    cache: TokenCache | None,
    clock: Clock,
    state_lock: threading.Lock,
    renewal: Renewal,
) -> Token:
    """Run ``steps`` to its end on this event loop; see the module docstring."""
    import anyio

    cache_steps = _CacheSteps(cache)
    thread: ThreadPoolExecutor | None = None

    async def on_cache_thread(call: Callable[[], object], shielded: bool) -> object:
        nonlocal thread
        if thread is None:
            thread = ThreadPoolExecutor(1, thread_name_prefix="requests-emma token cache")
        with anyio.CancelScope(shield=shielded):  # an unlock runs even for a cancelled task
            done = await wait_for(thread.submit(call))
        return done

    result: object = None
    error: BaseException | None = None
    try:
        while True:
            step, token = advance(steps, state_lock, result, error)
            if step is None:
                assert token is not None
                return token
            try:
                if isinstance(step, Send):
                    with renewal.attempt(step.path) as attempt:
                        result = await endpoint.attempt(step.path, step.body, step.deadline, clock)
                        attempt.answered(result)
                elif isinstance(step, Sleep):
                    await _sleep(clock, step.seconds)
                    result = None
                else:
                    try:
                        result = await on_cache_thread(
                            cache_steps.call(step), isinstance(step, Unlock)
                        )
                    except BaseException:
                        release = cache_steps.drop() if isinstance(step, Lock) else None
                        if release is not None and thread is not None:
                            thread.submit(release)
                        raise
                error = None
            except BaseException as exc:  # noqa: BLE001 - thrown into the renewal, which decides
                result, error = None, exc
    finally:
        if thread is not None:
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
