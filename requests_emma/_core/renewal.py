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
from typing import TYPE_CHECKING, Any

from .._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from . import wire as _wire
from .cache_entry import REFUSED
from .lifecycle import HOLD_STATUSES
from .outcome import Kind, Outcome
from .secret import Secret, secret_or_none
from .steps import Load, Lock, Save, Send, Step, Unlock

if TYPE_CHECKING:
    from .backoff import Run
    from .cache_entry import Hold, Sealer
    from .clock import Clock
    from .lifecycle import TokenLifecycle
    from .retry_policy import RetryPolicy
    from .token import Token

#: The lock is waited for in slices this long, with a look at the entry between two.
LOCK_SLICE = 0.5

logger = logging.getLogger("requests_emma")

#: What a renewal generator yields, is sent, and returns.
Steps = Generator[Step, Any, "Token"]


class RenewalPlan:
    """How one client renews: its base URL and credentials, and, with a shared cache, the
    entry's ``key``, the ``sealer`` that seals and opens entries with this client's key,
    and the cache's ``name`` (its ``repr``) for log lines."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: Secret,
        cache: tuple[str, Sealer, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.key, self.name = ("", "") if cache is None else (cache[0], cache[2])
        self.sealer: Sealer | None = None if cache is None else cache[1]

    def steps(self, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock) -> Steps:
        """The renewal: yields steps, returns the new token or raises an
        :class:`EmmaAuthError`. See the module docstring for the sequence."""
        started = clock.monotonic()
        hold = lifecycle.calls_held(started)
        if hold is not None:  # known here already: not even the lock is needed
            raise self._held_error(hold, started)
        if self.sealer is None:
            return (yield from self._renew(lifecycle, policy, clock, started))
        return (yield from self._renew_shared(lifecycle, policy, clock, started))

    # -- with a shared cache ----------------------------------------------------------------

    def _renew_shared(
        self, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock, started: float
    ) -> Steps:
        deadline = started + policy.deadline
        slices = max(1, math.ceil((deadline - clock.monotonic()) / LOCK_SLICE))
        for _ in range(slices):
            try:
                yield Lock(self.key, max(0.0, min(LOCK_SLICE, deadline - clock.monotonic())))
                break
            except TimeoutError:
                # Another process renews: the token it saves serves here too.
                if (yield from self._load(lifecycle, clock)):
                    return _cached(lifecycle)
            except Exception as exc:  # noqa: BLE001 - any other cache failure is an outage
                cache_unavailable(self.name, "lock", exc)
                return (yield from self._renew(lifecycle, policy, clock, started))
        else:
            waited = clock.monotonic() - started
            raise TokenRequestError(
                f"another process held the token cache lock for the whole wait ({waited:.1f} s, "
                f"deadline {policy.deadline:g} s) while it renews the token; no token call made "
                f"here, so that a stuck holder does not make every process call emma "
                f"(base URL {self.base_url})",
                attempts=0,
                elapsed=waited,
            )
        closed = False
        try:
            if (yield from self._load(lifecycle, clock)):
                return _cached(lifecycle)
            now = clock.monotonic()
            hold = lifecycle.calls_held(now)
            if hold is not None:  # another process was told to wait
                raise self._held_error(hold, now)
            try:
                token = yield from self._renew(lifecycle, policy, clock, started)
            except EmmaAuthError:
                if lifecycle.calls_held(clock.monotonic()) is not None:
                    yield from self._save(lifecycle, clock)  # the fleet waits too
                raise
            yield from self._save(lifecycle, clock)
            return token
        except GeneratorExit:
            closed = True  # the driver dropped the renewal: it carries out no more steps
            raise
        finally:
            if not closed:
                try:
                    yield Unlock(self.key)
                except Exception as exc:  # noqa: BLE001
                    cache_unavailable(self.name, "unlock", exc)

    def _load(self, lifecycle: TokenLifecycle, clock: Clock) -> Generator[Step, Any, bool]:
        """Load the entry and let the lifecycle adopt what is newer: whether that gave a
        fresh token."""
        assert self.sealer is not None
        try:
            sealed = yield Load(self.key)
        except Exception as exc:  # noqa: BLE001
            cache_unavailable(self.name, "load", exc)
            return False
        if sealed is None:
            return False
        entry = self.sealer.open(self.key, sealed)
        if entry is None:
            logger.debug(
                "token cache entry ignored: it does not open with this client's key "
                "(changed, truncated, foreign, of another format or another secret)"
            )
            return False
        return lifecycle.adopt(entry, clock.monotonic(), clock.wall())

    def _save(self, lifecycle: TokenLifecycle, clock: Clock) -> Generator[Step, Any, None]:
        assert self.sealer is not None
        wall = clock.wall()
        entry = lifecycle.entry_to_save(clock.monotonic(), wall)
        try:
            yield Save(self.key, self.sealer.seal(self.key, entry), entry.useful_until() - wall)
        except Exception as exc:  # noqa: BLE001
            cache_unavailable(self.name, "save", exc)
            return
        lifecycle.saved(entry)

    # -- the token calls --------------------------------------------------------------------

    def _renew(
        self, lifecycle: TokenLifecycle, policy: RetryPolicy, clock: Clock, started: float
    ) -> Steps:
        from . import backoff  # tenacity is imported at the first token call only

        deadline = started + policy.deadline
        refresh_token = secret_or_none(lifecycle.take_refresh_token(clock.monotonic()))
        if refresh_token is not None:
            path = _wire.REFRESH_TOKEN_PATH
            body = refresh_token.reveal
            send = Send(path, lambda: _wire.refresh_token_body(body()), deadline)
            # Sent again only after emma's "wait": no other call may have been carried out.
            run = yield from backoff.attempts(send, policy, clock, deadline, _not_carried_out)
            outcome = run.outcome
            if outcome.kind is Kind.GRANT:
                return _accept(lifecycle, outcome, "refreshed", refresh_token.reveal())
            if not lifecycle.refresh_ended(clock.monotonic(), refresh_token.reveal(), outcome):
                raise self._failed(lifecycle, path, run, policy, clock, started)
            logger.debug("refresh token not used again (%s); issuing a new token", outcome.detail())
        path = _wire.ISSUE_TOKEN_PATH
        secret, client_id = self.client_secret, self.client_id
        send = Send(path, lambda: _wire.issue_token_body(client_id, secret.reveal()), deadline)
        run = yield from backoff.attempts(send, policy, clock, deadline)
        if run.outcome.kind is Kind.GRANT:
            return _accept(lifecycle, run.outcome, "issued")
        raise self._failed(lifecycle, path, run, policy, clock, started)

    # -- errors -----------------------------------------------------------------------------

    def _failed(
        self,
        lifecycle: TokenLifecycle,
        path: str,
        run: Run,
        policy: RetryPolicy,
        clock: Clock,
        started: float,
    ) -> EmmaAuthError:
        """The error for a renewal that failed with ``run``; the lifecycle decides the hold
        on token calls that emma's answer puts (a request to wait, refused credentials)."""
        error = self._error(path, run, policy, clock, started)
        refused = isinstance(error, CredentialsError)
        wait = lifecycle.call_failed(clock.monotonic(), run.outcome, credentials=refused)
        if wait is not None and (refused or isinstance(error, TokenRequestError)):
            error.retry_after = wait  # type: ignore[attr-defined]
        return error

    def _held_error(self, hold: Hold, now: float) -> EmmaAuthError:
        seconds = hold.left(now)
        wait = f"{math.ceil(seconds):.0f} s"
        if hold.kind == REFUSED:
            return CredentialsError(
                f"no token call made: emma rejected the client credentials ({hold.detail}), "
                f"and token calls wait {wait} more before the next try; check the client ID "
                "and secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET)",
                retry_after=seconds,
            )
        return TokenRequestError(
            f"no token call made: emma asked to wait ({hold.detail} with Retry-After), and "
            f"takes token calls again in {wait} (base URL {self.base_url})",
            attempts=0,
            elapsed=0.0,
            retry_after=seconds,
        )

    def _error(
        self, path: str, run: Run, policy: RetryPolicy, clock: Clock, started: float
    ) -> EmmaAuthError:
        now = clock.monotonic()
        outcome, attempts = run.outcome, run.attempts
        gave_up = ""
        if run.out_of_time:
            gave_up = f"no time left before the {policy.deadline:g} s deadline"
        elif outcome.kind is Kind.TRANSIENT and attempts < policy.attempts:
            retry_after = outcome.retry_after
            if retry_after is not None and now + retry_after >= started + policy.deadline:
                gave_up = (
                    f"the server asked to wait {retry_after:.0f} seconds (Retry-After), "
                    f"past the {policy.deadline:g} s deadline"
                )
            else:
                gave_up = f"the next attempt would pass the {policy.deadline:g} s deadline"
        error = _error_for(self.base_url, path, outcome, attempts, now - started, gave_up)
        error.__cause__ = outcome.cause
        return error


