"""emma's wire format: token parsing, error parsing, request bodies."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from requests_emma import TokenResponseError
from requests_emma._core.wire import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    MAX_REFRESH_LIFETIME,
    issue_token_body,
    jwt_expiry,
    parse_error,
    parse_token,
    refresh_token_body,
)

NOW = 1_700_000_000.0


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def jwt(claims: dict[str, Any]) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join([b64(b'{"alg":"RS256"}'), b64(json.dumps(claims).encode()), b64(b"sig")])


def test_request_bodies_use_emma_field_names() -> None:
    """issue-token and refresh-token bodies use emma's camelCase field names."""
    assert issue_token_body("id", "secret") == {"clientId": "id", "clientSecret": "secret"}
    assert refresh_token_body("r") == {"refreshToken": "r"}


def test_spec_example_parses() -> None:
    """The spec's own Token example parses, its extra fields ignored whatever their type."""
    grant = parse_token(
        body(
            expiresIn=300,
            notBeforePolicy=1668610246,
            sessionState="33fce1d3",
            otherClaims="{}",
            idToken=0,
            accessToken="eyJhbGcih3In0.eyJleHAiOjE3MDA2Mzc4NjksImlhdCI6.VCXC-D43",
            tokenType="Bearer",
            refreshExpiresIn=1800,
            refreshToken="eyJhIwOGIyYi00YzgwLTQ5NTQ",
        ),
        NOW,
    )
    token = grant.to_token(NOW)
    assert (token.expires_at, token.refresh_expires_at) == (NOW + 300, NOW + 1800)
    assert (token.token_type, token.refresh_token) == ("Bearer", "eyJhIwOGIyYi00YzgwLTQ5NTQ")
    assert grant.lifetime_source == "expiresIn"


def test_expires_in_wins_over_jwt_exp() -> None:
    """expiresIn from the response decides the lifetime even when the JWT says otherwise."""
    grant = parse_token(body(accessToken=jwt({"exp": NOW + 900}), expiresIn=120), NOW)
    assert grant.lifetime == 120


def test_jwt_exp_used_without_expires_in() -> None:
    """Without expiresIn the lifetime comes from the JWT exp claim."""
    grant = parse_token(body(accessToken=jwt({"exp": NOW + 600})), NOW)
    assert (grant.lifetime, grant.lifetime_source) == (600, "exp")


def test_opaque_token_gets_default_lifetime() -> None:
    """An opaque token without any expiry gets the conservative default lifetime."""
    grant = parse_token(body(accessToken="opaque-token"), NOW)
    assert (grant.lifetime, grant.lifetime_source) == (DEFAULT_LIFETIME, "default")
    assert grant.token_type == "Bearer" and grant.refresh_token is None


@pytest.mark.parametrize("exp", [10**400, float("inf")])
def test_jwt_exp_beyond_a_float_falls_back_to_default(exp: float) -> None:
    """A JWT exp too large for a float (or infinite) is ignored, not a crash or a forever token."""
    claims = json.dumps({"exp": exp}).replace("Infinity", "1e400")
    token = ".".join(
        base64.urlsafe_b64encode(part).rstrip(b"=").decode()
        for part in (b'{"alg":"RS256"}', claims.encode(), b"sig")
    )
    grant = parse_token(body(accessToken=token), NOW)
    assert (grant.lifetime, grant.lifetime_source) == (DEFAULT_LIFETIME, "default")


def test_incredible_lifetimes_are_not_believed() -> None:
    """A lifetime over a day (or a refresh lifetime over a year) is not taken at its word."""
    grant = parse_token(
        body(
            accessToken=jwt({"exp": NOW + 10**9}),
            expiresIn=10**12,
            refreshToken="r",
            refreshExpiresIn=10**12,
        ),
        NOW,
    )
    assert (grant.lifetime, grant.lifetime_source) == (DEFAULT_LIFETIME, "default")
    assert grant.refresh_lifetime is None


def test_jwt_exp_in_the_past_falls_back_to_default() -> None:
    """A JWT exp already past (clock skew) does not make the token expire at once."""
    grant = parse_token(body(accessToken=jwt({"exp": NOW - 10})), NOW)
    assert grant.lifetime == DEFAULT_LIFETIME


