"""The requests-emma command line, run as a real subprocess against FakeEmmaServer."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from requests_emma.testing import FakeEmmaServer

#: Variables the child must not inherit: the developer's credentials, or a proxy that would
#: route 127.0.0.1 elsewhere.
_STRIPPED = ("EMMA_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_STRIPPED)}
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requests_emma", *args],
        env=child_env(env),
        stdin=subprocess.DEVNULL,  # not a terminal: the CLI must never prompt here
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def server_env(server: FakeEmmaServer) -> dict[str, str]:
    return {
        "EMMA_CLIENT_ID": server.client_id,
        "EMMA_CLIENT_SECRET": server.client_secret,
        "EMMA_API_URL": server.base_url,
    }


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("requests-emma: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- token ---------------------------------------------------------------------------------


def test_token_prints_the_access_token_alone(server: FakeEmmaServer) -> None:
    """`token` prints one line: an access token the server accepts."""
    result = run_cli("token", env=server_env(server))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert server.is_valid_access_token(lines[0])


def test_token_json_is_metadata_without_secrets(server: FakeEmmaServer) -> None:
    """`token --json` prints type and expiry times, and neither token."""
    before = time.time()
    result = run_cli("token", "--json", env=server_env(server))
    assert result.returncode == 0, result.stderr
    metadata = json.loads(result.stdout)
    assert metadata["token_type"] == "Bearer"
    assert before + 250 < metadata["expires_at"] < time.time() + 350
    assert metadata["expires_at_utc"].endswith("Z")
    assert 250 < metadata["expires_in"] <= 300
    assert metadata["has_refresh_token"] is True
    assert metadata["refresh_expires_at"] > metadata["expires_at"]
    assert metadata["base_url"] == server.base_url
    assert "eyJ" not in result.stdout  # no JWT
    assert server.client_secret not in result.stdout
    assert not any(server.is_valid_access_token(str(value)) for value in metadata.values())


@pytest.mark.parametrize("flags_first", [True, False])
def test_flags_override_the_environment(server: FakeEmmaServer, flags_first: bool) -> None:
    """--base-url and --client-id, before or after the command, beat the environment."""
    env = {
        "EMMA_CLIENT_ID": "someone-else",
        "EMMA_CLIENT_SECRET": server.client_secret,
        "EMMA_API_URL": "https://api.emma.ms/external",
    }
    flags = ["--base-url", server.base_url, "--client-id", server.client_id]
    args = [*flags, "token"] if flags_first else ["token", *flags]
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    assert server.is_valid_access_token(result.stdout.strip())


# -- get -----------------------------------------------------------------------------------


def test_get_prints_pretty_json(server: FakeEmmaServer) -> None:
    """`get PATH` prints the answer as indented JSON."""
    result = run_cli("get", "/v1/locations/18", env=server_env(server))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "London"
    assert '\n  "name": "London"' in result.stdout
    assert server.requests[-1].path == "/v1/locations/18"


def test_get_path_without_slash_and_with_query(server: FakeEmmaServer) -> None:
    """A path without a leading slash, with a query, resolves below the base URL."""
    result = run_cli("get", "v1/locations?name=Singapore", env=server_env(server))
    assert result.returncode == 0, result.stderr
    assert [location["name"] for location in json.loads(result.stdout)] == ["Singapore"]


def test_get_non_2xx_exits_1_with_emmas_message(server: FakeEmmaServer) -> None:
    """A 404 prints the status and emma's code and message on one stderr line, exit 1."""
    result = run_cli("get", "/v1/locations/999", env=server_env(server))
    assert result.returncode == 1
    assert result.stdout == ""
    line = one_error_line(result)
    assert "HTTP 404" in line
    assert "Location not found" in line


