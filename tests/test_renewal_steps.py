"""The renewal as a generator of steps, run by hand: no server, no driver, no sleep.

Each test plays the driver: it takes a step with ``next``, answers it with ``send`` (an
:class:`Outcome` for a ``Send``, the entry's bytes for a ``Load``, ``None`` for the rest)
or makes it fail with ``throw``, and moves a :class:`FakeClock` where time would pass. The
answers come from ``response_outcome``, the function every transport uses, so a grant or
an error here is what one from emma would be.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from requests_emma import CredentialsError, Token, TokenRequestError
from requests_emma._core import backoff
from requests_emma._core.cache_entry import Entry, Sealer
from requests_emma._core.lifecycle import TokenLifecycle
from requests_emma._core.outcome import Kind, Outcome, response_outcome
from requests_emma._core.renewal import LOCK_SLICE, RenewalPlan, Steps
from requests_emma._core.retry_policy import RetryPolicy
from requests_emma._core.secret import Secret
from requests_emma._core.steps import Load, Lock, Save, Send, Sleep, Step, Unlock
from requests_emma._core.wire import ISSUE_TOKEN_PATH, REFRESH_TOKEN_PATH
from requests_emma.testing import FakeClock

BASE_URL = "https://emma.example/external"
CLIENT_ID = "client-1"
SECRET = "secret-1"
KEY = "entry-key"
#: No jitter: the waits are exactly the policy's.
POLICY = RetryPolicy(attempts=5, deadline=30.0, wait_initial=0.5, wait_max=10.0, wait_jitter=0)
#: A shared cache as a renewal plan takes it: the entry's key, the sealer, the cache's name.
Cache = tuple[str, Sealer, str]


# -- the world's answers ---------------------------------------------------------------------


def answer(
    clock: FakeClock,
    status: int,
    body: dict[str, Any] | None = None,
    retry_after: str | None = None,
) -> Outcome:
    """What a token call sent now that got ``status`` with ``body`` came to."""
    content = json.dumps(body if body is not None else {}).encode()
    now, wall = clock.monotonic(), clock.wall()
    return response_outcome(
        status, content, retry_after, sent_at=now, sent_wall=wall, wall_now=wall
    )


def granted(clock: FakeClock, access: str = "access-1", refresh: str | None = None) -> Outcome:
    """A 200 with a 300 s access token (and ``refresh``, for 1800 s, if given)."""
    body: dict[str, Any] = {"accessToken": access, "expiresIn": 300, "tokenType": "Bearer"}
    if refresh is not None:
        body.update(refreshToken=refresh, refreshExpiresIn=1800)
    return answer(clock, 200, body)


def refused(clock: FakeClock, status: int = 400) -> Outcome:
    return answer(clock, status, {"code": "UNAUTHORIZED", "message": "Invalid credentials"})


def busy(clock: FakeClock, retry_after: str | None = None) -> Outcome:
    return answer(clock, 503, {"code": "UNAVAILABLE", "message": "busy"}, retry_after)


def no_answer(clock: FakeClock) -> Outcome:
    """A call that timed out: transient, with no status."""
    now, wall = clock.monotonic(), clock.wall()
    return Outcome(Kind.TRANSIENT, "timed out", sent_at=now, sent_wall=wall)


# -- running the generator by hand -----------------------------------------------------------


def plan(shared: Cache | None = None) -> RenewalPlan:
    if shared is None:
        return RenewalPlan(BASE_URL, CLIENT_ID, Secret(SECRET))
    key, sealer, name = shared
    return RenewalPlan(BASE_URL, CLIENT_ID, Secret(SECRET), key, sealer, name)


def sealer() -> Sealer:
    return Sealer(BASE_URL, CLIENT_ID, SECRET)


def shared() -> Cache:
    return (KEY, sealer(), "FakeCache()")


def start(
    lifecycle: TokenLifecycle,
    clock: FakeClock,
    policy: RetryPolicy = POLICY,
    shared: Cache | None = None,
) -> tuple[Steps, Step]:
    """The renewal's generator and its first step."""
    steps = plan(shared).steps(lifecycle, policy, clock)
    return steps, next(steps)


