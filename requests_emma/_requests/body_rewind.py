"""Whether a prepared request's body can be sent a second time, byte for byte.

Both second sends use it: ``EmmaAuth``'s 401 replay and ``EmmaSession``'s retries. A body
that cannot be resent must go out once only: an exhausted generator would be resent as an
empty body, which a server may well accept, silently losing the data.

A stream is resent by seeking back to where it started (``requests.utils.rewind_body``,
urllib3's retry), so two things must hold: requests recorded that start (``tell()`` worked,
giving ``_body_position``), and the stream can seek. ``tell()`` alone proves nothing: a
streamed download's ``response.raw`` counts the bytes it has read but cannot go back. The
stream's own ``seekable()`` says so; it is asked rather than a seek tried, which could move a
stream that cannot be put back.
"""

from __future__ import annotations

import requests


def can_be_resent(request: requests.PreparedRequest) -> bool:
    """True for no body, bytes, str, re-iterable containers and seekable streams whose start
    position requests noted; False for generators, other one-shot iterators and forward-only
    streams (pipes, socket files, streamed downloads)."""
    body = request.body
    if body is None or isinstance(body, (bytes, bytearray, str)):
        return True
    if hasattr(body, "read") or hasattr(body, "tell"):
        return isinstance(getattr(request, "_body_position", None), int) and _can_seek(body)
    try:
        return iter(body) is not body
    except TypeError:
        return False


def _can_seek(stream: object) -> bool:
    seekable = getattr(stream, "seekable", None)
    if callable(seekable):
        try:
            return bool(seekable())
        except (OSError, ValueError):  # ValueError: the file is closed
            return False
    # A file-like object without seekable(): its seek() is all rewind_body() needs.
    return callable(getattr(stream, "seek", None))
