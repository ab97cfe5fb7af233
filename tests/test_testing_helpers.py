"""requests_emma.testing for users: add_token_endpoints with responses, the emma_server plugin."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
import responses

from requests_emma import CredentialsError, EmmaAuth, EmmaSession
from requests_emma.testing import (
    FakeEmmaServer,
    FakeTokenEndpoints,
    add_token_endpoints,
    no_retry_waits,
)

pytest_plugins = ["pytester"]

BASE = "https://api.emma.ms/external"
LOCATIONS = [{"id": 18, "name": "London"}]


def claims_of(access_token: str) -> dict[str, object]:
    payload = access_token.split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(decoded, dict)
    return decoded


def bearer(call: responses.Call) -> str | None:
    header = call.request.headers.get("Authorization")
    return None if header is None else str(header).removeprefix("Bearer ")


# -- add_token_endpoints -------------------------------------------------------------------


def test_emma_auth_gets_a_token_from_the_mock() -> None:
    """EmmaAuth fetches its token from the registered issue-token and sends it to the API."""
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock)
        mock.get(BASE + "/v1/locations", json=LOCATIONS)
        response = requests.get(BASE + "/v1/locations", auth=EmmaAuth("id", "secret"))
        assert response.json() == LOCATIONS
        assert endpoints.issue_calls == 1
        assert bearer(mock.calls[-1]) == endpoints.access_tokens[0]
    # Leaving the block checked assert_all_requests_are_fired: refresh was never needed.


def test_token_looks_like_emmas() -> None:
    """The answer is a camelCase Token whose access token is a JWT with an exp claim."""
    with responses.RequestsMock() as mock:
        add_token_endpoints(mock, token_lifetime=120, refresh_lifetime=600)
        answer = requests.post(
            BASE + "/v1/issue-token", json={"clientId": "id", "clientSecret": "secret"}
        )
    token = answer.json()
    assert answer.headers["Content-Type"] == "application/json"
    assert (token["expiresIn"], token["refreshExpiresIn"], token["tokenType"]) == (
        120,
        600,
        "Bearer",
    )
    assert isinstance(token["refreshToken"], str)
    exp = claims_of(token["accessToken"])["exp"]
    assert isinstance(exp, int)
    assert abs(exp - (time.time() + 120)) < 60


def test_refresh_tokens_rotate() -> None:
    """A refresh token works once; the new one it returns works next."""
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock)
        first = requests.post(
            BASE + "/v1/issue-token", json={"clientId": "id", "clientSecret": "secret"}
        ).json()
        refresh = BASE + "/v1/refresh-token"
        second = requests.post(refresh, json={"refreshToken": first["refreshToken"]})
        reused = requests.post(refresh, json={"refreshToken": first["refreshToken"]})
        third = requests.post(refresh, json={"refreshToken": second.json()["refreshToken"]})
    assert (second.status_code, reused.status_code, third.status_code) == (200, 400, 200)
    assert reused.json() == {"code": "BAD_REQUEST", "message": "Invalid refresh token"}
    assert (endpoints.issue_calls, endpoints.refresh_calls, endpoints.token_calls) == (1, 3, 4)


def test_401_replay_refreshes_through_the_mock() -> None:
    """A mocked 401 makes EmmaAuth refresh and replay, all within responses."""
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock)
        mock.get(BASE + "/v1/locations", status=401, json={"code": "UNAUTHORIZED"})
        mock.get(BASE + "/v1/locations", json=LOCATIONS)
        response = requests.get(BASE + "/v1/locations", auth=EmmaAuth("id", "secret"))
        assert response.status_code == 200
        assert (endpoints.issue_calls, endpoints.refresh_calls) == (1, 1)
        assert bearer(mock.calls[-1]) == endpoints.access_tokens[1]


def test_revoke_refuses_refresh_tokens() -> None:
    """After revoke(), refresh fails and EmmaAuth falls back to issue-token."""
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock)
        mock.get(BASE + "/v1/locations", status=401, json={"code": "UNAUTHORIZED"})
        mock.get(BASE + "/v1/locations", json=LOCATIONS)
        auth = EmmaAuth("id", "secret")
        auth.get_token()
        endpoints.revoke()
        assert requests.get(BASE + "/v1/locations", auth=auth).status_code == 200
    assert (endpoints.issue_calls, endpoints.refresh_calls) == (2, 1)


def test_credentials_are_checked_when_given() -> None:
    """With client_id and client_secret set, other credentials get emma's 400."""
    with responses.RequestsMock() as mock:
        add_token_endpoints(mock, client_id="id", client_secret="right-secret")
        with pytest.raises(CredentialsError, match="Invalid client credentials"):
            EmmaAuth("id", "wrong-secret").get_token()
        assert EmmaAuth("id", "right-secret").get_token().token_type == "Bearer"