def finish(steps: Steps, result: object) -> Token:
    """Answer the last step with ``result``; the renewal must return its token."""
    with pytest.raises(StopIteration) as done:
        steps.send(result)
    token: Token = done.value.value
    return token


def with_refresh_token(clock: FakeClock, refresh: str = "refresh-1") -> TokenLifecycle:
    """A lifecycle holding an expired access token and a live refresh token."""
    lifecycle = TokenLifecycle()
    outcome = granted(clock, "access-0", refresh)
    assert outcome.grant is not None
    lifecycle.accept(outcome.grant, outcome.sent_at, outcome.sent_wall)
    clock.advance(400)  # past the access token's 300 s, well inside the refresh token's 1800
    return lifecycle


def granted_saved_unlocked(steps: Steps, clock: FakeClock) -> Token:
    """Answer the Send step a shared renewal is at with a grant, then its Save and Unlock
    steps; the token it returns."""
    assert isinstance(steps.send(granted(clock)), Save)
    assert isinstance(steps.send(None), Unlock)
    return finish(steps, None)


def sealed_entry(clock: FakeClock, access: str = "cached-1", generation: int = 1) -> bytes:
    """A shared cache entry, sealed for this client, holding a token issued just now."""
    wall = clock.wall()
    token = Token(access_token=access, token_type="Bearer", expires_at=wall + 300)
    return sealer().seal(KEY, Entry(generation, token, wall))


# -- without a shared cache ------------------------------------------------------------------


def test_the_first_renewal_sends_issue_token_with_the_credentials() -> None:
    """With no token at all, the first step posts clientId and clientSecret to issue-token."""
    clock = FakeClock()
    _steps, step = start(TokenLifecycle(), clock)
    assert isinstance(step, Send)
    assert step.path == ISSUE_TOKEN_PATH
    assert step.body() == {"clientId": CLIENT_ID, "clientSecret": SECRET}
    assert step.deadline == clock.monotonic() + POLICY.deadline


def test_a_granted_token_is_returned_and_accepted_into_the_lifecycle() -> None:
    """The grant answering the Send step is the renewal's result and the lifecycle's token,
    its lifetime counted from when the request was sent."""
    clock = FakeClock()
    lifecycle = TokenLifecycle()
    steps, _ = start(lifecycle, clock)
    outcome = granted(clock)
    token = finish(steps, outcome)
    assert token.access_token == "access-1"
    assert lifecycle.current == token
    held = lifecycle.usable(clock.monotonic())
    assert held is not None and held.expires == outcome.sent_at + 300


def test_a_lifecycle_with_a_refresh_token_refreshes_first() -> None:
    """A live refresh token is posted to refresh-token, not the credentials to issue-token."""
    clock = FakeClock()
    steps, step = start(with_refresh_token(clock), clock)
    assert isinstance(step, Send)
    assert (step.path, step.body()) == (REFRESH_TOKEN_PATH, {"refreshToken": "refresh-1"})
    assert finish(steps, granted(clock, "access-2", "refresh-2")).access_token == "access-2"


def test_a_refused_refresh_token_falls_back_to_issue_token() -> None:
    """refresh-token answering 400 drops the refresh token; the next step is issue-token."""
    clock = FakeClock()
    lifecycle = with_refresh_token(clock)
    steps, _ = start(lifecycle, clock)
    step = steps.send(refused(clock, 400))
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH
    assert lifecycle.take_refresh_token(clock.monotonic()) is None
    assert finish(steps, granted(clock, "access-2")).access_token == "access-2"


def test_a_404_from_refresh_token_falls_back_to_issue_token() -> None:
    """A 404 from refresh-token (misdirected, or a gateway that no longer knows the refresh
    token) also means issue-token."""
    clock = FakeClock()
    steps, _ = start(with_refresh_token(clock), clock)
    step = steps.send(answer(clock, 404, {"code": "NOT_FOUND", "message": "no such token"}))
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH


def test_a_refresh_with_no_answer_is_not_sent_again_and_issue_token_is_asked() -> None:
    """A refresh-token call that timed out may have reached emma (which may have rotated the
    refresh token): it is not tried again, the refresh token is dropped, issue-token follows."""
    clock = FakeClock()
    lifecycle = with_refresh_token(clock)
    steps, step = start(lifecycle, clock)
    assert isinstance(step, Send) and step.path == REFRESH_TOKEN_PATH
    step = steps.send(no_answer(clock))
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH
    assert lifecycle.take_refresh_token(clock.monotonic()) is None
    assert finish(steps, granted(clock, "access-2")).refresh_token is None


def test_a_failed_refresh_is_not_retried_and_issue_token_is_asked() -> None:
    """A refresh is tried once: a 500 (transient for issue-token) drops the refresh token
    (the call may have been carried out) and the next step is issue-token, with no Sleep."""
    clock = FakeClock()
    lifecycle = with_refresh_token(clock)
    steps, _ = start(lifecycle, clock)
    step = steps.send(answer(clock, 500, {"code": "ERROR", "message": "oops"}))
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH
    assert lifecycle.take_refresh_token(clock.monotonic()) is None


@pytest.mark.parametrize("status", [429, 503])
def test_a_refresh_told_to_wait_gives_the_refresh_token_back_and_fails(status: int) -> None:
    """A 429 or 503 with Retry-After on refresh-token shows the call was not carried out: it
    is sent again after the wait; when that is the last answer, the renewal fails with the
    hold's seconds and no issue-token call, and the refresh token is sent by the next renewal
    after the hold."""
    clock = FakeClock()
    lifecycle = with_refresh_token(clock)
    steps, _ = start(lifecycle, clock)
    busy = {"code": "BUSY", "message": "wait"}
    assert isinstance(steps.send(answer(clock, status, busy, "20")), Sleep)
    clock.advance(20)
    assert isinstance(steps.send(None), Send)  # the same refresh token, after the wait
    with pytest.raises(TokenRequestError, match="refresh-token") as caught:
        steps.send(answer(clock, status, busy, "20"))  # past the deadline: no more waits
    assert caught.value.retry_after == 20.0
    assert lifecycle.calls_held(clock.monotonic()) is not None
    clock.advance(20)
    _steps, step = start(lifecycle, clock)
    assert isinstance(step, Send)
    assert (step.path, step.body()) == (REFRESH_TOKEN_PATH, {"refreshToken": "refresh-1"})


def test_a_refresh_interrupted_in_flight_is_not_sent_again() -> None:
    """A renewal interrupted at its refresh-token Send leaves the refresh token taken: the
    next renewal issues a token with the client credentials."""
    clock = FakeClock()
    lifecycle = with_refresh_token(clock)
    steps, step = start(lifecycle, clock)
    assert isinstance(step, Send) and step.path == REFRESH_TOKEN_PATH
    with pytest.raises(KeyboardInterrupt):
        steps.throw(KeyboardInterrupt())
    _steps, step = start(lifecycle, clock)
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH


def test_a_refreshed_grant_without_a_refresh_token_keeps_the_one_sent() -> None:
    """A refresh answered with an access token only keeps the refresh token it sent, for
    the next renewal."""
    clock = FakeClock()
    lifecycle = with_refresh_token(clock)
    steps, _ = start(lifecycle, clock)
    token = finish(steps, granted(clock, "access-2"))
    assert token.refresh_token == "refresh-1"
    assert lifecycle.take_refresh_token(clock.monotonic()) == "refresh-1"