def test_get_403_exits_1(server: FakeEmmaServer) -> None:
    """A 403 (access level too low) is an API answer too: exit 1 with emma's message."""
    server.fail_next_api_calls(
        1, 403, body=b'{"code": "FORBIDDEN", "message": "Access is denied."}'
    )
    result = run_cli("get", "/v1/ssh-keys", env=server_env(server))
    assert result.returncode == 1
    assert "HTTP 403 FORBIDDEN: Access is denied." in one_error_line(result)


def test_unreachable_api_exits_4() -> None:
    """A connection that fails is exit 4, one line."""
    env = {"EMMA_CLIENT_ID": "id", "EMMA_CLIENT_SECRET": "secret-value"}
    url = f"http://127.0.0.1:{closed_port()}/external/v1/locations"
    result = run_cli("get", url, env=env)
    assert result.returncode == 4
    assert "could not connect" in one_error_line(result)


def test_closed_stdout_is_quiet(server: FakeEmmaServer) -> None:
    """A reader that went away (| head) ends the command with 141 and no traceback."""
    with subprocess.Popen(
        [sys.executable, "-m", "requests_emma", "get", "/v1/locations"],
        env=child_env(server_env(server)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None
        child.stdout.close()  # long before the interpreter in the child has started
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == 141
    assert stderr == b""


# -- configuration and auth errors ---------------------------------------------------------


def test_missing_client_id_exits_2() -> None:
    """No client ID anywhere: exit 2, naming the flag and the variable."""
    result = run_cli("token", env={"EMMA_CLIENT_SECRET": "secret-value"})
    assert result.returncode == 2
    line = one_error_line(result)
    assert "--client-id" in line
    assert "EMMA_CLIENT_ID" in line


def test_missing_secret_without_a_terminal_exits_2() -> None:
    """No secret and stdin not a terminal: no prompt, exit 2, naming EMMA_CLIENT_SECRET."""
    result = run_cli("token", "--client-id", "id")
    assert result.returncode == 2
    assert "EMMA_CLIENT_SECRET" in one_error_line(result)
    assert "secret:" not in result.stdout


def test_there_is_no_secret_flag() -> None:
    """--client-secret is not an option: a usage error, exit 2."""
    result = run_cli("token", "--client-id", "id", "--client-secret", "secret-value")
    assert result.returncode == 2
    assert "unrecognized arguments" in one_error_line(result)


def test_insecure_base_url_exits_2() -> None:
    """Plain http to a non-loopback host is refused before any call: exit 2."""
    env = {"EMMA_CLIENT_ID": "id", "EMMA_CLIENT_SECRET": "secret-value"}
    result = run_cli("token", "--base-url", "http://api.example.com/external", env=env)
    assert result.returncode == 2
    assert "https" in one_error_line(result)


def test_rejected_credentials_exit_3(server: FakeEmmaServer) -> None:
    """Credentials issue-token rejects: exit 3 with emma's message."""
    env = {**server_env(server), "EMMA_CLIENT_SECRET": "wrong-secret-value"}
    result = run_cli("token", env=env)
    assert result.returncode == 3
    assert "Invalid client credentials" in one_error_line(result)


def test_failing_token_endpoint_exits_3(server: FakeEmmaServer) -> None:
    """A token endpoint that fails (here 404, not retried) is exit 3."""
    server.fail_next_token_calls(1, 404, body=b'{"code": "NOT_FOUND", "message": "Gone"}')
    result = run_cli("get", "/v1/locations", env=server_env(server))
    assert result.returncode == 3
    assert "404" in one_error_line(result)


def test_usage_error_is_one_line() -> None:
    """No command at all: exit 2, one line pointing to --help."""
    result = run_cli()
    assert result.returncode == 2
    assert "--help" in one_error_line(result)


def test_help_documents_the_exit_codes() -> None:
    """--help lists every exit status and says the secret has no flag."""
    result = run_cli("--help")
    assert result.returncode == 0
    for code in ("0", "1", "2", "3", "4", "70", "130", "141"):
        assert f"\n  {code} " in result.stdout
    assert "EMMA_CLIENT_SECRET" in result.stdout


# -- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["token", "--json"],
        ["-v", "token", "--json"],
        ["get", "/v1/locations"],
        ["-v", "get", "/v1/locations/999"],
    ],
)
def test_the_secret_never_appears(server: FakeEmmaServer, args: list[str]) -> None:
    """Neither stdout nor stderr ever holds the client secret, verbose or not, ok or failing."""
    result = run_cli(*args, env=server_env(server))
    assert server.client_secret not in result.stdout + result.stderr
    assert "Bearer ey" not in result.stdout + result.stderr


