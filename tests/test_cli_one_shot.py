"""The command line as a one-shot command: a timeout for the whole run, what `token --json`
and `check` say about the token cache, and errors a shell user can act on. In process:
``main(argv)``, with stdout and stderr captured."""

from __future__ import annotations

import errno
import json
import socket
import time
from pathlib import Path

import pytest
from cli_runs import STRIPPED, closed_port

from requests_emma import FileTokenCache
from requests_emma._cli import token_cache
from requests_emma._cli.main import main
from requests_emma.testing import FakeEmmaServer


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, proxies or token cache of the developer's: a cache of the test's own."""
    import os

    for name in os.environ:
        if name.upper().startswith(STRIPPED):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("EMMA_CLIENT_ID", "id")
    monkeypatch.setenv("EMMA_CLIENT_SECRET", "secret-value")


def point_at(server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMMA_API_URL", server.base_url)
    monkeypatch.setenv("EMMA_CLIENT_ID", server.client_id)
    monkeypatch.setenv("EMMA_CLIENT_SECRET", server.client_secret)


def timed(argv: list[str]) -> tuple[int, float]:
    started = time.monotonic()
    status = main(argv)
    return status, time.monotonic() - started


# -- --timeout -------------------------------------------------------------------------------


def test_check_timeout_bounds_the_retries_of_a_dead_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`check --timeout 1` against a closed port ends within about a second (exit 4), where
    the default retries take about 8 s."""
    port = closed_port()
    status, took = timed(
        ["--base-url", f"http://127.0.0.1:{port}/external", "check", "--timeout", "1"]
    )
    assert status == 4
    assert took < 2.5  # one second and a wide margin; without --timeout: 5 attempts, ~8 s
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"requests-emma: error: could not reach emma at 127.0.0.1:{port}: ")
    assert "1 s deadline" in error


def test_token_timeout_bounds_a_silent_token_endpoint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`token --timeout 1` against an endpoint that never answers ends within about a second
    (exit 4), where one attempt alone may wait 10 s for an answer."""
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        status, took = timed(["--base-url", f"http://127.0.0.1:{port}", "token", "--timeout", "1"])
    assert status == 4
    assert took < 2.5
    assert capsys.readouterr().out == ""


def test_a_timeout_long_enough_changes_nothing(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --timeout 5` against a working emma: the usual line, exit 0."""
    point_at(server, monkeypatch)
    assert main(["check", "--timeout", "5"]) == 0
    assert capsys.readouterr().out.startswith("ok: token valid for ")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--timeout` takes a positive number of seconds; anything else is exit 2, not shown."""
    assert main(["check", "--timeout", value]) == 2
    err = capsys.readouterr().err
    assert "--timeout: must be a number of seconds greater than 0" in err
    assert f"'{value}'" not in err


# -- token --json ------------------------------------------------------------------------------


def test_token_json_says_whether_the_token_came_from_the_cache(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`token --json`: `from_cache` false for a token just issued, true for the cached one."""
    point_at(server, monkeypatch)
    seen = []
    for _ in range(2):
        assert main(["token", "--json"]) == 0
        seen.append(json.loads(capsys.readouterr().out)["from_cache"])
    assert seen == [False, True]
    assert server.token_calls == 1
    assert main(["--no-cache", "token", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["from_cache"] is False


# -- check and a token cache that fails ------------------------------------------------------


class FullDiskCache(FileTokenCache):
    """A file cache on a disk that is full: every save fails as the OS says it."""

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


class UnlockableCache(FileTokenCache):
    """A file cache whose lock cannot be taken (the lock file cannot be created)."""

    def lock(self, key: str, timeout: float = 10.0) -> object:  # type: ignore[override]
        raise OSError(errno.EROFS, "Read-only file system")


@pytest.mark.parametrize(("cache", "step"), [(FullDiskCache, "save"), (UnlockableCache, "lock")])
def test_check_does_not_claim_a_save_that_failed(
    server: FakeEmmaServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cache: type[FileTokenCache],
    step: str,
) -> None:
    """A token cache whose save or lock fails: `check` says the token was not saved, and the
    cache's warning reaches stderr; the next run makes a token call of its own."""
    point_at(server, monkeypatch)
    # The command line's cache notes what the renewal did with this failing one.
    noting = type("Noting", (token_cache.NotingCache, cache), {})
    monkeypatch.setattr(token_cache, "NotingCache", noting)
    for calls in (1, 2):
        assert main(["check"]) == 0
        out, err = capsys.readouterr()
        assert out.endswith(
            f", newly issued, NOT saved in the token cache ({step} failed), "
            "so the next run asks emma again\n"
        )
        assert f"unavailable ({step} failed: OSError)" in err
        assert server.token_calls == calls


# -- errors ----------------------------------------------------------------------------------


def test_a_refusal_noted_in_the_cache_is_explained(
    server: FakeEmmaServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same wrong secret again within the hold: exit 3, no token call, and an error that
    says emma refused these credentials a moment ago and when to try them again."""
    point_at(server, monkeypatch)
    monkeypatch.setenv("EMMA_CLIENT_SECRET", "not-the-secret")
    assert main(["check"]) == 3
    assert "emma rejected the client credentials" in capsys.readouterr().err
    assert main(["check"]) == 3
    err = capsys.readouterr().err
    assert server.token_calls == 1
    assert err.startswith(
        "requests-emma: error: emma refused these credentials a moment ago (an earlier run"
    )
    assert "fix EMMA_CLIENT_ID or EMMA_CLIENT_SECRET" in err
    assert "try these again in 5 s" in err or "try these again in 4 s" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://example.com/external", "'http://example.com/external'"),
        ("https://example.com/external?key=abc", "'https://example.com/external?...'"),
    ],
)
def test_a_refused_base_url_is_shown(
    url: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused base URL is shown in its error, with its query cut off."""
    assert main(["--base-url", url, "token"]) == 2
    err = capsys.readouterr().err
    assert shown in err
    assert "value not shown" not in err
    assert "abc" not in err


def test_a_refused_base_url_from_the_environment_is_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same for a base URL from EMMA_API_URL."""
    monkeypatch.setenv("EMMA_API_URL", "http://example.com/external")
    assert main(["token"]) == 2
    assert "EMMA_API_URL: base_url must use https" in capsys.readouterr().err