def test_zero_refresh_expires_in_means_unknown() -> None:
    """refreshExpiresIn of 0 (Keycloak's "no fixed expiry") reads as unknown."""
    grant = parse_token(body(accessToken="a", refreshToken="r", refreshExpiresIn=0), NOW)
    assert grant.to_token(NOW).refresh_expires_at is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"<html>", "not JSON"),
        (b"[1, 2]", "JSON array, expected an object"),
        (body(tokenType="Bearer"), "no accessToken"),
        (body(accessToken=""), "no accessToken"),
        (body(accessToken=5), "accessToken is a JSON number"),
        (body(accessToken="a b"), "not allowed in a bearer token"),
        (body(accessToken="a\r\nX-Evil: 1"), "not allowed in a bearer token"),
        (body(accessToken="a", expiresIn="300"), "expiresIn is a JSON string"),
        (body(accessToken="a", expiresIn=True), "expiresIn is a JSON boolean"),
        (body(accessToken="a", refreshToken=7), "refreshToken is a JSON number"),
        (body(accessToken="a", tokenType=["Bearer"]), "tokenType is a JSON array"),
        (b'{"accessToken": "a", "expiresIn": NaN}', "not a finite number"),
        (body(accessToken="a", expiresIn=10**400), "not a finite number"),
        (body(accessToken="a", refreshExpiresIn=10**400), "not a finite number"),
    ],
)
def test_unusable_token_response_says_what_is_wrong(payload: bytes, expected: str) -> None:
    """A 2xx body that is not a usable token raises TokenResponseError naming the problem."""
    with pytest.raises(TokenResponseError, match=expected):
        parse_token(payload, NOW)


def test_token_response_error_never_quotes_the_token() -> None:
    """The error for a malformed token response does not include the token's value."""
    with pytest.raises(TokenResponseError) as caught:
        parse_token(body(accessToken="secret value with spaces"), NOW)
    assert "secret value" not in str(caught.value)


def test_error_body_gives_code_and_message() -> None:
    """An emma error body yields its code and message."""
    assert parse_error(body(code="UNAUTHORIZED", message="Token is not provided")) == (
        "UNAUTHORIZED",
        "Token is not provided",
    )


@pytest.mark.parametrize(
    "payload",
    [b"", b"<html>502</html>", b"[]", body(code=1, message=None), b"[" * 100_000 + b"]" * 100_000],
)
def test_malformed_error_body_gives_nothing(payload: bytes) -> None:
    """An error body that is not emma's {code, message} yields (None, None)."""
    assert parse_error(payload) == (None, None)


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        "a.!!!.c",
        "a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c",
        "a." + base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode() + ".c",
    ],
)
def test_jwt_expiry_of_non_jwt_is_none(token: str) -> None:
    """A token that is not a decodable JWT has no exp."""
    assert jwt_expiry(token) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=5,
)
token_fields = st.fixed_dictionaries(
    {},
    optional={
        "accessToken": json_values | st.text(alphabet="abcXYZ019._-", min_size=1, max_size=40),
        "expiresIn": json_values | st.integers(-10, 10_000) | st.integers(min_value=10**308),
        "refreshToken": json_values,
        "refreshExpiresIn": json_values | st.integers(-10, 10_000),
        "tokenType": json_values,
        "idToken": json_values,
    },
)


@given(token_fields)
def test_any_json_object_parses_or_raises_token_response_error(fields: dict[str, Any]) -> None:
    """Any JSON object either parses to a token with a positive lifetime or raises cleanly."""
    try:
        grant = parse_token(json.dumps(fields).encode(), NOW)
    except TokenResponseError:
        return
    assert grant.access_token == fields["accessToken"]
    assert 0 < grant.lifetime <= MAX_LIFETIME
    assert grant.refresh_lifetime is None or 0 < grant.refresh_lifetime <= MAX_REFRESH_LIFETIME


@given(st.binary())
def test_any_bytes_parse_or_raise_token_response_error(raw: bytes) -> None:
    """Arbitrary bytes never escape as anything but TokenResponseError."""
    try:
        parse_token(raw, NOW)
    except TokenResponseError:
        pass


@given(st.binary())
def test_any_bytes_parse_as_error_without_raising(raw: bytes) -> None:
    """parse_error never raises, whatever the body."""
    code, message = parse_error(raw)
    assert code is None or isinstance(code, str)
    assert message is None or isinstance(message, str)
