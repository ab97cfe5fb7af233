"""The public API as users call it, checked by ``mypy --strict`` (tox's ``type`` env).

Not a test module: it is type-checked, never run. A change that breaks a user's typed code
(a return type narrowed to ``Any``, an argument renamed or retyped) fails the check here.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import requests
import responses
import respx

import requests_emma
from requests_emma import (
    CredentialsError,
    EmmaAuth,
    EmmaAuthError,
    EmmaSession,
    FileTokenCache,
    RetryPolicy,
    Token,
    TokenCache,
    TokenRequestError,
    TokenResponseError,
    TokenStatus,
)
from requests_emma.testing import (
    FakeEmmaServer,
    FakeTokenEndpoints,
    RecordedRequest,
    add_respx_token_endpoints,
    add_token_endpoints,
    no_retry_waits,
)

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


def configure(session: requests.Session) -> EmmaAuth:
    seen: list[Token] = []
    auth = EmmaAuth(
        "client-id",
        "client-secret",
        base_url="https://api.emma.ms/external",
        refresh_margin=30.0,
        timeout=(3.05, 10.0),
        session=session,
        on_token=seen.append,
        retry=RetryPolicy(attempts=3, deadline=10.0, wait_initial=0.5, wait_max=5.0),
    )
    assert_type(auth.base_url, str)
    EmmaAuth(timeout=5)  # one number for both timeouts
    return auth


def use_a_token(auth: EmmaAuth) -> None:
    token = auth.get_token()
    assert_type(token, Token)
    assert_type(token.access_token, str)
    assert_type(token.token_type, str)
    assert_type(token.expires_at, float)
    assert_type(token.expires_in(), float)
    assert_type(token.refresh_token, str | None)
    assert_type(token.refresh_expires_at, float | None)
    requests.get(f"{auth.base_url}/v1/locations", auth=auth, timeout=30)


def use_a_session(auth: EmmaAuth) -> list[object]:
    with EmmaSession(auth, base_url=auth.base_url + "/v1", timeout=30.0, retries=3) as emma:
        assert_type(emma, EmmaSession)
        assert_type(emma.base_url, str)
        response = emma.get("/locations")
        assert_type(response, requests.Response)
        locations: list[object] = response.json()
    EmmaSession(retries=None, timeout=(3.05, 60.0))
    return locations


def handle_errors(auth: EmmaAuth) -> str:
    try:
        auth.get_token()
    except CredentialsError as error:
        assert_type(error.status_code, int | None)
        assert_type(error.message, str | None)
        assert_type(error.retry_after, float | None)
        return "credentials"
    except TokenRequestError as error:
        assert_type(error.endpoint, str)
        assert_type(error.status_code, int | None)
        assert_type(error.code, str | None)
        assert_type(error.attempts, int)
        assert_type(error.elapsed, float)
        assert_type(error.retry_after, float | None)
        return "token endpoint"
    except TokenResponseError:
        return "unusable token"
    except EmmaAuthError:
        return "other"
    return "ok"


class DictCache:
    """A token cache of one's own: a store of opaque bytes with a lock per key."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    def load(self, key: str) -> bytes | None:
        return self.entries.get(key)

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        self.entries[key] = entry

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[object]:
        return threading.Lock()


def own_token_cache() -> EmmaAuth:
    cache: TokenCache = DictCache()
    FileTokenCache().lock("key", 10.0)
    return EmmaAuth("client-id", "client-secret", token_cache=cache)


def retry_policy() -> None:
    policy = RetryPolicy()
    assert_type(policy.attempts, int)
    assert_type(policy.deadline, float)
    assert_type(requests_emma.__version__, str)


def testing_helpers() -> None:
    with FakeEmmaServer(token_lifetime=60, access_level="Read", revoke_on_reuse=True) as server:
        assert_type(server, FakeEmmaServer)
        assert_type(server.base_url, str)
        assert_type(server.port, int)
        assert_type(server.client_id, str)
        assert_type(server.client_secret, str)
        assert_type(server.token_calls, int)
        assert_type(server.refresh_reuses, int)
        assert_type(server.requests, list[RecordedRequest])
        server.revoke()
        server.fail_next_token_calls(2, 503, headers={"Retry-After": "1"})
        with no_retry_waits():
            EmmaAuth(server.client_id, server.client_secret, base_url=server.base_url)
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock, client_id="id", client_secret="secret")
        assert_type(endpoints, FakeTokenEndpoints)
        assert_type(endpoints.token_calls, int)
        assert_type(endpoints.access_tokens, list[str])
    with respx.mock() as router:
        assert_type(add_respx_token_endpoints(router, client_id="id"), FakeTokenEndpoints)
    assert_type(add_respx_token_endpoints(respx), FakeTokenEndpoints)  # the default router


def report(auth: EmmaAuth) -> None:
    status = auth.status()
    assert_type(status, TokenStatus)
    assert_type(status.valid_for, "float | None")
    assert_type(status.renewing, bool)
    assert_type(status.last_error, "str | None")
    assert_type(status.retry_after, "float | None")
