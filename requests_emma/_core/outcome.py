"""What one token call came to, classified: the transport's only report.

The transport says *what happened* (a grant, a refusal, a transient failure...); what that
means for the token (retry, drop the refresh token, fall back to issue-token, give up) is
decided by the retry policy and the lifecycle. What an HTTP answer says happened is read
here, in :func:`response_outcome` and :func:`classify_status`, and nowhere else.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

from .._errors import TokenResponseError
from .retry_policy import parse_retry_after
from .wire import TokenGrant, parse_error, parse_token

#: A token response is a few kilobytes; anything beyond this is not one.
MAX_BODY = 64 << 10


class Kind(enum.Enum):
    GRANT = "grant"
    #: The endpoint refused what it was sent (400, 401, 403): the credentials, or the
    #: refresh token.
    REFUSED = "refused"
    #: The answer of something that is not a token endpoint (401, 404, 405): a wrong base URL.
    MISDIRECTED = "misdirected"
    #: Worth another attempt: no answer in time, a failed connection, a busy server.
    TRANSIENT = "transient"
    #: Not worth another attempt, and no statement about the credentials: TLS failed, an
    #: unexpected status (a 404 from a wrong base URL, say).
    FAILED = "failed"
    #: A 2xx whose body is not a usable token.
    UNUSABLE = "unusable"


#: What a non-2xx answer from a token endpoint says happened, by its status; any other
#: status is FAILED.
STATUS_KINDS = {
    # Worth another attempt: the server or a gateway is busy or hiccuped.
    **dict.fromkeys((408, 425, 429, 500, 502, 503, 504), Kind.TRANSIENT),
    # What a token endpoint answers to credentials, or a refresh token, it does not accept.
    **dict.fromkeys((400, 403), Kind.REFUSED),
    # What no token endpoint answers: the token endpoints take no token, so a 401 ("Token is
    # not provided") or a 404 means the request went to some other path: a wrong base URL.
    **dict.fromkeys((401, 404, 405), Kind.MISDIRECTED),
}


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Outcome:
    """One attempt's result. ``sent_at``/``sent_wall``: when its request was sent
    (monotonic and Unix seconds), from which a granted token's lifetime counts."""

    kind: Kind
    reason: str
    _: dataclasses.KW_ONLY
    sent_at: float
    sent_wall: float
    grant: TokenGrant | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    cause: BaseException | None = None

    def __repr__(self) -> str:
        return f"Outcome({self.kind.name}, {self.detail()!r})"

    def detail(self) -> str:
        """What happened, for messages: ``HTTP 503 SERVICE_UNAVAILABLE: <emma's message>``."""
        emma = ": ".join(part for part in (self.code, self.message) if part)
        return f"{self.reason} {emma}" if emma else self.reason


def classify_status(status: int) -> Kind:
    """What a non-2xx answer from a token endpoint says happened. What that means for the
    credentials or the refresh token is the lifecycle's to decide
    (``TokenLifecycle.refresh_ended``, ``call_failed``)."""
    return STATUS_KINDS.get(status, Kind.FAILED)


def response_outcome(
    status: int,
    content: bytes | None,
    retry_after: str | None,
    *,
    sent_at: float,
    sent_wall: float,
    wall_now: float,
) -> Outcome:
    """What the token endpoint's answer means: the one place an HTTP answer becomes an
    :class:`Outcome`, whichever HTTP stack carried it.

    ``content`` is the body as the stack decoded it, ``None`` when it grew past
    :data:`MAX_BODY`; ``retry_after`` the ``Retry-After`` header, read against ``wall_now``
    (Unix seconds) when it is a date.
    """
    answer = functools.partial(Outcome, sent_at=sent_at, sent_wall=sent_wall, status=status)
    if 200 <= status < 300:
        if content is None:
            return answer(Kind.UNUSABLE, f"token response is larger than {MAX_BODY // 1024} KiB")
        try:
            grant = parse_token(content, sent_wall)
        except TokenResponseError as exc:
            return answer(Kind.UNUSABLE, str(exc))
        return answer(Kind.GRANT, f"HTTP {status}", grant=grant)
    code, message = parse_error(content or b"")
    wait = parse_retry_after(retry_after, wall_now)
    return answer(
        classify_status(status), f"HTTP {status}", code=code, message=message, retry_after=wait
    )
