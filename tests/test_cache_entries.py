"""Entries an EmmaAuth did not seal, planted in every kind of cache (in memory, a real cache
file, a real Redis): each is ignored (a DEBUG line, one token call, emma's own token sent),
never adopted, never a crash."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable

import cache_workers
import pytest
import requests
from cache_stores import Store

from requests_emma import EmmaAuth, Token
from requests_emma._caches.protocol import cache_key
from requests_emma._core.cache_entry import Entry, Sealer
from requests_emma.testing import FakeEmmaServer


def _old_format(access_token: str, refresh_token: str, expires_at: float) -> bytes:
    """An entry as the plain-JSON format before sealing stored it."""
    entry = {
        "schema": 1,
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_at": expires_at,
        "refresh_token": refresh_token,
        "refresh_expires_at": expires_at + 1800,
    }
    return json.dumps(entry).encode()


def _planted(case: str, server: FakeEmmaServer, key: str) -> tuple[bytes, str]:
    """The bytes to plant for ``case`` and the access token in them: a token emma really
    issued (so adopting it would work and make no call), or one with CRLF in it."""
    issued = cache_workers.issue_token(server.base_url, server.client_id, server.client_secret)
    token = issued.token
    assert token is not None and token.refresh_token is not None
    base, client, secret = server.base_url, server.client_id, server.client_secret
    if case == "plain-json":
        return _old_format(token.access_token, token.refresh_token, token.expires_at), ""
    if case == "plain-json-crlf":
        planted = "planted\r\nX-Injected: 1"
        return _old_format(planted, "r", token.expires_at), planted
    sealed_right = Sealer(base, client, secret).seal(key, issued)
    made: dict[str, Callable[[], bytes]] = {
        "flipped-byte": lambda: (
            sealed_right[:30] + bytes([sealed_right[30] ^ 1]) + sealed_right[31:]
        ),
        "truncated": lambda: sealed_right[:-5],
        "another-secret": lambda: Sealer(base, client, "rotated-" + secret).seal(key, issued),
        "another-base-url": lambda: Sealer(base + "/v2", client, secret).seal(key, issued),
        "another-client-id": lambda: Sealer(base, "other-" + client, secret).seal(key, issued),
        "copied-from-another-key": lambda: Sealer(base, client, secret).seal(
            cache_key(base, "other-" + client, secret), issued
        ),
    }
    return made[case](), token.access_token


@pytest.mark.parametrize(
    "case",
    [
        "plain-json",
        "plain-json-crlf",
        "flipped-byte",
        "truncated",
        "another-secret",
        "another-base-url",
        "another-client-id",
        "copied-from-another-key",
    ],
)
def test_an_entry_that_does_not_open_is_ignored(
    store: Store,
    server: FakeEmmaServer,
    case: str,
    caplog: pytest.LogCaptureFixture,
    get: Callable[..., requests.Response],
) -> None:
    """A planted, changed, truncated or differently keyed entry is not adopted: one token
    call, emma's new token sent, one DEBUG line saying the entry was ignored."""
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    data, planted = _planted(case, server, key)
    store.plant(key, data)
    calls_before = server.token_calls
    auth = EmmaAuth(
        server.client_id, server.client_secret, base_url=server.base_url, token_cache=store.cache
    )
    with caplog.at_level(logging.DEBUG, logger="requests_emma"):
        response = get(auth)
    assert response.status_code == 200
    assert server.token_calls == calls_before + 1
    sent = response.request.headers["Authorization"].removeprefix("Bearer ")
    assert sent != planted and server.is_valid_access_token(sent)
    ignored = [r for r in caplog.records if "token cache entry ignored" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].levelno == logging.DEBUG


def test_the_entry_saved_after_an_ignored_one_opens(store: Store, server: FakeEmmaServer) -> None:
    """After a bad entry was ignored, the renewal's own sealed entry replaces it: a second
    client adopts that token with no call."""
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    store.plant(key, b"garbage")
    first, second = (
        EmmaAuth(
            server.client_id,
            server.client_secret,
            base_url=server.base_url,
            token_cache=store.cache,
        )
        for _ in range(2)
    )
    assert first.get_token() == second.get_token()
    assert server.token_calls == 1


def test_an_entry_with_a_token_unsafe_in_a_header_is_ignored(
    store: Store, server: FakeEmmaServer, get: Callable[..., requests.Response]
) -> None:
    """Even sealed with the right key, a token with CRLF in it is refused by the checks a
    token response gets: no ValueError, one token call, emma's token sent."""
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    issued = cache_workers.issue_token(server.base_url, server.client_id, server.client_secret)
    assert issued.token is not None
    bad = dataclasses.replace(issued.token, access_token="planted\r\nX-Injected: 1")
    sealer = Sealer(server.base_url, server.client_id, server.client_secret)
    store.plant(key, sealer.seal(key, Entry(99, bad, issued.issued_at)))
    auth = EmmaAuth(
        server.client_id, server.client_secret, base_url=server.base_url, token_cache=store.cache
    )
    response = get(auth)
    assert response.status_code == 200 and server.token_calls == 2


def test_an_old_entry_put_back_costs_one_renewal(
    store: Store, server: FakeEmmaServer, get: Callable[..., requests.Response]
) -> None:
    """An entry put back after its refresh token was rotated away (a restored backup) costs
    one renewal: refresh-token refuses it, and a token is issued."""
    key = cache_key(server.base_url, server.client_id, server.client_secret)
    issued = cache_workers.issue_token(server.base_url, server.client_id, server.client_secret)
    assert issued.token is not None and issued.token.refresh_token is not None
    server.revoke()  # the fleet renewed since: that refresh token is dead
    now = time.time()
    expired = Token(
        issued.token.access_token, "Bearer", now - 100, issued.token.refresh_token, now + 1500
    )
    sealer = Sealer(server.base_url, server.client_id, server.client_secret)
    store.plant(key, sealer.seal(key, Entry(7, expired, now - 400)))
    issue_calls, refresh_calls = server.issue_calls, server.refresh_calls
    auth = EmmaAuth(
        server.client_id, server.client_secret, base_url=server.base_url, token_cache=store.cache
    )
    assert get(auth).status_code == 200
    assert (server.issue_calls, server.refresh_calls) == (issue_calls + 1, refresh_calls + 1)
