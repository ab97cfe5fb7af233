"""The synchronous renewal driver: runs the renewal's steps (``_core/renewal.py``) over a
blocking token endpoint (requests', or ``httpx.Client``'s) and a blocking token cache.

The renewal decides and yields steps; this module only carries them out, in the calling
thread: a :class:`~requests_emma._core.steps.Send` through the endpoint, a ``Sleep``
through the clock, the cache steps on the :class:`~requests_emma.TokenCache`. An exception a
step raises is thrown back into the renewal, which decides what it means (a lock held
elsewhere, a cache outage, an interrupt on its way out after the cache is unlocked).

The renewal's own code (between two steps) runs under ``state_lock``, the coordinator's lock
over the lifecycle, so a renewal's changes to the lifecycle never interleave with another
thread's; the steps themselves (the I/O) run outside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from .._caches.protocol import TokenCache, cache_key
from .._core.clock import Clock
from .._core.lifecycle import FIRST_USE, TokenLifecycle
from .._core.outcome import Outcome
from .._core.renewal import RenewalPlan, Shared, Steps
from .._core.retry_policy import RetryPolicy
from .._core.secret import Secret
from .._core.steps import Load, Lock, Save, Send, Sleep, Step, Unlock
from .._core.token import Token
from .._telemetry import Telemetry


class SyncEndpoint(Protocol):
    """A token endpoint that makes one blocking attempt at a time."""

    base_url: str

    def attempt(
        self, path: str, body: Callable[[], dict[str, str]], deadline: float, clock: Clock
    ) -> Outcome: ...

    def close(self) -> None: ...


def plan_for(
    base_url: str, client_id: str, client_secret: Secret, cache: TokenCache | None
) -> RenewalPlan:
    """The renewal plan of one client at ``base_url``, through ``cache`` if there is one."""
    shared = None
    if cache is not None:
        from .._core.cache_entry import Sealer  # cryptography, at the first use of a cache only

        # reveal() passed straight on, never bound here: a traceback of a failure below
        # (cryptography missing, say) shows this frame's locals.
        shared = Shared(
            cache_key(base_url, client_id, client_secret.reveal()),
            Sealer(base_url, client_id, client_secret.reveal()),
            repr(cache),
        )
    return RenewalPlan(base_url, client_id, client_secret, shared)


class Renewer:
    """Renews the token of one client by ``plan``, over a blocking ``endpoint``, through its
    shared ``cache`` (if any)."""

    def __init__(
        self, endpoint: SyncEndpoint, plan: RenewalPlan, cache: TokenCache | None = None
    ) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.cache = cache

    def renew(
        self,
        lifecycle: TokenLifecycle,
        policy: RetryPolicy,
        clock: Clock,
        state_lock: contextlib.AbstractContextManager[Any] | None,
        telemetry: Telemetry,
        link: object | None = None,
    ) -> Token:
        """Get a new token into ``lifecycle``, or raise an :class:`EmmaAuthError`.

        The renewal's code runs under ``state_lock`` (none: the caller holds whatever lock
        guards the lifecycle). The endpoint's idle connection is closed afterwards. The renewal
        is recorded in ``telemetry`` (``link``: the request an early renewal runs for), each
        token call an attempt in it.
        """
        steps = self.plan.steps(lifecycle, policy, clock)
        held: list[contextlib.AbstractContextManager[object]] = []

        def perform(step: Step) -> object:
            if isinstance(step, Send):
                with renewal.attempt(step.path) as attempt:
                    outcome = self.endpoint.attempt(step.path, step.body, step.deadline, clock)
                    attempt.answered(outcome)
                return outcome
            if isinstance(step, Sleep):
                clock.sleep(step.seconds)
                return None
            cache = self.cache
            assert cache is not None
            if isinstance(step, Lock):
                lock = cache.lock(step.key, step.timeout)
                lock.__enter__()
                held.append(lock)
                return None
            if isinstance(step, Load):
                return cache.load(step.key)
            if isinstance(step, Save):
                cache.save(step.key, step.data, step.ttl)
                return None
            assert isinstance(step, Unlock)
            held.pop().__exit__(None, None, None)
            return None

        with telemetry.renewal(lifecycle.renewing or FIRST_USE, link) as renewal:
            try:
                return drive(steps, perform, state_lock or contextlib.nullcontext())
            finally:
                self.endpoint.close()


def drive(
    steps: Steps,
    perform: Callable[[Step], object],
    state_lock: contextlib.AbstractContextManager[Any],
) -> Token:
    """Run ``steps`` to its end: each step carried out by ``perform`` outside ``state_lock``,
    its result sent back (or its exception thrown back) with the lock held."""
    result: object = None
    error: BaseException | None = None
    while True:
        step, token = advance(steps, state_lock, result, error)
        if step is None:
            assert token is not None
            return token
        try:
            result, error = perform(step), None
        except BaseException as exc:  # noqa: BLE001 - thrown into the renewal, which decides
            result, error = None, exc


def advance(
    steps: Steps,
    state_lock: contextlib.AbstractContextManager[Any],
    result: object,
    error: BaseException | None,
) -> tuple[Step | None, Token | None]:
    """Send the last step's ``result`` (or throw its ``error``) into ``steps`` under
    ``state_lock``: ``(next step, None)``, or ``(None, token)`` once the renewal has
    returned. Every driver, blocking or async, moves a renewal on through this."""
    with state_lock:
        try:
            return (steps.send(result) if error is None else steps.throw(error)), None
        except StopIteration as done:
            token: Token = done.value
            return None, token
