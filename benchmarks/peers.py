"""The contenders, each set up as its own documentation shows for the client-credentials grant.

Each builder returns a :class:`Contender`: a ``requests.Session`` (or the library's own
Session subclass) to send API requests with, and what the library cannot do, said plainly.
Where a library has a documented knob for how early it renews (requests-auth's
``early_expiry``, authlib's ``leeway``), it gets the margin EmmaAuth uses by default (a fifth
of the lifetime): their defaults (30 s, 60 s) exceed the benchmarks' short lifetimes and
would make them fetch a token on every request. google-auth's threshold (3 min 45 s) is a
module constant, not an option: it is left as it is, and the tables show what that does.

google-auth has no client-credentials grant for a generic OAuth2 server; its documented
extension point is a ``google.auth.credentials.Credentials`` subclass implementing
``refresh(request)``, which :class:`ClientCredentials` is, used through ``AuthorizedSession``
(which refreshes on 401). requests-oauthlib's ``OAuth2Session`` renews only with a refresh
token, which the client-credentials grant does not issue: after the token expires it raises
``TokenExpiredError`` to the caller, who must fetch a new one.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import urllib.parse
from collections.abc import Callable

import requests
from _harness import Server, mount_pool, pooled_session
from requests.auth import AuthBase

# oauthlib and authlib refuse plain http unless told it is a local test (their documented
# switch); the benchmarks talk to 127.0.0.1 only.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


@dataclasses.dataclass
class Contender:
    name: str
    session: requests.Session
    #: Fetches the first token if the library wants the caller to (authlib, requests-oauthlib).
    fetch_first: Callable[[], object] | None = None
    renews: bool = True  # renews an expiring token by itself
    refreshes_on_401: bool = True


def margin_for(lifetime: float) -> float:
    """EmmaAuth's default refresh margin: a fifth of the lifetime, at most 60 s."""
    return min(60.0, lifetime / 5)


class StaticBearer(AuthBase):
    """The floor: a fixed ``Authorization`` header, nothing checked.

    As an auth rather than a session header: a Session with no auth looks for a ``.netrc``
    file on every request, which would make the floor slower than any auth.
    """

    def __init__(self, token: str) -> None:
        self.header = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.header
        return request


def static_header(server: Server, token: str) -> Contender:
    session = pooled_session()
    session.auth = StaticBearer(token)
    return Contender("static header", session, renews=False, refreshes_on_401=False)


def emma(server: Server) -> Contender:
    from requests_emma import EmmaAuth

    session = pooled_session()
    session.auth = EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)
    return Contender("requests-emma", session)


def requests_auth(server: Server, lifetime: float) -> Contender:
    import requests_auth as ra

    ra.OAuth2.token_cache.clear()  # its cache is global: start each run cold
    session = pooled_session()
    session.auth = ra.OAuth2ClientCredentials(
        server.token_url,
        client_id=server.client_id,
        client_secret=server.client_secret,
        early_expiry=margin_for(lifetime),
    )
    return Contender("requests-auth", session, refreshes_on_401=False)


def authlib(server: Server, lifetime: float) -> Contender:
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session(
        server.client_id,
        server.client_secret,
        token_endpoint=server.token_url,
        grant_type="client_credentials",
        leeway=margin_for(lifetime),
    )
    mount_pool(session)
    return Contender("authlib", session, fetch_first=session.fetch_token, refreshes_on_401=False)


def requests_oauthlib(server: Server) -> Contender:
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    session = OAuth2Session(client=BackendApplicationClient(client_id=server.client_id))
    mount_pool(session)

    def fetch() -> object:
        return session.fetch_token(
            server.token_url, client_id=server.client_id, client_secret=server.client_secret
        )

    return Contender(
        "requests-oauthlib", session, fetch_first=fetch, renews=False, refreshes_on_401=False
    )


def google_auth(server: Server, *, non_blocking: bool = False) -> Contender:
    from google.auth.transport.requests import AuthorizedSession

    credentials = ClientCredentials(server.token_url, server.client_id, server.client_secret)
    if non_blocking:
        credentials.with_non_blocking_refresh()
    session = AuthorizedSession(credentials)
    mount_pool(session)
    mode = "non-blocking" if non_blocking else "blocking"
    return Contender(f"google-auth ({mode})", session)


def _google_credentials_base() -> type:
    from google.auth import credentials

    return credentials.Credentials  # type: ignore[no-any-return]


class ClientCredentials(_google_credentials_base()):  # type: ignore[misc]
    """google-auth credentials for an RFC 6749 4.4 token endpoint (client secret in the body)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str) -> None:
        super().__init__()
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret

    def refresh(self, request: Callable[..., object]) -> None:
        import json

        from google.auth import exceptions

        body = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            }
        )
        response = request(
            url=self._token_url,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=body,
        )
        if response.status != 200:  # type: ignore[attr-defined]
            raise exceptions.RefreshError(f"token endpoint answered {response.status}")  # type: ignore[attr-defined]
        data = json.loads(response.data)  # type: ignore[attr-defined]
        self.token = data["access_token"]
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        self.expiry = now + datetime.timedelta(seconds=data["expires_in"])
