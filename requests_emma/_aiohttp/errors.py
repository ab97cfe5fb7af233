"""The library's errors as aiohttp code expects them: each also an ``aiohttp.ClientError``.

An ``EmmaAiohttpMiddleware`` raises these instead of the plain classes. Not only so that
``except aiohttp.ClientError`` catches a failed token call: the library's errors are
``OSError``\\ s (``requests.RequestException`` is one), and aiohttp turns an ``OSError`` that
leaves a middleware into a ``ClientOSError`` of its own, losing the class, its fields and
its message. A ``ClientError`` it lets through as it is. Each mirrors one class of
``requests_emma._errors``: same message, same fields, the same cause.
"""

from __future__ import annotations

import aiohttp

from .._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError


class AiohttpEmmaAuthError(EmmaAuthError, aiohttp.ClientError):
    """:class:`~requests_emma.EmmaAuthError`, and an ``aiohttp.ClientError``."""


class AiohttpCredentialsError(CredentialsError, aiohttp.ClientError):
    """:class:`~requests_emma.CredentialsError`, and an ``aiohttp.ClientError``."""


class AiohttpTokenRequestError(TokenRequestError, aiohttp.ClientError):
    """:class:`~requests_emma.TokenRequestError`, and an ``aiohttp.ClientError``."""


class AiohttpTokenResponseError(TokenResponseError, aiohttp.ClientError):
    """:class:`~requests_emma.TokenResponseError`, and an ``aiohttp.ClientError``."""


_MIRRORS: dict[type[EmmaAuthError], type[EmmaAuthError]] = {
    EmmaAuthError: AiohttpEmmaAuthError,
    CredentialsError: AiohttpCredentialsError,
    TokenRequestError: AiohttpTokenRequestError,
    TokenResponseError: AiohttpTokenResponseError,
}


def for_aiohttp(error: EmmaAuthError) -> EmmaAuthError:
    """``error`` as its aiohttp mirror: a new exception with its message and fields (the
    caller raises it ``from`` the original's cause)."""
    if isinstance(error, aiohttp.ClientError):
        return error
    mirror = next(
        (_MIRRORS[cls] for cls in type(error).__mro__ if cls in _MIRRORS), AiohttpEmmaAuthError
    )
    twin = mirror.__new__(mirror, *error.args)
    twin.args = error.args
    twin.__dict__.update(error.__dict__)
    return twin