def _accept(
    lifecycle: TokenLifecycle, outcome: Outcome, how: str, refreshed_with: str | None = None
) -> Token:
    grant = outcome.grant
    assert grant is not None
    token = lifecycle.accept(grant, outcome.sent_at, outcome.sent_wall, refreshed_with)
    logger.debug(
        "token %s; lifetime %.0f s (from %s), refresh token %s",
        how,
        grant.lifetime,
        grant.lifetime_source,
        "received" if grant.refresh_token else "kept" if token.refresh_token else "none",
    )
    return token


def _not_carried_out(outcome: Outcome) -> bool:
    """Whether emma said it did not carry the call out (429, 503): safe to send again."""
    return outcome.status in HOLD_STATUSES


def _cached(lifecycle: TokenLifecycle) -> Token:
    logger.debug("token taken from the shared cache; no token call")
    token = lifecycle.current
    assert token is not None
    return token


def cache_unavailable(name: str, step: str, exc: BaseException) -> None:
    """Log a failed cache step: the renewal carries on with the in-memory token."""
    # The type only: a message could quote a stored value or a connection URL.
    logger.warning(
        "token cache %s unavailable (%s failed: %s); carrying on with the in-memory token",
        name,
        step,
        type(exc).__name__,
    )


def _error_for(
    base_url: str, path: str, outcome: Outcome, attempts: int, elapsed: float, gave_up: str
) -> EmmaAuthError:
    detail = outcome.detail()
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f} s"
    status = outcome.status
    if outcome.kind is Kind.UNUSABLE:
        answered = f"answered HTTP {status}" if status is not None else "answered"
        return TokenResponseError(
            f"POST {path} {answered}, but the {outcome.reason}; {tries} (base URL {base_url})"
        )
    if outcome.kind is Kind.REFUSED and path == _wire.ISSUE_TOKEN_PATH:
        return CredentialsError(
            f"emma rejected the client credentials (POST {path}: {detail}; {tries}); "
            "check the client ID and secret (EMMA_CLIENT_ID, EMMA_CLIENT_SECRET) "
            "and that the service app still exists",
            status_code=status,
            code=outcome.code,
            message=outcome.message,
        )
    text = f"POST {path} failed: {detail}; "
    text += f"{gave_up}; gave up after {tries}" if gave_up else tries
    text += f" (base URL {base_url})"
    if outcome.kind is Kind.MISDIRECTED:
        text += (
            f"; check the base URL: {base_url}{path} is not emma's token endpoint "
            "(emma's base URL ends in /external)"
        )
    return TokenRequestError(
        text,
        endpoint=path,
        status_code=status,
        code=outcome.code,
        message=outcome.message,
        attempts=attempts,
        elapsed=elapsed,
    )
