"""Carrying out a :class:`~requests_emma.RetryPolicy` with tenacity, as steps.

:func:`attempts` yields the token call and the waits between its attempts; the driver that
runs the renewal carries them out. tenacity's ``Retrying`` decides, with these strategies:
stop after the attempts *or* before the deadline; wait exponentially with jitter
(tenacity's parts, as stamina composes them), *at least* as long as the server's
``Retry-After``; retry only a transient
:class:`~.outcome.Outcome`. Each attempt returns an outcome rather than raising, so no
exception type stands for a failed attempt, and the last outcome is what the caller gets
when the retries stop.

This module is imported at the first token call, not with the package: tenacity costs more
to import than the rest of requests-emma.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import NamedTuple

import tenacity

from .clock import Clock
from .outcome import Kind, Outcome
from .retry_policy import RetryPolicy
from .steps import Send, Sleep

logger = logging.getLogger("requests_emma")


def _outcome_of(retry_state: tenacity.RetryCallState) -> Outcome:
    assert retry_state.outcome is not None
    outcome: Outcome = retry_state.outcome.result()
    return outcome


def _is_transient(outcome: Outcome) -> bool:
    return outcome.kind is Kind.TRANSIENT


class Run(NamedTuple):
    """How a run of attempts ended: the last outcome, how many attempts were made, and
    whether it stopped because no time was left for the next one."""

    outcome: Outcome
    attempts: int
    out_of_time: bool


def attempts(
    send: Send, policy: RetryPolicy, clock: Clock, resend: Callable[[Outcome], bool] = _is_transient
) -> Generator[Send | Sleep, Outcome | None, Run]:
    """Yield ``send`` until its outcome is not one to ``resend`` (by default: transient) or
    the policy says stop, and the waits between as :class:`Sleep` steps; returns how the run
    ended.

    tenacity decides: ``Retrying.iter()`` answers "attempt" or "sleep N" for a
    ``RetryCallState`` without sleeping itself, so the waits are the driver's to carry out.
    ``send.deadline`` is monotonic; an attempt is not started once a wait has overrun it,
    and then the last outcome stands.
    """
    what, deadline = f"token call POST {send.path}", send.deadline

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        logger.warning(
            "%s failed (%s), attempt %d of %d; retrying in %.2f s",
            what,
            _outcome_of(retry_state).detail(),
            retry_state.attempt_number,
            policy.attempts,
            retry_state.upcoming_sleep,
        )

    def stop(retry_state: tenacity.RetryCallState) -> bool:
        """After the policy's attempts, or when the next attempt would start at or after
        the deadline."""
        if retry_state.attempt_number >= policy.attempts:
            return True
        return clock.monotonic() + (retry_state.upcoming_sleep or 0.0) >= deadline

    backoff = tenacity.wait_exponential(
        multiplier=policy.wait_initial, max=policy.wait_max
    ) + tenacity.wait_random(0, policy.wait_jitter)

    def wait(retry_state: tenacity.RetryCallState) -> float:
        """The backoff, or the server's ``Retry-After`` where that is longer."""
        return max(backoff(retry_state), _outcome_of(retry_state).retry_after or 0.0)

    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_result(resend),
        before_sleep=before_sleep,
        retry_error_callback=_outcome_of,  # the last outcome, not a RetryError
    )
    retrying.begin()
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    last = None
    while True:
        do = retrying.iter(state)
        if isinstance(do, tenacity.DoAttempt):
            if last is not None and clock.monotonic() >= deadline:
                return Run(last, state.attempt_number - 1, True)  # out of time: not this one
            last = yield send
            assert last is not None
            state.set_result(last)
        elif isinstance(do, tenacity.DoSleep):
            state.prepare_for_next_attempt()
            yield Sleep(float(do))
        else:
            assert isinstance(do, Outcome)
            return Run(do, state.attempt_number, False)