def test_planned_failures_are_retried() -> None:
    """fail_next_token_calls() answers 503 first; EmmaAuth retries and gets a token."""
    with responses.RequestsMock() as mock, no_retry_waits():
        endpoints = add_token_endpoints(mock)
        endpoints.fail_next_token_calls(2, 503, {"Retry-After": "0"})
        EmmaAuth("id", "secret").get_token()
    assert endpoints.issue_calls == 3


def test_the_responses_module_works_too() -> None:
    """Passing the responses module registers on its default mock (@responses.activate)."""

    @responses.activate
    def scenario() -> FakeTokenEndpoints:
        endpoints = add_token_endpoints(responses)
        responses.get(BASE + "/v1/locations", json=LOCATIONS)
        with EmmaSession(EmmaAuth("id", "secret")) as session:
            assert session.get("v1/locations").json() == LOCATIONS
        return endpoints

    assert scenario().issue_calls == 1


def test_only_the_token_paths_of_that_base_url_match() -> None:
    """Other paths, and the same paths under another base URL, are not answered."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        add_token_endpoints(mock, "http://127.0.0.1:8080/external/")
        with pytest.raises(requests.ConnectionError):
            requests.post("http://127.0.0.1:8080/external/v1/issue-tokens", json={})
        with pytest.raises(requests.ConnectionError):
            requests.post(BASE + "/v1/issue-token", json={})
        answer = requests.post(
            "http://127.0.0.1:8080/external/v1/issue-token",
            json={"clientId": "id", "clientSecret": "secret"},
        )
        assert answer.status_code == 200


def test_bad_requests_get_emmas_error_shape() -> None:
    """A body that is not JSON gets 400 with {code, message}, as emma answers."""
    with responses.RequestsMock() as mock:
        add_token_endpoints(mock)
        answer = requests.post(
            BASE + "/v1/issue-token", data="nope", headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400
    assert answer.json() == {"code": "BAD_REQUEST", "message": "Request body is not valid JSON"}


def test_insecure_base_url_is_refused() -> None:
    """The base URL is checked as EmmaAuth checks it."""
    with responses.RequestsMock() as mock, pytest.raises(ValueError, match="https"):
        add_token_endpoints(mock, "http://api.example.com/external")


def test_repr_shows_no_token() -> None:
    """The repr shows counts, not tokens."""
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock)
        EmmaAuth("id", "secret").get_token()
    assert endpoints.access_tokens[0] not in repr(endpoints)
    assert "issue_calls=1" in repr(endpoints)


# -- the pytest plugin ---------------------------------------------------------------------


@pytest.mark.slow
def test_emma_server_fixture_from_the_entry_point(pytester: pytest.Pytester) -> None:
    """An installed requests-emma gives any test suite a running emma_server."""
    pytester.makepyfile(
        """
        import requests
        from requests_emma import EmmaAuth
        from requests_emma.testing import FakeEmmaServer

        started = []

        def test_uses_the_server(emma_server):
            assert isinstance(emma_server, FakeEmmaServer)
            auth = EmmaAuth(
                emma_server.client_id, emma_server.client_secret, base_url=emma_server.base_url
            )
            response = requests.get(emma_server.base_url + "/v1/locations", auth=auth)
            assert response.status_code == 200
            assert emma_server.token_calls == 1
            started.append(emma_server)

        def test_it_was_stopped_after_the_test():
            with __import__("pytest").raises(RuntimeError, match="not running"):
                started[0].base_url
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