def test_a_transient_failure_is_retried_after_the_policys_wait() -> None:
    """A 503 without Retry-After is followed by a Sleep of wait_initial, then the same Send."""
    clock = FakeClock()
    steps, first = start(TokenLifecycle(), clock)
    step = steps.send(busy(clock))
    assert isinstance(step, Sleep) and step.seconds == POLICY.wait_initial
    clock.sleep(step.seconds)
    assert steps.send(None) is first  # the same request, under the same deadline
    assert finish(steps, granted(clock)).access_token == "access-1"


def test_the_waits_between_attempts_double() -> None:
    """Three transient failures in a row wait 0.5, 1 and 2 s (no jitter)."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock)
    waits = []
    for _ in range(3):
        step = steps.send(no_answer(clock))
        assert isinstance(step, Sleep)
        waits.append(step.seconds)
        clock.sleep(step.seconds)
        assert isinstance(steps.send(None), Send)
    assert waits == [0.5, 1.0, 2.0]


def test_retry_after_is_a_floor_for_the_wait() -> None:
    """A 503 with Retry-After: 7 waits 7 s, not the policy's 0.5 s."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock)
    step = steps.send(busy(clock, retry_after="7"))
    assert isinstance(step, Sleep) and step.seconds == 7.0


def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    """Retry-After: 1 after three failures still waits the policy's 4 s."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock)
    for _ in range(3):
        wait = steps.send(no_answer(clock))
        assert isinstance(wait, Sleep)
        clock.sleep(wait.seconds)
        steps.send(None)
    step = steps.send(busy(clock, retry_after="1"))
    assert isinstance(step, Sleep) and step.seconds == 4.0


def test_the_deadline_stops_the_retries() -> None:
    """An attempt that took 9.6 s of a 10 s deadline leaves no room for the 0.5 s wait and
    another: the renewal fails after that one attempt, saying why."""
    clock = FakeClock()
    policy = RetryPolicy(attempts=5, deadline=10.0, wait_initial=0.5, wait_jitter=0)
    steps, _ = start(TokenLifecycle(), clock, policy)
    outcome = no_answer(clock)
    clock.advance(9.6)
    with pytest.raises(TokenRequestError, match="deadline") as caught:
        steps.send(outcome)
    assert caught.value.attempts == 1


def test_a_wait_that_overran_the_deadline_starts_no_attempt() -> None:
    """If the Sleep step took longer than asked and passed the deadline, the renewal fails
    with the last outcome instead of sending again."""
    clock = FakeClock()
    policy = RetryPolicy(attempts=5, deadline=10.0, wait_initial=4.0, wait_jitter=0)
    steps, _ = start(TokenLifecycle(), clock, policy)
    step = steps.send(busy(clock))
    assert isinstance(step, Sleep) and step.seconds == 4.0
    clock.advance(15.0)  # a wait of 4 s that took 15 (a suspended or overloaded machine)
    with pytest.raises(TokenRequestError, match="no time left") as caught:
        steps.send(None)
    assert caught.value.attempts == 1


def test_a_retry_after_past_the_deadline_holds_token_calls() -> None:
    """A 429 asking for 60 s, past the 30 s deadline, ends the renewal at once with
    retry_after set, and no Sleep step."""
    clock = FakeClock()
    lifecycle = TokenLifecycle()
    steps, _ = start(lifecycle, clock)
    with pytest.raises(TokenRequestError, match="60 seconds") as caught:
        steps.send(answer(clock, 429, {"code": "TOO_MANY", "message": "slow down"}, "60"))
    assert caught.value.retry_after == 60.0
    assert lifecycle.calls_held(clock.monotonic()) is not None


def test_a_hold_makes_the_next_renewal_fail_with_no_send() -> None:
    """Inside the hold a 429 put on token calls, the next renewal raises at its first step,
    TokenRequestError with the seconds left, having sent nothing."""
    clock = FakeClock()
    lifecycle = TokenLifecycle()
    steps, _ = start(lifecycle, clock)
    with pytest.raises(TokenRequestError):
        steps.send(answer(clock, 429, {}, "60"))
    clock.advance(20)
    with pytest.raises(TokenRequestError, match="no token call made") as caught:
        start(lifecycle, clock)
    assert (caught.value.attempts, caught.value.retry_after) == (0, 40.0)


def test_refused_credentials_raise_credentials_error_and_hold_calls() -> None:
    """issue-token answering 400 raises CredentialsError with the hold's seconds, and the
    next renewal inside it fails at once with CredentialsError too."""
    clock = FakeClock()
    lifecycle = TokenLifecycle()
    steps, _ = start(lifecycle, clock)
    with pytest.raises(CredentialsError, match="Invalid credentials") as caught:
        steps.send(refused(clock))
    assert caught.value.retry_after == 5.0
    clock.advance(1)
    with pytest.raises(CredentialsError, match="no token call made"):
        start(lifecycle, clock)


@pytest.mark.parametrize("status", [400, 403])
def test_refused_credentials_are_not_retried(status: int) -> None:
    """A refusal (400 or 403) is final: no Sleep step, one attempt."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock)
    with pytest.raises(CredentialsError) as caught:
        steps.send(refused(clock, status))
    assert "1 attempt in" in str(caught.value)


