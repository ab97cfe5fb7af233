"""`requests-emma check` against FakeEmmaServer, its ``main(argv)`` run in this process."""

from __future__ import annotations

import re
from pathlib import Path

from cli_runs import closed_port, run_cli, server_env

from requests_emma.testing import FakeEmmaServer

LINE = re.compile(r"ok: token valid for (\d+) s, (.+)\n")


def test_check_gets_a_token_and_says_how_long_it_is_valid(
    server: FakeEmmaServer, tmp_path: Path
) -> None:
    """`check` with no cached token: exit 0, one line with the seconds left, newly issued."""
    result = run_cli("check", cache_home=tmp_path, env=server_env(server))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    line = LINE.fullmatch(result.stdout)
    assert line is not None, result.stdout
    assert 290 <= int(line[1]) <= 300
    assert line[2] == "newly issued, saved in the token cache"
    assert server.token_calls == 1


def test_check_reuses_the_cached_token(server: FakeEmmaServer, tmp_path: Path) -> None:
    """A second `check` takes the token from the cache, and says so: no token call."""
    assert run_cli("check", cache_home=tmp_path, env=server_env(server)).returncode == 0
    result = run_cli("check", cache_home=tmp_path, env=server_env(server))
    assert result.returncode == 0, result.stderr
    line = LINE.fullmatch(result.stdout)
    assert line is not None, result.stdout
    assert line[2] == "from the token cache"
    assert 0 < int(line[1]) <= 300
    assert server.token_calls == 1


def test_check_without_the_cache_says_so(server: FakeEmmaServer, tmp_path: Path) -> None:
    """`check --no-cache` gets a token of its own each run, and says the cache was not used."""
    for _ in range(2):
        result = run_cli("check", "--no-cache", cache_home=tmp_path, env=server_env(server))
        assert result.returncode == 0, result.stderr
        line = LINE.fullmatch(result.stdout)
        assert line is not None and line[2] == "newly issued, token cache not used"
    assert server.token_calls == 2


def test_check_never_shows_the_token(server: FakeEmmaServer, tmp_path: Path) -> None:
    """Neither `check` nor `-v check` writes the token (nor the secret) anywhere."""
    env = server_env(server)
    outputs = [run_cli("-v", "check", cache_home=tmp_path, env=env)]
    outputs.append(run_cli("check", cache_home=tmp_path, env=env))
    token = run_cli("token", cache_home=tmp_path, env=env).stdout.strip()  # the cached one
    assert server.is_valid_access_token(token)
    assert server.token_calls == 1
    for result in outputs:
        assert result.returncode == 0, result.stderr
        for text in (result.stdout, result.stderr):
            assert token not in text
            assert server.client_secret not in text
            assert "eyJ" not in text  # no JWT at all


def test_check_with_rejected_credentials_exits_3(server: FakeEmmaServer, tmp_path: Path) -> None:
    """Credentials emma refuses: exit 3, one error line, nothing on stdout."""
    env = {**server_env(server), "EMMA_CLIENT_SECRET": "not-the-secret"}
    result = run_cli("check", cache_home=tmp_path, env=env)
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.startswith("requests-emma: error: emma rejected the client credentials")
    assert len(result.stderr.splitlines()) == 1
    assert "not-the-secret" not in result.stderr


def test_check_with_unreachable_emma_exits_4(tmp_path: Path) -> None:
    """No emma at the base URL (connection refused): exit 4, naming the host."""
    port = closed_port()
    env = {
        "EMMA_CLIENT_ID": "id",
        "EMMA_CLIENT_SECRET": "secret-value",
        "EMMA_API_URL": f"http://127.0.0.1:{port}/external",
    }
    # Its token call is retried as always, without the real backoff between the tries.
    result = run_cli("check", cache_home=tmp_path, env=env, retry_waits=False)
    assert result.returncode == 4
    assert result.stdout == ""
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"requests-emma: error: could not reach emma at 127.0.0.1:{port}: ")


def test_a_retry_after_hold_kept_in_the_cache_exits_3(
    server: FakeEmmaServer, tmp_path: Path
) -> None:
    """After emma's 429 Retry-After, the next run makes no token call inside the hold, and
    exits 3 (no token), not 4: emma was reached, and asked to wait."""
    server.fail_next_token_calls(1, 429, headers={"Retry-After": "600"})
    first = run_cli("check", cache_home=tmp_path, env=server_env(server))
    assert first.returncode == 3, first.stderr
    second = run_cli("check", cache_home=tmp_path, env=server_env(server))
    assert second.returncode == 3, second.stderr
    assert "no token call made: emma asked to wait" in second.stderr
    assert server.token_calls == 1


def test_help_describes_check(tmp_path: Path) -> None:
    """`--help` lists `check`, and `check --help` says it never prints the token."""
    listed = run_cli("--help", cache_home=tmp_path)
    assert "say how long it is valid" in " ".join(listed.stdout.split())
    described = run_cli("check", "--help", cache_home=tmp_path)
    assert described.returncode == 0
    assert "never the token" in " ".join(described.stdout.split())
