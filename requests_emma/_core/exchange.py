"""One token call as every HTTP stack makes it: what it sends, how much of the answer it
reads, and what it reports when its deadline cuts it off.

The transports (``_requests/transport.py``, ``_httpx/transport.py``) differ in how they move
bytes and in what their exceptions are called; the headers they send, the time they give each
socket operation, the cap on what they read and the words for a deadline are here, so that
they cannot drift apart. What an answer means is :func:`~.outcome.response_outcome`'s.
"""

from __future__ import annotations

import enum
import re

from .._errors import chain, os_reason
from .outcome import MAX_BODY, Kind, Outcome

#: The headers of a token call: its body is JSON (``wire.issue_token_body`` and
#: ``wire.refresh_token_body``), and so is the answer wanted.
HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
#: Bytes asked of the HTTP stack at a time, as the answer is read.
CHUNK = 16 << 10
#: The reason of an attempt its deadline ended, whatever it was doing then.
AT_DEADLINE = "timed out (the response was still arriving at the deadline)"
#: The user info of a URL (``user:password@``): a proxy URL from ``HTTPS_PROXY`` carries one.
#: Up to the last ``@`` of the URL: a password may hold an unescaped ``/`` or ``@``.
_USER_INFO = re.compile(r"(?<=//)[^\s'\"<>]*@")

Timeout = tuple[float, float]


def timeouts(timeout: Timeout, left: float) -> Timeout:
    """The ``(connect, read)`` timeouts of an attempt ``left`` seconds from its deadline:
    no single socket operation waits past it."""
    return min(timeout[0], left), min(timeout[1], left)


def deadline_passed(
    sent_at: float, sent_wall: float, cause: BaseException | None = None
) -> Outcome:
    """The outcome of an attempt cut off by its deadline (or begun after it)."""
    return Outcome(Kind.TRANSIENT, AT_DEADLINE, sent_at=sent_at, sent_wall=sent_wall, cause=cause)


class Failure(enum.Enum):
    """What stopped an attempt short of an answer, in words common to every HTTP stack: each
    transport sorts its own exceptions into these."""

    #: The TLS handshake or a TLS record failed: not worth another attempt.
    TLS = (Kind.FAILED, "TLS failed")
    #: A socket operation's timeout passed.
    TIMEOUT = (Kind.TRANSIENT, "timed out")
    #: No connection, or one that broke (closed early, reset, a proxy that failed).
    CONNECTION = (Kind.TRANSIENT, "connection failed")
    #: A 2xx whose body does not decode as its ``Content-Encoding`` says.
    UNDECODABLE = (Kind.UNUSABLE, "token response could not be decoded (Content-Encoding)")
    #: Anything else (a missing CA bundle, a URL the stack refuses): not worth another attempt.
    OTHER = (Kind.FAILED, "request failed")


def failure_outcome(
    failure: Failure, cause: BaseException, *, sent_at: float, sent_wall: float
) -> Outcome:
    """The outcome of an attempt that ``cause`` stopped (already scrubbed of the request);
    the reason adds the operating system's words for a connection failure, and the
    exception itself for one of no known kind, with the user info of any URL in it (a
    proxy's password) left out, there and along the cause's chain."""
    kind, reason = failure.value
    if failure is Failure.CONNECTION and (system_reason := os_reason(cause)):
        reason = f"{reason} ({system_reason})"
    elif failure is Failure.OTHER:
        reason = f"{reason} ({type(cause).__name__}: {_USER_INFO.sub('***@', str(cause))})"
        # Each link of the chain that quoted some user info is left with the scrubbed
        # message only (a traceback prints them all).
        for link in chain(cause):
            text = str(link)
            if _USER_INFO.search(text):
                link.args = (_USER_INFO.sub("***@", text),)
    return Outcome(kind, reason, sent_at=sent_at, sent_wall=sent_wall, cause=cause)


class CappedBody:
    """An answer's body as it arrives, given up once it grows past :data:`MAX_BODY`: a token
    response is a few kilobytes, and a server that sends more is not to be read to its end."""

    __slots__ = ("_content",)

    def __init__(self) -> None:
        self._content: bytearray | None = bytearray()  # None: past the cap, dropped

    def add(self, chunk: bytes) -> bool:
        """Take the next chunk; ``False`` once the body is past the cap (stop reading)."""
        if self._content is not None:
            self._content += chunk
            if len(self._content) > MAX_BODY:
                self._content = None
        return self._content is not None

    @property
    def content(self) -> bytes | None:
        """What arrived, or ``None`` if it grew past the cap."""
        return None if self._content is None else bytes(self._content)