@pytest.mark.parametrize("status", [401, 404, 405])
def test_a_misdirected_answer_points_at_the_base_url(status: int) -> None:
    """401, 404 or 405 from issue-token is no token endpoint's answer: TokenRequestError
    (not CredentialsError) saying to check the base URL, one attempt, no hold."""
    clock = FakeClock()
    lifecycle = TokenLifecycle()
    steps, _ = start(lifecycle, clock)
    with pytest.raises(TokenRequestError, match="check the base URL") as caught:
        steps.send(refused(clock, status))
    assert not isinstance(caught.value, CredentialsError)
    assert (caught.value.status_code, caught.value.attempts) == (status, 1)
    assert lifecycle.calls_held(clock.monotonic()) is None


# -- with a shared cache ---------------------------------------------------------------------


def test_a_shared_renewal_locks_then_loads() -> None:
    """With a shared cache, the first step takes the lock for one slice of the wait, the
    second loads the entry, both under the client's key."""
    clock = FakeClock()
    steps, step = start(TokenLifecycle(), clock, shared=shared())
    assert isinstance(step, Lock) and (step.key, step.timeout) == (KEY, LOCK_SLICE)
    step = steps.send(None)
    assert isinstance(step, Load) and step.key == KEY
    assert isinstance(steps.send(None), Send)
    granted_saved_unlocked(steps, clock)


def test_a_fresh_entry_is_adopted_with_no_token_call() -> None:
    """A fresh token in the sealed entry is the renewal's result: Lock, Load, Unlock, no Send."""
    clock = FakeClock()
    lifecycle = TokenLifecycle()
    steps, _ = start(lifecycle, clock, shared=shared())
    steps.send(None)  # Lock taken
    step = steps.send(sealed_entry(clock))
    assert isinstance(step, Unlock)
    token = finish(steps, None)
    assert token.access_token == "cached-1"
    assert lifecycle.current == token


def test_a_damaged_entry_is_ignored() -> None:
    """An entry with one byte changed does not open: the renewal calls issue-token."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock, shared=shared())
    steps.send(None)
    entry = bytearray(sealed_entry(clock))
    entry[-1] ^= 1
    step = steps.send(bytes(entry))
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH
    assert granted_saved_unlocked(steps, clock).access_token == "access-1"


def test_an_empty_cache_leads_to_a_token_call() -> None:
    """No entry (Load answers None): the renewal calls issue-token."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock, shared=shared())
    steps.send(None)
    step = steps.send(None)
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH
    granted_saved_unlocked(steps, clock)


