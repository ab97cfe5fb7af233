"""Whether a prepared request's body can be sent a second time, byte for byte.

Both second sends use it: ``EmmaAuth``'s 401 replay and ``EmmaSession``'s retries. A body
that cannot be resent must go out once only: an exhausted generator would be resent as an
empty body, which a server may well accept, silently losing the data.
"""

from __future__ import annotations

import requests


def can_be_resent(request: requests.PreparedRequest) -> bool:
    """True for no body, bytes, str, re-iterable containers and streams whose start position
    requests noted (``tell()`` worked); False for generators and other one-shot iterators."""
    body = request.body
    if body is None or isinstance(body, (bytes, bytearray, str)):
        return True
    if hasattr(body, "read") or hasattr(body, "tell"):
        return isinstance(getattr(request, "_body_position", None), int)
    try:
        return iter(body) is not body
    except TypeError:
        return False
