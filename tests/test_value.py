"""The value objects (Token, RetryPolicy): immutable, equal by value, copied and pickled whole."""

from __future__ import annotations

import copy
import pickle

import pytest

from requests_emma import RetryPolicy, Token


class Tagged(Token):
    """A Token subclass with a field of its own, as a user might write."""

    __slots__ = ("tag",)

    def __init__(self, *args: object, tag: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._set(tag=tag)


def test_a_token_cannot_be_changed() -> None:
    """Setting or deleting a field of a Token raises."""
    token = Token("a", "Bearer", 1.0)
    with pytest.raises(AttributeError, match="immutable"):
        token.access_token = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del token.expires_at  # type: ignore[misc]


def test_values_are_equal_hashable_and_pickle_by_value() -> None:
    """Two tokens with the same fields are equal, hash alike, and survive copy and pickle."""
    token = Token("a", "Bearer", 1.0, "r", 2.0)
    assert token == Token("a", "Bearer", 1.0, "r", 2.0) != Token("a", "Bearer", 1.5, "r", 2.0)
    assert len({token, Token("a", "Bearer", 1.0, "r", 2.0)}) == 1
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(token, protocol)) == token
    assert copy.deepcopy(token) == token


def test_replace_makes_a_checked_copy() -> None:
    """__replace__ (copy.replace on 3.13+) builds a new value through the constructor."""
    policy = RetryPolicy(attempts=2)
    assert policy.__replace__(deadline=5.0) == RetryPolicy(attempts=2, deadline=5.0)
    with pytest.raises(ValueError, match="attempts"):
        policy.__replace__(attempts=0)


def test_a_token_subclass_with_fields_of_its_own_compares_and_copies_them() -> None:
    """Value objects take their fields from every class: a subclass's extra field counts."""

    one, other = Tagged("a", "Bearer", 1.0, tag="one"), Tagged("a", "Bearer", 1.0, tag="two")
    assert one != other
    assert copy.copy(one) == one and pickle.loads(pickle.dumps(one)).tag == "one"
