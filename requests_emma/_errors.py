"""The exceptions requests-emma raises.

All of them derive from :class:`EmmaAuthError`, itself a
:class:`requests.RequestException`, so code that already catches
``requests.RequestException`` also catches authentication failures.

No exception carries the token request or response object: the request body holds the
client secret and a token response holds tokens. Messages are built from the status, emma's
``code`` and ``message``, and counts, never from a secret.

Every argument after the message has a default: ``pickle`` and ``copy`` rebuild an
exception as ``cls(*args)`` and then restore its attributes, so errors raised in a worker
process reach the parent whole.
"""

from __future__ import annotations

import errno
import os
import typing

import requests


class EmmaAuthError(requests.RequestException):
    """Root of every error raised by requests-emma."""


class _Answered(EmmaAuthError):
    """The fields both errors of a token endpoint's answer carry: its status and emma's
    ``code`` and ``message``, and the seconds before token calls are made again."""

    def __init__(
        self,
        text: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(text)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.retry_after = retry_after


class CredentialsError(_Answered):
    """The client credentials are missing, or issue-token rejected them.

    ``status_code``, ``code`` and ``message`` are set when the server rejected them
    (``None`` when they were missing). ``retry_after``: after a refusal, no token call is
    made for a backoff (shared by the processes of a token cache); this is the seconds of it
    left when the error was raised (``None`` when there is none).
    """


class TokenRequestError(_Answered):
    """A token endpoint failed: an error status, a network failure, or retries ran out.

    ``status_code`` is the last HTTP status (``None`` when no answer came), ``code`` and
    ``message`` are emma's error fields when the body had them, ``endpoint`` is the path
    called, ``attempts`` how many calls were made and ``elapsed`` the seconds spent.
    ``retry_after``: when emma asked to wait (``Retry-After`` on a 429 or 503), the seconds
    from the raising of this error until it takes token calls again; none is made before
    (``None`` when it did not ask).
    """

    def __init__(
        self,
        text: str,
        *,
        endpoint: str = "",
        status_code: int | None = None,
        code: str | None = None,
        message: str | None = None,
        attempts: int = 1,
        elapsed: float = 0.0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            text, status_code=status_code, code=code, message=message, retry_after=retry_after
        )
        self.endpoint = endpoint
        self.attempts = attempts
        self.elapsed = elapsed


class TokenResponseError(EmmaAuthError):
    """A token endpoint answered 2xx, but the body is not a usable token."""


_Chained = typing.TypeVar("_Chained", bound=BaseException)


def chain(exc: BaseException, *, wrapped: bool = False) -> list[BaseException]:
    """``exc`` and every exception chained to it (``__cause__``, ``__context__``, and the
    members of an exception group), each once, depth first: the one walk down a chain of
    causes. ``wrapped``: also what exceptions carry in their arguments, ``reason`` (urllib3)
    or ``os_error`` (aiohttp), where the HTTP stacks keep the system's error."""
    links: dict[int, BaseException] = {}  # by id: each once, in the order met
    pending: list[object] = [exc]
    while pending:
        link = pending.pop()
        if not isinstance(link, BaseException) or id(link) in links:
            continue
        links[id(link)] = link
        pending += (link.__cause__, link.__context__)
        if wrapped:
            pending += (getattr(link, "reason", None), *link.args, getattr(link, "os_error", None))
        pending += getattr(link, "exceptions", ())
    return list(links.values())


def without_tracebacks(exc: _Chained) -> _Chained:
    """``exc`` with no traceback along its chain of causes (``__cause__``, ``__context__``).

    A traceback keeps its frames, and their locals: the request body that holds the client
    secret, redis-py's URL with its password.
    """
    for link in chain(exc):
        link.__traceback__ = None
    return exc


def os_reason(exc: BaseException) -> str | None:
    """The operating system's words for a network failure ("Connection refused", "Name or
    service not known"), found down the chain of causes (and exception groups) that
    urllib3 and requests, httpx, httpcore and anyio, or aiohttp wrap it in."""
    for link in chain(exc, wrapped=True):
        # aiohttp's connector errors copy the system error's words and keep it: use it.
        if isinstance(getattr(link, "os_error", None), OSError):
            continue
        if isinstance(link, OSError) and link.strerror:
            if type(link).__module__ == "builtins" and link.errno in errno.errorcode:
                # asyncio and trio put the address in ("Connect call failed ('127.0.0.1',
                # 1)"): the system's words for the errno are what the others say. Not for
                # ssl's or getaddrinfo's errors, whose numbers are not the system's.
                return os.strerror(typing.cast("int", link.errno))
            return link.strerror
    return None
