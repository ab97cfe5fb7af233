"""emma's auth wire format: request bodies, ``Token`` parsing and ``{code, message}`` errors.

This is the only module that knows emma's JSON. It does no I/O and reads no clock: callers
pass the time a response arrived.

A token response (spec schema ``Token``) marks no field as required. What we rely on:

- ``accessToken``: a non-empty string that is safe in an HTTP header;
- the lifetime: ``expiresIn`` seconds if present; else the JWT ``exp`` claim of the access
  token, decoded without verification; else :data:`DEFAULT_LIFETIME`. An opaque token with
  no expiry therefore works; a lifetime over :data:`MAX_LIFETIME` is not believed;
- ``refreshToken`` and ``refreshExpiresIn``: optional. ``refreshExpiresIn`` of 0 is how
  Keycloak says "no fixed expiry", so it reads as unknown.

Every other field (``idToken``, ``notBeforePolicy``, ...) is ignored, whatever its type.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

from .._errors import TokenResponseError
from .durations import finite
from .token import Token

ISSUE_TOKEN_PATH = "/v1/issue-token"
REFRESH_TOKEN_PATH = "/v1/refresh-token"

#: Lifetime assumed when neither ``expiresIn`` nor a JWT ``exp`` says: the shortest
#: lifetime emma documents. A wrong guess costs one 401 and a transparent replay.
DEFAULT_LIFETIME = 300.0
#: Longer lifetimes are not believed (an access token for a day, a refresh token for a
#: year): a token taken to live for ages would never be renewed ahead of its expiry.
MAX_LIFETIME = 86_400.0
MAX_REFRESH_LIFETIME = 366 * 86_400.0

# RFC 6750 b64token plus the characters JWTs use; anything else could break (or inject
# into) the Authorization header.
_HEADER_SAFE = re.compile(r"[A-Za-z0-9\-._~+/=]+")
_NOT_JSON = object()


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class TokenGrant:
    """A parsed token response, with lifetimes still relative to when it was asked for."""

    access_token: str
    token_type: str
    lifetime: float
    lifetime_source: str  # "expiresIn", "exp" or "default": for logs
    refresh_token: str | None
    refresh_lifetime: float | None

    def __repr__(self) -> str:
        return (
            f"TokenGrant(lifetime={self.lifetime!r}, source={self.lifetime_source!r}, "
            f"refresh={'yes' if self.refresh_token else 'no'})"
        )

    def to_token(self, received_at: float) -> Token:
        """The :class:`Token` with absolute Unix times, given the Unix time of arrival."""
        refresh_in = self.refresh_lifetime
        refresh_at = None if refresh_in is None else received_at + refresh_in
        expires_at = received_at + self.lifetime
        return Token(self.access_token, self.token_type, expires_at, self.refresh_token, refresh_at)


def issue_token_body(client_id: str, client_secret: str) -> dict[str, str]:
    """The JSON body of ``POST /v1/issue-token``."""
    return {"clientId": client_id, "clientSecret": client_secret}


def refresh_token_body(refresh_token: str) -> dict[str, str]:
    """The JSON body of ``POST /v1/refresh-token``."""
    return {"refreshToken": refresh_token}


def parse_token(body: bytes, received_at: float) -> TokenGrant:
    """Parse a 2xx token response body; ``received_at`` is the Unix time it arrived.

    Raises :class:`TokenResponseError` naming what is wrong, never quoting a token.
    """
    data = _json(body)
    if data is _NOT_JSON:
        raise TokenResponseError("token response is not JSON")
    if not isinstance(data, dict):
        raise TokenResponseError(f"token response is a JSON {_json_type(data)}, expected an object")

    access_token = _optional(data, "accessToken", str, "a string")
    if not access_token:
        raise TokenResponseError("token response has no accessToken")
    token_type = _optional(data, "tokenType", str, "a string")
    if token_type is None:
        token_type = "Bearer"

    expires_in = _optional_seconds(data, "expiresIn")
    if expires_in is not None and 0 < expires_in <= MAX_LIFETIME:
        lifetime, source = expires_in, "expiresIn"
    elif (exp := jwt_expiry(access_token)) is not None and 0 < exp - received_at <= MAX_LIFETIME:
        lifetime, source = exp - received_at, "exp"
    else:
        lifetime, source = DEFAULT_LIFETIME, "default"

    refresh_token = _optional(data, "refreshToken", str, "a string")
    refresh_in = _optional_seconds(data, "refreshExpiresIn")
    return checked_grant(access_token, token_type, lifetime, source, refresh_token, refresh_in)


def checked_grant(
    access_token: str,
    token_type: str,
    lifetime: float,
    lifetime_source: str,
    refresh_token: str | None,
    refresh_lifetime: float | None,
) -> TokenGrant:
    """A :class:`TokenGrant` from fields already of the right types, checked as every token
    that enters the lifecycle is, wherever it came from (a token response, a shared cache):
    the access token must be safe in a header, the lifetime positive and believable.

    Raises :class:`TokenResponseError` for an access token or lifetime that is not; an
    unbelievable refresh lifetime reads as unknown, an empty refresh token as none.
    """
    if not access_token or not _HEADER_SAFE.fullmatch(access_token):
        raise TokenResponseError(
            "token response accessToken has characters that are not allowed in a bearer token"
        )
    if not 0 < lifetime <= MAX_LIFETIME:
        raise TokenResponseError(
            f"token lifetime {lifetime:.0f} s is not between 0 and {MAX_LIFETIME:.0f} s"
        )
    if refresh_lifetime is not None and not 0 < refresh_lifetime <= MAX_REFRESH_LIFETIME:
        refresh_lifetime = None
    return TokenGrant(
        access_token, token_type, lifetime, lifetime_source, refresh_token or None, refresh_lifetime
    )


def parse_error(body: bytes) -> tuple[str | None, str | None]:
    """emma's ``(code, message)`` from an error body; ``None`` for each one absent."""
    data = _json(body)
    if not isinstance(data, dict):
        return None, None
    code, message = data.get("code"), data.get("message")
    return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)


