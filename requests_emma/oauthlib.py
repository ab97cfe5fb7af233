"""requests-oauthlib interop: make an ``OAuth2Session`` speak emma's token endpoints.

emma's token endpoints are OAuth 2 in spirit, not in wire format: they take JSON
(``{"clientId", "clientSecret"}``, ``{"refreshToken"}``) instead of a form, and answer a
camelCase ``Token`` and ``{"code", "message"}`` errors. :func:`emma_compliance_fix` adapts a
session the way requests-oauthlib's own ``compliance_fixes`` do, with hooks:

- ``access_token_request`` and ``refresh_token_request`` route the token URL through a
  small transport adapter (wrapping the one the session already uses for that URL, so
  proxies, TLS settings and retries stay as they are). It turns the form requests-oauthlib
  prepared (``grant_type=client_credentials`` with the credentials in the form or in a
  Basic ``Authorization`` header; ``grant_type=refresh_token``) into emma's JSON and drops
  the Basic header. This has to happen on the prepared request: requests-oauthlib puts the
  client secret in a Basic auth header that no hook sees, and it cannot send a JSON body
  from ``refresh_token_request`` at all;
- ``access_token_response`` and ``refresh_token_response`` turn emma's answer into an
  RFC 6749 token (``access_token``, ``token_type``, ``expires_in``, ``expires_at``,
  ``refresh_token``) and emma's errors into RFC 6749 errors, so oauthlib raises
  ``InvalidClientError`` (wrong credentials), ``InvalidGrantError`` (a dead refresh token),
  ``TemporarilyUnavailableError`` or ``ServerError`` with emma's message.

The lifetime is counted from when the token request was sent, as ``EmmaAuth`` does.
Requires ``pip install 'requests-emma[oauthlib]'``.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import time
import urllib.parse
from typing import Any

from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter

try:
    from requests_oauthlib import OAuth2Session
except ImportError:  # pragma: no cover - exercised by a test in a subprocess
    raise ImportError(
        "requests_emma.oauthlib needs requests-oauthlib: pip install 'requests-emma[oauthlib]'"
    ) from None

from ._core.exchange import HEADERS
from ._core.outcome import Kind, classify_status
from ._core.wire import issue_token_body, parse_error, parse_token, refresh_token_body

__all__ = ["emma_compliance_fix"]

#: RFC 6749's error for what emma's status says, but for a refusal (each hook has its own);
#: a status no token endpoint answers with (MISDIRECTED) means a wrong base URL.
_RFC_ERRORS = {Kind.TRANSIENT: "temporarily_unavailable", Kind.MISDIRECTED: "invalid_request"}


def emma_compliance_fix(session: OAuth2Session) -> OAuth2Session:
    """Register emma's compliance hooks on ``session`` and return it.

    Then the standard client-credentials flow works against emma::

        client = BackendApplicationClient(client_id=ID)
        session = emma_compliance_fix(OAuth2Session(client=client))
        session.fetch_token(
            token_url=BASE + "/v1/issue-token", client_id=ID, client_secret=SECRET
        )

    and so do ``session.refresh_token(BASE + "/v1/refresh-token")`` and
    ``OAuth2Session(..., auto_refresh_url=BASE + "/v1/refresh-token", token_updater=...)``.
    """
    # The request hooks exist since requests-oauthlib 1.3.1; its typing stubs lack them.
    register = getattr(session, "register_compliance_hook", None)
    if not callable(register):
        raise ValueError(  # noqa: TRY004 - the project's rule: bad values are ValueErrors
            "emma_compliance_fix needs a requests_oauthlib.OAuth2Session, "
            f"got a {type(session).__name__}"
        )

    def route(url: str, headers: dict[str, str], rest: Any) -> tuple[str, dict[str, str], Any]:
        """Both request hooks (``rest``: the request's keyword arguments, or its body): send
        the token call through the adapter that makes it emma's JSON."""
        current = session.get_adapter(url)
        if not isinstance(current, _EmmaTokenCalls):
            # The longest matching prefix wins, so this serves exactly the token URL.
            session.mount(url, _EmmaTokenCalls(current))
        return url, headers, rest

    register("access_token_request", route)
    register("refresh_token_request", route)
    register("access_token_response", functools.partial(_as_rfc, "invalid_client"))
    register("refresh_token_response", functools.partial(_as_rfc, "invalid_grant"))
    return session


class _EmmaTokenCalls(BaseAdapter):
    """Sends OAuth 2 token requests as emma's JSON, through the adapter it wraps."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        return self.inner.send(_as_emma_json(request), *args, **kwargs)

    def close(self) -> None:
        self.inner.close()


def _as_emma_json(request: PreparedRequest) -> PreparedRequest:
    body = request.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not isinstance(text, str):
        return request
    form = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
    if form.get("grant_type") == "client_credentials":
        basic = _basic_credentials(request.headers.get("Authorization", ""))
        client_id = form.get("client_id") or (basic[0] if basic else "")
        client_secret = form.get("client_secret") or (basic[1] if basic else "")
        if not client_id or not client_secret:
            raise ValueError(
                "emma's issue-token needs a client id and secret: pass "
                "fetch_token(..., client_id=..., client_secret=...)"
            )
        payload = issue_token_body(client_id, client_secret)
    elif form.get("grant_type") == "refresh_token" and form.get("refresh_token"):
        payload = refresh_token_body(form["refresh_token"])
    else:
        return request  # not a token request this adapter knows: send it as it is
    emma = request.copy()
    if emma.headers.get("Authorization", "").startswith("Basic "):
        del emma.headers["Authorization"]  # the credentials are in the body now
    emma.headers.update(HEADERS)  # JSON, and a JSON answer asked for
    emma.prepare_body(data=None, files=None, json=payload)
    return emma


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("latin-1")
    except ValueError:  # binascii.Error included
        return None
    client_id, colon, client_secret = decoded.partition(":")
    return (client_id, client_secret) if colon and scheme.lower() == "basic" else None


def _as_rfc(refused_error: str, response: Response) -> Response:
    """The response hooks (``refused_error`` bound): rewrite emma's answer as RFC 6749's;
    ``refused_error`` is the RFC error for a 400 (emma's answer to wrong credentials or a
    dead refresh token)."""
    rfc: dict[str, object]
    if 200 <= response.status_code < 300:
        now = time.time()
        sent_at = now - response.elapsed.total_seconds()
        grant = parse_token(response.content, sent_at)  # TokenResponseError if not a token
        # The Token counts the lifetime from when its request was sent, as the lifecycle does.
        expires_at = grant.to_token(sent_at).expires_at
        rfc = {
            "access_token": grant.access_token,
            "token_type": grant.token_type,
            # oauthlib takes 0 for "never expires": a token this short expires at once instead.
            "expires_in": max(1, math.floor(expires_at - now)),
            "expires_at": expires_at,
        }
        if grant.refresh_token is not None:
            rfc["refresh_token"] = grant.refresh_token
        if grant.refresh_lifetime is not None:
            rfc["refresh_expires_in"] = math.floor(grant.refresh_lifetime)
    else:
        code, message = parse_error(response.content)
        # What the status means is the library's one reading of it (classify_status).
        kind = classify_status(response.status_code)
        error = refused_error if kind is Kind.REFUSED else _RFC_ERRORS.get(kind, "server_error")
        description = message or code or f"HTTP {response.status_code}"
        rfc = {"error": error, "error_description": description}
    response._content = json.dumps(rfc).encode()
    response.encoding = "utf-8"
    response.headers["Content-Type"] = "application/json"
    return response
