"""Every option in seconds is checked the same way: a number, finite, not negative (or, where
zero means nothing, positive), with a ValueError that names the option and the value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from requests_emma import EmmaAuth, EmmaSession, FileTokenCache, RedisTokenCache, RetryPolicy

HUGE = 10**400  # a whole number no float can hold


def _options(directory: Path) -> dict[str, Callable[[object], object]]:
    return {
        "refresh_margin": lambda v: EmmaAuth("id", "secret", refresh_margin=v),  # type: ignore[arg-type]
        "timeout": lambda v: EmmaAuth("id", "secret", timeout=v),  # type: ignore[arg-type]
        "deadline": lambda v: RetryPolicy(deadline=v),  # type: ignore[arg-type]
        "wait_max": lambda v: RetryPolicy(wait_max=v),  # type: ignore[arg-type]
        "lock_timeout": lambda v: FileTokenCache(directory, lock_timeout=v),  # type: ignore[arg-type]
        "blocking_timeout": lambda v: RedisTokenCache.from_url(
            "redis://127.0.0.1:1",
            blocking_timeout=v,  # type: ignore[arg-type]
        ),
        "session timeout": lambda v: EmmaSession(EmmaAuth("id", "secret"), timeout=v),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize(
    "option",
    [
        "refresh_margin",
        "timeout",
        "deadline",
        "wait_max",
        "lock_timeout",
        "blocking_timeout",
        "session timeout",
    ],
)
def test_a_number_too_large_for_a_float_is_a_value_error_naming_the_option(
    option: str, tmp_path: Path
) -> None:
    """10**400 seconds is a ValueError naming the option, not an OverflowError from math."""
    with pytest.raises(ValueError, match=option.split()[-1]) as caught:
        _options(tmp_path)[option](HUGE)
    assert "finite number of seconds" in str(caught.value)


@pytest.mark.parametrize("bad", [True, "5", float("nan"), float("inf"), -1])
@pytest.mark.parametrize("option", ["refresh_margin", "deadline", "lock_timeout"])
def test_a_bad_number_of_seconds_is_refused_with_its_name_and_value(
    option: str, bad: object, tmp_path: Path
) -> None:
    """A bool, a string, NaN, infinity or a negative number is refused, naming the option."""
    with pytest.raises(ValueError, match=option) as caught:
        _options(tmp_path)[option](bad)
    assert repr(bad) in str(caught.value)