def test_a_rejected_secret_is_not_echoed(server: FakeEmmaServer) -> None:
    """A wrong secret does not show up in the error about it."""
    env = {**server_env(server), "EMMA_CLIENT_SECRET": "wrong-secret-7f3a9c"}
    result = run_cli("-v", "get", "/v1/locations", env=env)
    assert result.returncode == 3
    assert "wrong-secret-7f3a9c" not in result.stdout + result.stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_secret_prompt_on_a_terminal(server: FakeEmmaServer) -> None:
    """With stdin a terminal and no EMMA_CLIENT_SECRET, the secret is asked for, not echoed."""
    controller, terminal = os.openpty()
    env = {"EMMA_CLIENT_ID": server.client_id, "EMMA_API_URL": server.base_url}
    with subprocess.Popen(
        [sys.executable, "-m", "requests_emma", "token"],
        env=child_env(env),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: getpass reads the pty on stdin
    ) as child:
        try:
            os.close(terminal)
            assert child.stderr is not None
            prompt = b""
            deadline = time.monotonic() + 30
            while b"secret: " not in prompt:  # typing earlier would be flushed by getpass
                assert time.monotonic() < deadline, prompt
                readable, _, _ = select.select([child.stderr], [], [], 1.0)
                if readable:
                    chunk = os.read(child.stderr.fileno(), 1024)
                    assert chunk, "the CLI exited without prompting"
                    prompt += chunk
            os.write(controller, server.client_secret.encode() + b"\n")
            stdout, stderr = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
            os.close(controller)
    assert child.returncode == 0, stderr
    assert server.is_valid_access_token(stdout.decode().strip())
    assert server.client_secret.encode() not in stdout + stderr + prompt


# -- demo and entry points -----------------------------------------------------------------


def test_demo_end_to_end() -> None:
    """`demo` walks through the lifecycle in under 30 s, offline, with no credentials."""
    env = {
        "EMMA_API_URL": "https://unreachable.invalid/external",
        "HTTP_PROXY": "http://127.0.0.1:9",  # a proxy from the environment must be ignored
        "ALL_PROXY": "http://127.0.0.1:9",
    }
    started = time.monotonic()
    result = run_cli("demo", env=env, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert elapsed < 30
    out = result.stdout
    steps = [line for line in out.splitlines() if line[:2] in {"1.", "2.", "3.", "4.", "5."}]
    assert len(steps) == 5
    assert "token calls: 1 issue-token, 0 refresh-token" in out  # first token
    assert "token calls: none (the token was reused)" in out  # calls
    assert "token calls: 0 issue-token, 1 refresh-token" in out  # expiry and refresh
    assert "401 'Token is not valid'; the request was replayed once" in out  # revoked
    assert "token calls: 0 issue-token, 3 refresh-token" in out  # two 503s, then success
    assert "-> 200" in out
    assert "-> 4" not in out and "-> 5" not in out  # the caller never saw an error
    assert "eyJ" not in out  # no token printed


def test_console_script_is_installed() -> None:
    """The `requests-emma` console script runs the same CLI."""
    scripts = Path(sysconfig.get_path("scripts"))
    script = scripts / ("requests-emma.exe" if os.name == "nt" else "requests-emma")
    assert script.exists(), f"{script} missing: pip install -e . registers it"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "usage: requests-emma" in result.stdout
