"""Which loopback traffic skips a proxy, against a recording proxy on real sockets: token
calls (through the ``direct_proxies`` mapping) and EmmaSession's API calls go direct; an API
call that plain requests sends with an EmmaAuth goes where requests' proxy settings say."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
import requests
from fakes import WAIT, FakeClock, auth_for, use_clock
from requests.sessions import merge_setting
from requests.utils import select_proxy

from requests_emma import EmmaSession
from requests_emma._requests.proxies import direct_proxies
from requests_emma.testing import FakeEmmaServer

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that records the request line (and ``Authorization``
    header) of everything it receives and answers 502, so a request that went through it
    cannot pass for a direct one."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.authorizations: list[str | None] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_one_request(self) -> None:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                proxy.seen.append(self.requestline)
                proxy.authorizations.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The proxy's URL, with credentials (as corporate proxy settings often carry)."""
        return f"http://proxy-user:proxy-password@127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> RecordingProxy:  # noqa: PYI034 - typing.Self needs Python 3.11
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(WAIT)


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy() as recording:
        yield recording


def set_proxy_env(monkeypatch: pytest.MonkeyPatch, proxy_url: str) -> None:
    """HTTP_PROXY, HTTPS_PROXY and ALL_PROXY name ``proxy_url``; no NO_PROXY."""
    for name in (*PROXY_VARIABLES, "NO_PROXY"):
        monkeypatch.delenv(name.lower(), raising=False)  # lower case would win over ours
        monkeypatch.delenv(name, raising=False)
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy_url)


