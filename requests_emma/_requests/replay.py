"""Resending a request after a 401: requests' own ``HTTPDigestAuth`` recipe.

``EmmaAuth``'s response hook decides whether a 401 is replayed (the API's origin, the token
sent still current, a body that can be sent again) and renews the token; :func:`resend` then
copies the request, carries the cookies the 401 set, puts the new header on, rewinds the body
and sends the copy straight to the connection adapter, so the hook does not run again and a
second 401 comes back as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from requests import PreparedRequest, Response
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, get_cookie_header
from requests.utils import rewind_body

if TYPE_CHECKING:
    from .._source import TokenSource


def resend(response: Response, header: str, source: TokenSource, **kwargs: Any) -> Response:
    """Send the request that got the 401 ``response`` again with ``Authorization: header``
    (``kwargs``: what requests passed the hook: timeout, verify, proxies...)."""
    sent = response.request
    # requests follows a redirect of the replay from the request it sent first: that one
    # must carry the new token too, or the redirect resends the rejected one. The 401
    # keeps a copy showing what it was sent with; the replay is a copy with the new token.
    response.request = sent.copy()
    sent.headers["Authorization"] = header
    replay = sent.copy()
    carry_cookies(response, replay)
    if isinstance(getattr(replay, "_body_position", None), int):
        rewind_body(replay)
    with source.telemetry().replay(str(sent.method), str(sent.url)) as record:
        new_response: Response = response.connection.send(replay, **kwargs)
        record.answered(new_response.status_code)
    new_response.history.append(response)
    new_response.request = replay
    return new_response


def carry_cookies(response: Response, replay: PreparedRequest) -> None:
    """Send the replay with the cookies as the 401 left them, as a browser would.

    requests' recipe (``prepare_cookies``) writes a ``Cookie`` header only when there is none,
    so a request that already carried cookies would not see what the 401 set or deleted.
    Pairs for names the 401 did not touch are kept as sent (duplicates and all); the names it
    touched are sent as the jar now has them.
    """
    jar: RequestsCookieJar = replay._cookies  # type: ignore[attr-defined]
    before = _cookie_values(jar)
    extract_cookies_to_jar(jar, response.request, response.raw)  # type: ignore[no-untyped-call]
    # Names with a cookie set, changed or deleted: in one of the two sets but not the other.
    touched = {cookie[0] for cookie in before ^ _cookie_values(jar)}
    if not touched:
        return
    # Taken off: the jar writes a Cookie header only where there is none.
    sent = str(replay.headers.pop("Cookie", ""))
    # Empty pairs (a stray ";") are dropped at the join.
    kept = [
        pair.strip() for pair in sent.split(";") if pair.partition("=")[0].strip() not in touched
    ]
    now_set = RequestsCookieJar()
    for cookie in jar:
        if cookie.name in touched:
            now_set.set_cookie(cookie)
    pairs = [*kept, get_cookie_header(now_set, replay)]  # type: ignore[no-untyped-call]
    if any(pairs):  # the jar's header is None when no cookie of its applies
        replay.headers["Cookie"] = "; ".join(filter(None, pairs))


def _cookie_values(jar: RequestsCookieJar) -> set[tuple[str, str, str, str | None]]:
    return {(cookie.name, cookie.domain, cookie.path, cookie.value) for cookie in jar}
