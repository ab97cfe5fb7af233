"""The library's errors as httpx code expects them: each also an ``httpx.HTTPError``.

An ``EmmaHttpxAuth`` raises these instead of the plain classes, so that a failed token call
is caught by ``except httpx.HTTPError`` as well as by the library's own classes (and by
``except requests.RequestException``, their root). Each mirrors one class of
``requests_emma._errors``: same message, same fields, the same cause.
"""

from __future__ import annotations

import httpx

from .._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError


class HttpxEmmaAuthError(EmmaAuthError, httpx.HTTPError):  # type: ignore[misc]
    """:class:`~requests_emma.EmmaAuthError`, and an ``httpx.HTTPError``."""


class HttpxCredentialsError(CredentialsError, httpx.HTTPError):  # type: ignore[misc]
    """:class:`~requests_emma.CredentialsError`, and an ``httpx.HTTPError``."""


class HttpxTokenRequestError(TokenRequestError, httpx.HTTPError):  # type: ignore[misc]
    """:class:`~requests_emma.TokenRequestError`, and an ``httpx.HTTPError``."""


class HttpxTokenResponseError(TokenResponseError, httpx.HTTPError):  # type: ignore[misc]
    """:class:`~requests_emma.TokenResponseError`, and an ``httpx.HTTPError``."""


# httpx.HTTPError's ``request`` is a property, requests.RequestException's an attribute: the
# mirrors keep httpx's (``.request`` raises RuntimeError, as httpx's errors do without one).
_MIRRORS: dict[type[EmmaAuthError], type[EmmaAuthError]] = {
    EmmaAuthError: HttpxEmmaAuthError,
    CredentialsError: HttpxCredentialsError,
    TokenRequestError: HttpxTokenRequestError,
    TokenResponseError: HttpxTokenResponseError,
}


def for_httpx(error: EmmaAuthError) -> EmmaAuthError:
    """``error`` as its httpx mirror: a new exception with its message and fields (the
    caller raises it ``from`` the original's cause)."""
    if isinstance(error, httpx.HTTPError):
        return error
    mirror = next(
        (_MIRRORS[cls] for cls in type(error).__mro__ if cls in _MIRRORS), HttpxEmmaAuthError
    )
    twin = mirror.__new__(mirror, *error.args)
    twin.args = error.args
    fields = dict(error.__dict__)
    fields.pop("request", None)  # httpx.HTTPError's request is a property over _request
    twin.__dict__.update(fields)
    twin.__dict__["_request"] = None  # no request: it would carry the client secret
    return twin
