"""The async renewal driver: runs the renewal's steps (``_core/renewal.py``) on an event loop,
under asyncio or trio, over ``httpx.AsyncClient``.

The renewal decides and yields steps; this module carries them out without ever blocking the
event loop: a ``Send`` through the async token endpoint, a ``Sleep`` through anyio, and the
shared cache's steps in a thread of the renewal's own. A token cache is a blocking object
(a file lock, redis-py), and its locks belong to the thread that took them (filelock's and
redis-py's are thread-local), so lock, load, save and unlock all run on that one thread, one
at a time, while the loop goes on.

The renewal's own code runs under the coordinator's ``threading.Lock``, held for the
microseconds between two steps, never across an ``await``.

Waiting for a renewal that runs elsewhere (another task, another loop, a thread) is
:func:`await_future`: the flight is a ``concurrent.futures.Future``, and a waiter's
cancellation never cancels it, so the other waiters still get its result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import sniffio

from .._caches.protocol import TokenCache
from .._core.clock import Clock
from .._core.outcome import Outcome
from .._core.renewal import Steps
from .._core.steps import Load, Lock, Save, Send, Sleep, Step, Unlock
from .._core.token import Token
from .._requests.renewal import advance
from .._system_clock import SystemClock, real_waits
from .._telemetry import Renewal

T = TypeVar("T")


async def await_future(future: Future[T]) -> T:
    """The result of ``future`` (set by any thread or loop), awaited without blocking this
    event loop and without cancelling ``future`` if this task is cancelled."""
    if future.done():
        return future.result()
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


async def warm_up() -> None:
    """Load what a first renewal imports (tenacity, the OpenTelemetry API) on a worker
    thread: imported on the event loop, they would block it for tens of milliseconds."""

    def load() -> None:
        from .. import _telemetry
        from .._core import backoff  # noqa: F401 - imported for its side: loaded

        _telemetry._load()

    await anyio.to_thread.run_sync(load)


class AsyncEndpoint(Protocol):
    """What the driver needs of an async token endpoint (``AsyncHttpxTokenEndpoint``)."""

    async def attempt(
        self, path: str, body: Callable[[], dict[str, str]], deadline: float, clock: Clock
    ) -> Outcome: ...


async def drive_async(
    steps: Steps,
    endpoint: AsyncEndpoint,
    cache: TokenCache | None,
    clock: Clock,
    state_lock: contextlib.AbstractContextManager[Any],
    renewal: Renewal,
) -> Token:
    """Run ``steps`` to its end on this event loop; see the module docstring. Each token
    call is recorded as an attempt of ``renewal``."""
    thread: ThreadPoolExecutor | None = None
    held: list[contextlib.AbstractContextManager[object]] = []

    async def in_cache_thread(call: Callable[[], T]) -> T:
        nonlocal thread
        if thread is None:
            thread = ThreadPoolExecutor(1, thread_name_prefix="requests-emma token cache")
        return await await_future(thread.submit(call))

    async def perform(step: Step) -> object:
        if isinstance(step, Send):
            with renewal.attempt(step.path) as attempt:
                outcome = await endpoint.attempt(step.path, step.body, step.deadline, clock)
                attempt.answered(outcome)
            return outcome
        if isinstance(step, Sleep):
            await _sleep(clock, step.seconds)
            return None
        assert cache is not None
        if isinstance(step, Lock):
            lock = cache.lock(step.key, step.timeout)
            await in_cache_thread(lock.__enter__)
            held.append(lock)
            return None
        if isinstance(step, Load):
            key = step.key
            return await in_cache_thread(lambda: cache.load(key))
        if isinstance(step, Save):
            key, data, ttl = step.key, step.data, step.ttl
            return await in_cache_thread(lambda: cache.save(key, data, ttl))
        assert isinstance(step, Unlock)
        lock = held.pop()
        with anyio.CancelScope(shield=True):  # a lock is released even by a cancelled task
            await in_cache_thread(lambda: lock.__exit__(None, None, None))
        return None

    result: object = None
    error: BaseException | None = None
    try:
        while True:
            step, token = advance(steps, state_lock, result, error)
            if step is None:
                assert token is not None
                return token
            try:
                result, error = await perform(step), None
            except BaseException as exc:  # noqa: BLE001 - thrown into the renewal, which decides
                result, error = None, exc
    finally:
        if thread is not None:
            thread.shutdown(wait=False)


async def _sleep(clock: Clock, seconds: float) -> None:
    """Wait ``seconds`` on the event loop; a fake clock (tests) takes the wait itself."""
    if real_waits(clock):
        await anyio.sleep(seconds)
    elif type(clock) is not SystemClock:
        clock.sleep(seconds)  # a test's clock: it records, or moves itself, and returns