def jwt_expiry(access_token: str) -> float | None:
    """The ``exp`` claim of a JWT, decoded without verification; ``None`` if there is none."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, RecursionError):  # binascii.Error, a bad padding, is a ValueError
        return None
    return finite(claims.get("exp")) if isinstance(claims, dict) else None


def _json(body: bytes) -> object:
    """``body`` decoded, or :data:`_NOT_JSON`. A caller raises for that outside this handler:
    the decoding error would ride along as ``__context__``, and its ``doc`` is the whole body,
    tokens included."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        return _NOT_JSON


def _optional_seconds(data: dict[str, Any], field: str) -> float | None:
    value = _optional(data, field, (int, float), "a number of seconds")
    seconds = finite(value)
    if value is not None and seconds is None:
        raise TokenResponseError(f"token response {field} is not a finite number of seconds")
    return seconds


def _optional(data: dict[str, Any], field: str, kinds: type | tuple[type, ...], what: str) -> Any:
    """``data[field]``, ``None`` if it is absent or null; :class:`TokenResponseError` naming
    its JSON type if it is not one of ``kinds`` (a JSON boolean is no number), ``what``."""
    value = data.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
        raise TokenResponseError(
            f"token response {field} is a JSON {_json_type(value)}, expected {what}"
        )
    return value


#: The JSON name of each Python type ``json.loads`` makes (``bool`` before ``int``, whose
#: subclass it is); ``None`` is ``null``.
_JSON_TYPES = ((bool, "boolean"), ((int, float), "number"), (str, "string"), (list, "array"))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return next((name for kinds, name in _JSON_TYPES if isinstance(value, kinds)), "object")
