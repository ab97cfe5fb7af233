"""One renewal, as a generator of steps: the lifecycle's decisions carried out in order.

:meth:`RenewalPlan.steps` does no I/O. Whenever it needs the world it yields a step
(``_core/steps.py``: send this token request before this deadline, sleep this long, lock,
load, save or unlock the shared cache) and receives the step's result, or the exception it
raised, from the driver that runs it (``_source/runner.py``, blocking or async). It returns the new token, or
raises the :class:`~requests_emma.EmmaAuthError` the caller sees. So the whole sequence is
unit-tested step by step, with a fake clock and no server at all.

The sequence
------------
1. While the lifecycle holds token calls off (emma's ``Retry-After``, refused credentials),
   fail at once with no call; the error says until when.
2. With a shared cache: take its lock, waiting no longer than the deadline leaves, in
   slices of :data:`LOCK_SLICE`: between two, look at the entry, and take a fresh token as
   soon as the holder has saved one (a lock another process keeps for the whole wait with
   no token saved ends the renewal with a :class:`~requests_emma.TokenRequestError` and no
   call: the holder is renewing, and a stuck one must not make every process call emma).
   Under the lock, load and open the entry (one that does not open is logged at DEBUG and
   treated as absent); let the lifecycle adopt what is newer in it. If that gives a fresh
   token, or a hold another process was told, stop there.
3. Refresh once with the refresh token the lifecycle offers, if any; unless emma asked to
   wait, issue a new token instead when that fails. issue-token is retried by the policy
   (``_core/backoff.py``: tenacity decides, the waits are yielded).
4. With a shared cache: seal and save what the lifecycle now holds (the new token, or the
   hold that emma's answer put on token calls) for the fleet, then unlock. A cache outage
   at any step is logged and the renewal carries on with the in-memory token.

One deadline, the policy's, covers all of it: the lock wait, the calls and the waits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from .._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from . import wire as _wire
from .cache_entry import REFUSED
from .lifecycle import HOLD_STATUSES
from .outcome import Kind, Outcome
from .secret import Secret, secret_or_none
from .steps import Load, Lock, Save, Send, Step, Unlock

if TYPE_CHECKING:
    from .backoff import Run
    from .cache_entry import Sealer
    from .clock import Clock
    from .lifecycle import TokenLifecycle
    from .retry_policy import RetryPolicy
    from .token import Token

#: The lock is waited for in slices this long, with a look at the entry between two.
LOCK_SLICE = 0.5

logger = logging.getLogger("requests_emma")

#: What a renewal generator yields, is sent, and returns.
Steps = Generator[Step, Any, "Token"]


@dataclass(frozen=True)
class RenewalPlan:
    """How one client renews: its base URL and credentials, and, with a shared cache, the
    entry's ``key``, the ``sealer`` that seals and opens entries with this client's key,
    and the cache's ``name`` (its ``repr``) for log lines."""

    base_url: str
    client_id: str
    client_secret: Secret
    key: str = field(default="", repr=False)  # a hash of the secret: not for tracebacks
    sealer: Sealer | None = field(default=None, repr=False)
    name: str = ""

    def steps(self, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock) -> Steps:
        """The renewal: yields steps, returns the new token or raises an
        :class:`EmmaAuthError`. See the module docstring for the sequence."""
        started = clock.monotonic()
        renewal = _Renewal(self, lifecycle, policy, clock, started, started + policy.deadline)
        renewal.check_hold(renewal.started)  # known here already: not even the lock is needed
        return (yield from renewal.renew() if self.sealer is None else renewal.renew_shared())


