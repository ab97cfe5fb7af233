"""The command line keeps its token between runs (each run its own auth, in this process), a
private cache home."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_runs import CliRun, run_cli, server_env

from requests_emma.testing import FakeEmmaServer

#: Another user's uid, for a cache directory this one does not own.
NOBODY = 65534


def run(*args: str, server: FakeEmmaServer, cache_home: Path) -> CliRun:
    """A run of the CLI, pointed at ``server``, its cache under ``cache_home``."""
    return run_cli(*args, env=server_env(server), cache_home=cache_home)


def test_nine_runs_make_one_token_call(server: FakeEmmaServer, tmp_path: Path) -> None:
    """Nine `token` and `get` runs in a row share one token: one issue-token call."""
    tokens = set()
    for number in range(9):
        args = ["token"] if number % 2 == 0 else ["get", "/v1/locations/18"]
        result = run(*args, server=server, cache_home=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        if args == ["token"]:
            tokens.add(result.stdout.strip())
        else:
            assert json.loads(result.stdout)["name"] == "London"
    assert server.token_calls == 1
    assert len(tokens) == 1
    assert server.is_valid_access_token(tokens.pop())


def test_no_cache_makes_a_token_call_per_run(server: FakeEmmaServer, tmp_path: Path) -> None:
    """With --no-cache (before or after the command) every run gets a token of its own."""
    for args in (
        ["--no-cache", "token"],
        ["token", "--no-cache"],
        ["get", "--no-cache", "v1/locations"],
    ):
        result = run(*args, server=server, cache_home=tmp_path)
        assert result.returncode == 0, result.stderr
    assert server.token_calls == 3
    assert not (tmp_path / "requests-emma").exists()


def test_a_revoked_cached_token_is_renewed_by_the_next_get(
    server: FakeEmmaServer, tmp_path: Path
) -> None:
    """A cached token the API refuses (401) is renewed, the request replayed, the new token
    cached: `get` succeeds, and the run after it makes no token call."""
    assert run("token", server=server, cache_home=tmp_path).returncode == 0
    server.revoke()
    result = run("get", "/v1/locations/18", server=server, cache_home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "London"
    sent = [r for r in server.requests if r.path == "/v1/locations/18"]
    assert len(sent) == 2  # the refused token's 401, then the replay with the renewed one
    assert sent[0].headers["Authorization"] != sent[1].headers["Authorization"]
    calls = server.token_calls
    token = run("token", server=server, cache_home=tmp_path).stdout.strip()
    assert server.is_valid_access_token(token)
    assert server.token_calls == calls


def test_the_cache_holds_no_token_in_the_clear(server: FakeEmmaServer, tmp_path: Path) -> None:
    """The cache entry the CLI leaves is sealed: neither token nor the secret is in any file."""
    token = run("token", server=server, cache_home=tmp_path).stdout.strip()
    files = [path for path in (tmp_path / "requests-emma").rglob("*") if path.is_file()]
    assert any(path.suffix == ".json" for path in files)
    for path in files:
        content = path.read_bytes()
        assert token.encode() not in content
        assert server.client_secret.encode() not in content
        assert b"eyJ" not in content


def unusable_by_owner(cache_home: Path) -> None:
    """The cache directory exists but belongs to another user."""
    directory = cache_home / "requests-emma" / "tokens"
    directory.mkdir(mode=0o700, parents=True)
    os.chown(directory, NOBODY, NOBODY)


def unusable_by_a_file(cache_home: Path) -> None:
    """Where the cache directory should be made, there is a file."""
    (cache_home / "requests-emma").write_text("not a directory\n")


def unusable_by_permissions(cache_home: Path) -> None:
    """The cache home is read-only for this user."""
    cache_home.chmod(0o500)


@pytest.mark.parametrize(
    "make_unusable",
    [
        pytest.param(
            unusable_by_owner,
            marks=pytest.mark.skipif(
                not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root"
            ),
        ),
        unusable_by_a_file,
        pytest.param(
            unusable_by_permissions,
            marks=pytest.mark.skipif(
                not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere"
            ),
        ),
    ],
    ids=["owned-by-another-user", "a-file-in-the-way", "not-writable"],
)
def test_an_unusable_cache_warns_once_and_carries_on(
    server: FakeEmmaServer, tmp_path: Path, make_unusable: object
) -> None:
    """A cache directory that cannot be used: one warning line, then the command succeeds
    with a token of its own."""
    make_unusable(tmp_path)  # type: ignore[operator]
    try:
        for args in (["token"], ["get", "/v1/locations/18"]):
            result = run(*args, server=server, cache_home=tmp_path)
            assert result.returncode == 0, result.stderr
            lines = result.stderr.splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("requests-emma: warning: token cache not used (")
            assert "carrying on without it" in lines[0]
        assert server.token_calls == 2
    finally:
        tmp_path.chmod(0o700)


def test_a_usage_error_leaves_the_cache_alone(tmp_path: Path) -> None:
    """A run that fails on its configuration (no client ID) makes no cache directory and
    warns about none: the error line is all."""
    result = run_cli(
        "check", env={"EMMA_CLIENT_SECRET": "secret-value"}, cache_home=tmp_path / "fresh"
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "requests-emma: error: no client ID: pass --client-id or set EMMA_CLIENT_ID"
    ]
    assert not (tmp_path / "fresh").exists()