@pytest.mark.slow
def test_each_test_gets_its_own_server(pytester: pytest.Pytester) -> None:
    """Two tests get two servers: nothing carries over."""
    pytester.makepyfile(
        """
        from requests_emma import EmmaAuth

        servers = []

        def test_one(emma_server):
            EmmaAuth(
                emma_server.client_id, emma_server.client_secret, base_url=emma_server.base_url
            ).get_token()
            assert emma_server.token_calls == 1
            servers.append(emma_server)

        def test_two(emma_server):
            assert emma_server is not servers[0]
            assert emma_server.token_calls == 0
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


@pytest.mark.slow
def test_emma_auth_fixture_is_bound_to_emma_server(pytester: pytest.Pytester) -> None:
    """emma_auth is an EmmaAuth that gets its tokens from the test's own emma_server."""
    pytester.makepyfile(
        """
        import requests
        from requests_emma import EmmaAuth

        def test_uses_the_auth(emma_auth, emma_server):
            assert isinstance(emma_auth, EmmaAuth)
            assert emma_auth.base_url == emma_server.base_url
            response = requests.get(emma_server.base_url + "/v1/locations", auth=emma_auth)
            assert response.status_code == 200
            assert emma_server.token_calls == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    """-p no:requests_emma removes the fixture: proof it comes from the plugin."""
    pytester.makepyfile(
        """
        def test_wants_the_server(emma_server):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:requests_emma", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'emma_server' not found*"])


def _token_call(server: FakeEmmaServer, path: str, body: dict[str, object]) -> requests.Response:
    return requests.post(server.base_url + path, json=body, timeout=10)


@pytest.mark.parametrize("revoke_on_reuse", [False, True])
def test_a_reused_refresh_token_is_counted_and_revokes_its_family_when_asked(
    revoke_on_reuse: bool,
) -> None:
    """A rotated refresh token sent again is refused and counted; with revoke_on_reuse, every
    token descended from its issue-token call is revoked too, and other families are not."""
    with FakeEmmaServer(revoke_on_reuse=revoke_on_reuse) as server:
        credentials = {"clientId": server.client_id, "clientSecret": server.client_secret}
        first = _token_call(server, "/v1/issue-token", credentials).json()
        other = _token_call(server, "/v1/issue-token", credentials).json()
        rotated = _token_call(server, "/v1/refresh-token", {"refreshToken": first["refreshToken"]})
        newest = rotated.json()
        again = _token_call(server, "/v1/refresh-token", {"refreshToken": first["refreshToken"]})
        assert again.status_code == 400 and server.refresh_reuses == 1
        assert server.is_valid_access_token(newest["accessToken"]) is not revoke_on_reuse
        assert server.is_valid_access_token(other["accessToken"])
        still = _token_call(server, "/v1/refresh-token", {"refreshToken": newest["refreshToken"]})
        assert (still.status_code == 200) is not revoke_on_reuse


@pytest.mark.parametrize("refresh_token", [None, 5, ["a", "list"], {"an": "object"}])
def test_a_refresh_token_that_is_not_a_string_is_refused(refresh_token: object) -> None:
    """A missing, numeric, list or object refresh token gets emma's 400, not a server error."""
    with FakeEmmaServer() as server:
        refused = _token_call(server, "/v1/refresh-token", {"refreshToken": refresh_token})
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"code": "BAD_REQUEST", "message": "Invalid refresh token"}


def test_planned_api_failures_and_drops_come_in_the_order_planned() -> None:
    """fail_next_api_calls and drop_next_api_calls plan one queue: each API call takes the
    oldest plan, then calls go through the token check again."""
    with FakeEmmaServer() as server:
        server.fail_next_api_calls(1, 502)
        server.drop_next_api_calls(1)
        server.fail_next_api_calls(1, 504)
        url = server.base_url + "/v1/locations"
        assert requests.get(url, timeout=10).status_code == 502
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=10)
        assert requests.get(url, timeout=10).status_code == 504
        assert requests.get(url, timeout=10).status_code == 401
        assert server.api_calls == 4
