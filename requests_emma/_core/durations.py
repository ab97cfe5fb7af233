"""Durations and numbers: every option in seconds is checked by :func:`seconds`.

Durations are float seconds throughout (``refresh_margin``, ``timeout``, the retry policy's
waits and deadline, the caches' lock timeouts). A ``bool`` is refused though it is an
``int``: ``timeout=True`` is a mistake, not one second. :func:`finite` reads a number that
arrives as data (a token response, a cache entry, a JWT claim) without raising.
"""

from __future__ import annotations

import math


def seconds(name: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite number of seconds, not negative (with ``positive``, above zero);
    otherwise ``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(  # noqa: TRY004 - the project's rule: bad values are ValueErrors
            f"{name} must be a number of seconds, got a {type(value).__name__}: {value!r}"
        )
    number = finite(value)
    if number is None:
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if number < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return number


def timeout(value: object) -> tuple[float, float]:
    """A requests-style timeout (seconds, or a (connect, read) pair), both parts positive."""
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"timeout must be seconds or a (connect, read) pair, got {value!r}")
    connect, read = (seconds("timeout", part) for part in pair)
    if connect == 0 or read == 0:
        raise ValueError(f"timeout must be positive, got {value!r}")
    return connect, read


def finite(value: object) -> float | None:
    """``value`` as a float if it is a number (not a ``bool``) that is finite and fits a
    float; ``None`` otherwise (infinite, NaN, an integer too large, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value) if math.isfinite(value) else None
    except OverflowError:  # an int too large for a float
        return None