def test_a_lock_held_elsewhere_for_the_whole_wait_fails_with_no_token_call() -> None:
    """Lock timing out slice after slice, with no token in the entry between, ends the
    renewal at the deadline with TokenRequestError, attempts=0, and no Send."""
    clock = FakeClock()
    steps, step = start(TokenLifecycle(), clock, shared=shared())
    locks = 0
    with pytest.raises(TokenRequestError, match="held the token cache lock") as caught:
        while True:
            assert isinstance(step, Lock) and step.timeout <= LOCK_SLICE
            locks += 1
            clock.advance(step.timeout)
            assert isinstance(steps.throw(TimeoutError()), Load)
            step = steps.send(None)
    assert caught.value.attempts == 0
    assert locks == POLICY.deadline / LOCK_SLICE


def test_a_token_saved_while_waiting_for_the_lock_ends_the_wait() -> None:
    """Between two slices of the lock wait the entry is loaded: a fresh token saved by the
    holder is the renewal's result, with no token call and no Unlock (no lock was taken)."""
    clock = FakeClock()
    lifecycle = TokenLifecycle()
    steps, step = start(lifecycle, clock, shared=shared())
    assert isinstance(step, Lock)
    clock.advance(step.timeout)
    assert isinstance(steps.throw(TimeoutError()), Load)
    step = steps.send(None)  # nothing saved yet: the next slice
    assert isinstance(step, Lock)
    clock.advance(step.timeout)
    assert isinstance(steps.throw(TimeoutError()), Load)
    token = finish(steps, sealed_entry(clock))
    assert token.access_token == "cached-1" and lifecycle.current == token


def test_the_last_lock_slice_ends_at_the_deadline() -> None:
    """A lock slice never reaches past the renewal's deadline: with 0.2 s left, the Lock
    step waits 0.2 s."""
    clock = FakeClock()
    policy = RetryPolicy(deadline=LOCK_SLICE + 0.2, wait_jitter=0)
    steps, step = start(TokenLifecycle(), clock, policy, shared=shared())
    assert isinstance(step, Lock) and step.timeout == LOCK_SLICE
    clock.advance(LOCK_SLICE)
    steps.throw(TimeoutError())
    step = steps.send(None)
    assert isinstance(step, Lock) and step.timeout == pytest.approx(0.2)


def test_a_cache_outage_at_the_lock_renews_without_the_cache() -> None:
    """Lock failing otherwise (a cache outage) renews with no Load, Save or Unlock step."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock, shared=shared())
    step = steps.throw(ConnectionError("cache down"))
    assert isinstance(step, Send) and step.path == ISSUE_TOKEN_PATH
    assert finish(steps, granted(clock)).access_token == "access-1"


def test_a_new_token_is_saved_sealed_then_the_lock_released() -> None:
    """After a grant, the Save step carries the entry, sealed, opening to the new token of
    the next generation; Unlock follows, and the renewal returns the token."""
    clock = FakeClock()
    cache = shared()
    steps, _ = start(TokenLifecycle(), clock, shared=cache)
    steps.send(None)
    steps.send(None)  # nothing in the cache
    step = steps.send(granted(clock, "access-1", "refresh-1"))
    assert isinstance(step, Save) and step.key == KEY
    assert b"access-1" not in step.data and b"refresh-1" not in step.data
    entry = cache[1].open(KEY, step.data)
    assert entry is not None and entry.generation == 1 and entry.token is not None
    assert (entry.token.access_token, entry.token.refresh_token) == ("access-1", "refresh-1")
    assert step.ttl == pytest.approx(1800)  # until the refresh token expires
    assert isinstance(steps.send(None), Unlock)
    assert finish(steps, None).access_token == "access-1"


def test_a_failed_save_still_returns_the_token_after_unlocking() -> None:
    """Save throwing (a cache outage) is logged; Unlock follows and the token is returned."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock, shared=shared())
    steps.send(None)
    steps.send(None)
    assert isinstance(steps.send(granted(clock)), Save)
    assert isinstance(steps.throw(ConnectionError("cache down")), Unlock)
    assert finish(steps, None).access_token == "access-1"


