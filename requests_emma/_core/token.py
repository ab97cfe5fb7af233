"""The :class:`Token` value object."""

from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Token:
    """An emma access token, as handed to ``on_token`` and returned by ``get_token()``.

    An immutable value (a frozen dataclass): equal by value, hashable, ``copy.replace()``
    on Python 3.13+.
    Times are Unix epoch seconds, counted from when the token request was sent (emma sends
    relative lifetimes only). ``refresh_expires_at`` is ``None`` when the server did not say
    when the refresh token expires. The repr hides both tokens.
    """

    access_token: str
    token_type: str
    expires_at: float
    refresh_token: str | None = None
    refresh_expires_at: float | None = None

    def __repr__(self) -> str:
        refresh = "None" if self.refresh_token is None else "'***'"
        return (
            f"Token(access_token='***', token_type={self.token_type!r}, "
            f"expires_at={self.expires_at!r}, refresh_token={refresh}, "
            f"refresh_expires_at={self.refresh_expires_at!r})"
        )

    def with_refresh(self, refresh_token: str | None, refresh_expires_at: float | None) -> Token:
        """This token with another refresh token (one kept from an earlier grant)."""
        return dataclasses.replace(
            self, refresh_token=refresh_token, refresh_expires_at=refresh_expires_at
        )

    def expires_in(self, now: float | None = None) -> float:
        """Seconds until the access token expires (negative once it has)."""
        return self.expires_at - (time.time() if now is None else now)


class _BearerHeader(str):
    """An ``Authorization`` value whose repr hides the token.

    requests and urllib3 keep header values as they are given; a traceback that lists local
    variables (``pytest -l``, Sentry) then shows ``'Bearer ***'`` where the headers are.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'Bearer ***'"


def bearer_header(access_token: str) -> str:
    """The ``Authorization`` header value for ``access_token``."""
    return _BearerHeader("Bearer " + access_token)
