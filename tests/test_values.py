"""The value objects (Token, RetryPolicy, TokenStatus): frozen dataclasses, equal by value,
copied and pickled whole, checked when made."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from requests_emma import RetryPolicy, Token, TokenStatus


def test_a_token_cannot_be_changed() -> None:
    """Setting a field of a Token raises."""
    token = Token("a", "Bearer", 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.access_token = "b"  # type: ignore[misc]


def test_values_are_equal_hashable_and_pickle_by_value() -> None:
    """Two tokens with the same fields are equal, hash alike, and survive copy and pickle."""
    token = Token("a", "Bearer", 1.0, "r", 2.0)
    assert token == Token("a", "Bearer", 1.0, "r", 2.0) != Token("a", "Bearer", 1.5, "r", 2.0)
    assert len({token, Token("a", "Bearer", 1.0, "r", 2.0)}) == 1
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(token, protocol)) == token
    assert copy.deepcopy(token) == token


def test_replace_makes_a_checked_copy() -> None:
    """dataclasses.replace (copy.replace on 3.13+) builds a new value through its checks."""
    policy = RetryPolicy(attempts=2)
    assert dataclasses.replace(policy, deadline=5.0) == RetryPolicy(attempts=2, deadline=5.0)
    with pytest.raises(ValueError, match="attempts"):
        dataclasses.replace(policy, attempts=0)


def test_options_are_keyword_only() -> None:
    """RetryPolicy and TokenStatus take keyword arguments only."""
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        TokenStatus(1.0, False, None, None)  # type: ignore[misc]


def test_reprs_hide_the_tokens() -> None:
    """A Token's repr shows neither the access token nor the refresh token."""
    text = repr(Token("secret-access", "Bearer", 1.0, "secret-refresh", 2.0))
    assert "secret" not in text and "***" in text