@dataclass(frozen=True, repr=False)  # self in every renewal frame: shows nothing of it
class _Renewal:
    """One renewal under way: the plan, what it works on, when it started and its deadline
    (monotonic)."""

    plan: RenewalPlan
    lifecycle: TokenLifecycle
    policy: RetryPolicy
    clock: Clock
    started: float
    deadline: float

    # -- with a shared cache ----------------------------------------------------------------

    def renew_shared(self) -> Steps:
        plan, lifecycle, clock = self.plan, self.lifecycle, self.clock
        slices = max(1, math.ceil((self.deadline - clock.monotonic()) / LOCK_SLICE))
        for _ in range(slices):
            try:
                yield Lock(plan.key, max(0.0, min(LOCK_SLICE, self.deadline - clock.monotonic())))
                break
            except TimeoutError:
                # Another process renews: the token it saves serves here too.
                token = yield from self.load()
                if token is not None:
                    return token
            except Exception as exc:  # noqa: BLE001 - any other cache failure is an outage
                cache_unavailable(plan.name, "lock", exc)
                return (yield from self.renew())
        else:
            waited = clock.monotonic() - self.started
            raise TokenRequestError(
                f"another process held the token cache lock for the whole wait ({waited:.1f} s, "
                f"deadline {self.policy.deadline:g} s) while it renews the token; no token call "
                f"made here, so that a stuck holder does not make every process call emma "
                f"(base URL {plan.base_url})",
                attempts=0,
                elapsed=waited,
            )
        closed = False
        try:
            token = yield from self.load()
            if token is not None:
                return token
            self.check_hold(clock.monotonic())  # another process may have been told to wait
            try:
                token = yield from self.renew()
            except EmmaAuthError:
                if lifecycle.calls_held(clock.monotonic()) is not None:
                    yield from self.save()  # the fleet waits too
                raise
            yield from self.save()
            return token
        except GeneratorExit:
            closed = True  # the driver dropped the renewal: it carries out no more steps
            raise
        finally:
            if not closed:
                try:
                    yield Unlock(plan.key)
                except Exception as exc:  # noqa: BLE001
                    cache_unavailable(plan.name, "unlock", exc)

    def load(self) -> Generator[Step, Any, Token | None]:
        """Load the entry and let the lifecycle adopt what is newer: the token taken, if that
        gave a fresh one, so that no token call is needed."""
        plan = self.plan
        assert plan.sealer is not None
        try:
            sealed = yield Load(plan.key)
        except Exception as exc:  # noqa: BLE001
            cache_unavailable(plan.name, "load", exc)
            return None
        if sealed is None:
            return None
        entry = plan.sealer.open(plan.key, sealed)
        if entry is None:
            logger.debug(
                "token cache entry ignored: it does not open with this client's key "
                "(changed, truncated, foreign, of another format or another secret)"
            )
            return None
        if not self.lifecycle.adopt(entry, self.clock.monotonic(), self.clock.wall()):
            return None
        logger.debug("token taken from the shared cache; no token call")
        return self.lifecycle.current

    def save(self) -> Generator[Step, Any, None]:
        plan = self.plan
        assert plan.sealer is not None
        wall = self.clock.wall()
        entry = self.lifecycle.entry_to_save(self.clock.monotonic(), wall)
        try:
            yield Save(plan.key, plan.sealer.seal(plan.key, entry), entry.useful_until() - wall)
        except Exception as exc:  # noqa: BLE001
            cache_unavailable(plan.name, "save", exc)
            return
        self.lifecycle.saved(entry)

    # -- the token calls --------------------------------------------------------------------

    def renew(self) -> Steps:
        from . import backoff  # tenacity is imported at the first token call only

        lifecycle, policy, clock = self.lifecycle, self.policy, self.clock
        refresh_token = secret_or_none(lifecycle.take_refresh_token(clock.monotonic()))
        if refresh_token is not None:
            path = _wire.REFRESH_TOKEN_PATH
            body = refresh_token.reveal
            send = Send(path, lambda: _wire.refresh_token_body(body()), self.deadline)
            # Sent again only after emma's "wait" (429, 503): it says the call was not carried
            # out, and no other call may have been.
            run = yield from backoff.attempts(send, policy, clock, _not_carried_out)
            outcome = run.outcome
            if outcome.kind is Kind.GRANT:
                return self.accept(outcome, "refreshed", refresh_token.reveal())
            if not lifecycle.refresh_ended(clock.monotonic(), refresh_token.reveal(), outcome):
                self.fail(path, run)
            logger.debug("refresh token not used again (%s); issuing a new token", outcome.detail())
        path = _wire.ISSUE_TOKEN_PATH
        secret, client_id = self.plan.client_secret, self.plan.client_id
        send = Send(path, lambda: _wire.issue_token_body(client_id, secret.reveal()), self.deadline)
        run = yield from backoff.attempts(send, policy, clock)
        if run.outcome.kind is Kind.GRANT:
            return self.accept(run.outcome, "issued")
        self.fail(path, run)

    def accept(self, outcome: Outcome, how: str, refreshed_with: str | None = None) -> Token:
        grant = outcome.grant
        assert grant is not None
        token = self.lifecycle.accept(grant, outcome.sent_at, outcome.sent_wall, refreshed_with)
        logger.debug(
            "token %s; lifetime %.0f s (from %s), refresh token %s",
            how,
            grant.lifetime,
            grant.lifetime_source,
            "received" if grant.refresh_token else "kept" if token.refresh_token else "none",
        )
        return token

    # -- errors -----------------------------------------------------------------------------

    def fail(self, path: str, run: Run) -> NoReturn:
        """Raise the error of a renewal that failed with ``run`` (its cause the outcome's);
        the lifecycle decides the hold on token calls that emma's answer puts (a request to
        wait, refused credentials)."""
        now = self.clock.monotonic()
        outcome, attempts, out_of_time = run
        status, limit, base_url = outcome.status, self.policy.deadline, self.plan.base_url
        refused = outcome.kind is Kind.REFUSED and path == _wire.ISSUE_TOKEN_PATH
        wait = self.lifecycle.call_failed(now, outcome, credentials=refused)
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {now - self.started:.1f} s"
        if outcome.kind is Kind.UNUSABLE:
            answered = f"answered HTTP {status}" if status is not None else "answered"
            raise TokenResponseError(
                f"POST {path} {answered}, but the {outcome.reason}; {tries} (base URL {base_url})"
            ) from outcome.cause
        if refused:
            raise CredentialsError(
                f"emma rejected the client credentials (POST {path}: {outcome.detail()}; "
                f"{tries}); check the client ID and secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET) "
                "and that the service app still exists",
                status_code=status,
                code=outcome.code,
                message=outcome.message,
                retry_after=wait,
            ) from outcome.cause
        gave_up = ""
        if out_of_time:
            gave_up = f"no time left before the {limit:g} s deadline"
        elif outcome.kind is Kind.TRANSIENT and attempts < self.policy.attempts:
            if outcome.retry_after is not None and now + outcome.retry_after >= self.deadline:
                gave_up = (
                    f"the server asked to wait {outcome.retry_after:.0f} seconds (Retry-After), "
                    f"past the {limit:g} s deadline"
                )
            else:
                gave_up = f"the next attempt would pass the {limit:g} s deadline"
        text = f"POST {path} failed: {outcome.detail()}; "
        text += f"{gave_up}; gave up after {tries}" if gave_up else tries
        text += f" (base URL {base_url})"
        if outcome.kind is Kind.MISDIRECTED:
            text += (
                f"; check the base URL: {base_url}{path} is not emma's token endpoint "
                "(emma's base URL ends in /external)"
            )
        raise TokenRequestError(
            text,
            endpoint=path,
            status_code=status,
            code=outcome.code,
            message=outcome.message,
            attempts=attempts,
            elapsed=now - self.started,
            retry_after=wait,
        ) from outcome.cause

    def check_hold(self, now: float) -> None:
        """Raise the error of a renewal that makes no call: token calls are held at ``now``."""
        hold = self.lifecycle.calls_held(now)
        if hold is None:
            return
        seconds = hold.left(now)
        wait = f"{math.ceil(seconds):.0f} s"
        if hold.kind == REFUSED:
            raise CredentialsError(
                f"no token call made: emma rejected the client credentials ({hold.detail}), "
                f"and token calls wait {wait} more before the next try; check the client ID "
                "and secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET)",
                retry_after=seconds,
            )
        raise TokenRequestError(
            f"no token call made: emma asked to wait ({hold.detail} with Retry-After), and "
            f"takes token calls again in {wait} (base URL {self.plan.base_url})",
            attempts=0,
            elapsed=0.0,
            retry_after=seconds,
        )


def _not_carried_out(outcome: Outcome) -> bool:
    return outcome.status in HOLD_STATUSES


def cache_unavailable(name: str, step: str, exc: BaseException) -> None:
    """Log a failed cache step: the renewal carries on with the in-memory token."""
    # The type only: a message could quote a stored value or a connection URL.
    logger.warning(
        "token cache %s unavailable (%s failed: %s); carrying on with the in-memory token",
        name,
        step,
        type(exc).__name__,
    )