@pytest.fixture
def proxy_env(proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    set_proxy_env(monkeypatch, proxy.url)


def every_proxy_key(url: str, proxy_url: str) -> dict[str, str]:
    """A proxies mapping naming ``proxy_url`` under every key select_proxy() reads for url."""
    host = urllib.parse.urlsplit(url).hostname
    return {key: proxy_url for s in ("http", "https", "all") for key in (s, f"{s}://{host}")}


@pytest.mark.usefixtures("proxy_env")
def test_the_recording_proxy_intercepts(server: FakeEmmaServer, proxy: RecordingProxy) -> None:
    """Control: with these settings, plain requests sends a loopback call to the proxy."""
    response = requests.get(server.base_url + "/v1/locations", timeout=WAIT)
    assert response.status_code == 502
    assert proxy.seen == [f"GET {server.base_url}/v1/locations HTTP/1.1"]
    assert server.api_calls == 0


@pytest.mark.parametrize("named_by", ["environment", "session", "call"])
def test_session_api_calls_to_loopback_skip_every_proxy(
    server: FakeEmmaServer,
    proxy: RecordingProxy,
    monkeypatch: pytest.MonkeyPatch,
    named_by: str,
) -> None:
    """EmmaSession sends API calls to a loopback base URL directly, whoever names a proxy."""
    if named_by == "environment":
        set_proxy_env(monkeypatch, proxy.url)
    auth = auth_for(server)
    with EmmaSession(auth) as emma:
        proxies = every_proxy_key(server.base_url, proxy.url)
        if named_by == "session":
            emma.proxies = proxies
        response = emma.get("/v1/locations", proxies=proxies if named_by == "call" else None)
    assert response.status_code == 200
    assert proxy.seen == []
    assert server.api_calls == 1


def test_session_send_of_your_own_to_loopback_skips_its_proxies(
    server: FakeEmmaServer, proxy: RecordingProxy
) -> None:
    """A request prepared by hand and given to EmmaSession.send() with proxies= goes direct."""
    with EmmaSession(auth_for(server)) as emma:
        prepared = emma.prepare_request(requests.Request("GET", "/v1/locations"))
        proxies = every_proxy_key(server.base_url, proxy.url)
        response = emma.send(prepared, proxies=proxies)
    assert response.status_code == 200
    assert proxy.seen == []


@pytest.mark.usefixtures("proxy_env")
def test_loopback_redirect_goes_direct_without_proxy_credentials(
    server: FakeEmmaServer, proxy: RecordingProxy
) -> None:
    """A redirect on loopback goes direct too, and carries no Proxy-Authorization."""
    server.add_redirect("/v1/old-locations", server.base_url + "/v1/locations", 307)
    with EmmaSession(auth_for(server)) as emma:
        response = emma.get("/v1/old-locations")
    assert response.status_code == 200
    assert proxy.seen == []
    followed = [r for r in server.requests if r.path == "/v1/locations"]
    assert [r.headers.get("Proxy-Authorization") for r in followed] == [None]


@pytest.mark.usefixtures("proxy_env")
def test_token_calls_to_loopback_skip_the_environments_proxy(
    server: FakeEmmaServer, proxy: RecordingProxy
) -> None:
    """With HTTP(S)_PROXY set, issue-token and refresh-token on loopback go direct: the client
    secret and the refresh token never reach the proxy."""
    auth = auth_for(server)
    clock = use_clock(auth, FakeClock())
    auth.get_token()
    clock.advance(301)
    auth.get_token()  # expired: refreshed
    assert (server.issue_calls, server.refresh_calls) == (1, 1)
    assert proxy.seen == []


@pytest.mark.usefixtures("proxy_env")
def test_token_calls_to_loopback_skip_the_proxies_of_the_given_session(
    server: FakeEmmaServer, proxy: RecordingProxy
) -> None:
    """Token calls on loopback go direct past the proxies of the session= given to EmmaAuth."""
    with requests.Session() as session:
        session.proxies = every_proxy_key(server.base_url, proxy.url)
        auth = auth_for(server, session=session)
        auth.get_token()
    assert server.issue_calls == 1
    assert proxy.seen == []


@pytest.mark.usefixtures("proxy_env")
def test_plain_requests_sends_loopback_api_calls_through_the_environments_proxy(
    server: FakeEmmaServer, proxy: RecordingProxy
) -> None:
    """requests.get(..., auth=EmmaAuth()) on loopback: the token call goes direct, the API
    call (bearer token and all) through HTTP_PROXY, as requests routes it."""
    auth = auth_for(server)
    response = requests.get(server.base_url + "/v1/locations", auth=auth, timeout=WAIT)
    assert response.status_code == 502  # the proxy's answer
    assert server.issue_calls == 1 and server.api_calls == 0
    assert proxy.seen == [f"GET {server.base_url}/v1/locations HTTP/1.1"]
    assert proxy.authorizations == [f"Bearer {auth.get_token().access_token}"]


@pytest.mark.usefixtures("proxy_env")
def test_no_proxy_sends_plain_requests_api_calls_to_loopback_direct(
    server: FakeEmmaServer, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With NO_PROXY naming the loopback host, plain requests sends the API call direct."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    response = requests.get(server.base_url + "/v1/locations", auth=auth_for(server), timeout=WAIT)
    assert response.status_code == 200
    assert server.api_calls == 1
    assert proxy.seen == []


@pytest.mark.usefixtures("proxy_env")
def test_401_replay_on_loopback_goes_direct(server: FakeEmmaServer, proxy: RecordingProxy) -> None:
    """The replay after a 401 takes the same direct route as the request it repeats."""
    auth = auth_for(server)
    auth.get_token()
    server.revoke()
    with EmmaSession(auth) as emma:
        response = emma.get("/v1/locations")
    assert response.status_code == 200
    assert [earlier.status_code for earlier in response.history] == [401]
    assert proxy.seen == []


@pytest.mark.usefixtures("proxy_env")
def test_direct_proxies_bypass_a_sessions_proxies(
    server: FakeEmmaServer, proxy: RecordingProxy
) -> None:
    """session.post(url, proxies=direct_proxies(url)) goes direct past session and environment."""
    url = server.base_url + "/v1/issue-token"
    credentials = {"clientId": server.client_id, "clientSecret": server.client_secret}
    with requests.Session() as session:
        session.proxies = every_proxy_key(url, proxy.url)
        response = session.post(url, json=credentials, proxies=direct_proxies(url), timeout=WAIT)
    assert response.status_code == 200
    assert proxy.seen == []
    assert server.issue_calls == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/external",
        "http://127.0.0.2/external",
        "http://LocalHost:9/external",
        "https://[::1]:8443/external",
    ],
)
def test_loopback_url_selects_no_proxy(url: str) -> None:
    """Merged over proxies naming every key, direct_proxies() leaves none for a loopback URL."""
    merged = merge_setting(direct_proxies(url), every_proxy_key(url, "http://proxy.example:3128"))
    assert select_proxy(url, merged) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://api.emma.ms/external",
        "https://xn--bcher-kva.example/external",
        "https://10.0.0.1/external",
        "https://127.0.0.1.nip.io/external",
        # urlsplit reads 127.0.0.1, urllib3 (which connects) evil.example: not loopback.
        "http://evil.example\\@127.0.0.1/external",
    ],
)
def test_other_urls_keep_the_users_proxies(url: str) -> None:
    """For a host that is not loopback, direct_proxies() is None and the proxy is kept."""
    assert direct_proxies(url) is None
    merged = merge_setting(direct_proxies(url), every_proxy_key(url, "http://proxy.example:3128"))
    assert select_proxy(url, merged) == "http://proxy.example:3128"