def test_a_hold_is_saved_for_the_fleet_before_the_error() -> None:
    """A 429 that holds token calls is sealed into the cache (Save, then Unlock) before the
    renewal raises, so other processes keep the hold too."""
    clock = FakeClock()
    cache = shared()
    steps, _ = start(TokenLifecycle(), clock, shared=cache)
    steps.send(None)
    steps.send(None)
    step = steps.send(answer(clock, 429, {}, "60"))
    assert isinstance(step, Save)
    entry = cache[1].open(KEY, step.data)
    assert entry is not None and entry.hold is not None
    assert (entry.hold.until, entry.hold.seconds) == (clock.wall() + 60, 60.0)
    assert isinstance(steps.send(None), Unlock)
    with pytest.raises(TokenRequestError):
        steps.send(None)


def test_unlock_is_the_next_step_after_an_interrupted_send() -> None:
    """KeyboardInterrupt thrown at the Send step is answered by an Unlock step first; after
    it, the KeyboardInterrupt comes out of the renewal."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock, shared=shared())
    steps.send(None)
    assert isinstance(steps.send(None), Send)
    step = steps.throw(KeyboardInterrupt())
    assert isinstance(step, Unlock) and step.key == KEY
    with pytest.raises(KeyboardInterrupt):
        steps.send(None)


def test_unlock_is_the_next_step_after_an_interrupted_sleep() -> None:
    """An interrupt during a wait between attempts also releases the lock before leaving."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock, shared=shared())
    steps.send(None)
    steps.send(None)
    assert isinstance(steps.send(busy(clock)), Sleep)
    assert isinstance(steps.throw(KeyboardInterrupt()), Unlock)
    with pytest.raises(KeyboardInterrupt):
        steps.send(None)


def test_a_renewal_closed_while_holding_the_lock_closes_cleanly() -> None:
    """close() on a renewal suspended at its Send step, inside the cache lock, ends it
    without error (no step can be carried out any more)."""
    clock = FakeClock()
    steps, _ = start(TokenLifecycle(), clock, shared=shared())
    steps.send(None)
    assert isinstance(steps.send(None), Send)
    steps.close()


# -- backoff.attempts alone ------------------------------------------------------------------


def test_attempts_yield_sends_and_doubling_sleeps_until_a_grant() -> None:
    """Three transient outcomes then a grant: Send, Sleep 0.5, Send, Sleep 1, Send, Sleep 2,
    Send; the run ends with the grant after 4 attempts, in time."""
    clock = FakeClock()
    send = Send(ISSUE_TOKEN_PATH, dict, clock.monotonic() + POLICY.deadline)
    run = backoff.attempts(send, POLICY, clock)
    seen: list[object] = [next(run)]
    for _ in range(3):
        sleep = run.send(busy(clock))
        seen.append(sleep)
        assert isinstance(sleep, Sleep)
        clock.sleep(sleep.seconds)
        seen.append(run.send(None))
    with pytest.raises(StopIteration) as done:
        run.send(granted(clock))
    assert [s.seconds if isinstance(s, Sleep) else s for s in seen] == [
        send,
        0.5,
        send,
        1.0,
        send,
        2.0,
        send,
    ]
    outcome, attempts, out_of_time = done.value.value
    assert (outcome.kind, attempts, out_of_time) == (Kind.GRANT, 4, False)


def test_attempts_stop_after_the_policys_count() -> None:
    """With attempts=2, the second transient outcome ends the run with it: no third Send."""
    clock = FakeClock()
    policy = RetryPolicy(attempts=2, wait_jitter=0)
    send = Send(ISSUE_TOKEN_PATH, dict, clock.monotonic() + policy.deadline)
    run = backoff.attempts(send, policy, clock)
    next(run)
    assert isinstance(run.send(busy(clock)), Sleep)
    assert run.send(None) is send
    last = busy(clock)
    with pytest.raises(StopIteration) as done:
        run.send(last)
    assert done.value.value[:2] == (last, 2)
