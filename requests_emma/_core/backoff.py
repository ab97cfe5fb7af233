"""Carrying out a :class:`~requests_emma.RetryPolicy` with tenacity.

The strategies are composed from tenacity's parts, as stamina does: stop after the attempts
*or* before the deadline; wait exponentially with jitter, *at least* as long as the server's
``Retry-After``; retry only a transient :class:`~._outcome.Outcome`. Each attempt returns an
outcome rather than raising, so no exception type stands for a failed attempt, and the last
outcome is what the caller gets when the retries stop.

This module is imported at the first token call, not with the package: tenacity costs more
to import than the rest of requests-emma.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import tenacity

from .clock import Clock
from .outcome import Kind, Outcome
from .retry_policy import RetryPolicy

logger = logging.getLogger("requests_emma")


class stop_before_deadline(tenacity.stop.stop_base):
    """Stop when the next attempt would start at or after ``deadline`` (monotonic)."""

    def __init__(self, deadline: float, clock: Clock) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock.monotonic() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


class wait_at_least_retry_after(tenacity.wait.wait_base):
    """``backoff``, or the server's ``Retry-After`` where that is longer."""

    def __init__(self, backoff: tenacity.wait.wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return max(self.backoff(retry_state), _outcome_of(retry_state).retry_after or 0.0)


def _outcome_of(retry_state: tenacity.RetryCallState) -> Outcome:
    assert retry_state.outcome is not None
    outcome: Outcome = retry_state.outcome.result()
    return outcome


def _is_transient(outcome: Outcome) -> bool:
    return outcome.kind is Kind.TRANSIENT


class _Attempts:
    """The attempts of one run: counted, and none started once the deadline has passed
    (a wait that overran it), in which case the last outcome stands."""

    def __init__(self, attempt: Callable[[], Outcome], clock: Clock, deadline: float) -> None:
        self.attempt = attempt
        self.clock = clock
        self.deadline = deadline
        self.made = 0
        self.out_of_time = False
        self.last: Outcome | None = None

    def __call__(self) -> Outcome:
        if self.last is not None and self.clock.monotonic() >= self.deadline:
            self.out_of_time = True
            return Outcome(
                Kind.FAILED,  # stops the retries; the caller reports self.last
                "no time left",
                sent_at=self.last.sent_at,
                sent_wall=self.last.sent_wall,
            )
        self.made += 1
        self.last = self.attempt()
        return self.last


class Run:
    """How a run of attempts ended: the last outcome, how many attempts were made, and
    whether it stopped because no time was left for the next one."""

    __slots__ = ("attempts", "out_of_time", "outcome")

    def __init__(self, outcome: Outcome, attempts: int, out_of_time: bool) -> None:
        self.outcome = outcome
        self.attempts = attempts
        self.out_of_time = out_of_time


def run(
    attempt: Callable[[], Outcome],
    policy: RetryPolicy,
    clock: Clock,
    deadline: float,
    what: str,
) -> Run:
    """Call ``attempt`` until it gives a non-transient outcome or the policy says stop.

    ``deadline`` is monotonic; ``what`` names the call in the warning logged before each
    wait.
    """

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        logger.warning(
            "%s failed (%s), attempt %d of %d; retrying in %.2f s",
            what,
            _outcome_of(retry_state).detail(),
            retry_state.attempt_number,
            policy.attempts,
            retry_state.upcoming_sleep,
        )

    backoff = tenacity.wait_exponential(
        multiplier=policy.wait_initial, max=policy.wait_max
    ) + tenacity.wait_random(0, policy.wait_jitter)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts) | stop_before_deadline(deadline, clock),
        wait=wait_at_least_retry_after(backoff),
        retry=tenacity.retry_if_result(_is_transient),
        before_sleep=before_sleep,
        sleep=clock.sleep,
        retry_error_callback=_outcome_of,  # the last outcome, not a RetryError
    )
    attempts = _Attempts(attempt, clock, deadline)
    outcome: Outcome = retrying(attempts)
    if attempts.out_of_time:
        assert attempts.last is not None  # the first attempt always runs
        return Run(attempts.last, attempts.made, out_of_time=True)
    return Run(outcome, attempts.made, out_of_time=False)
