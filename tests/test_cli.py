"""The requests-emma command line against FakeEmmaServer: ``main(argv)`` in this process, and
a real subprocess where a process is the point (signals, closed pipes and streams, the
installed script, the demo's tour)."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, NoReturn

import pytest
from cli_runs import (
    DEFAULT_SIGINT,
    STRIPPED,
    child_env,
    closed_port,
    one_error_line,
    run_cli,
    run_cli_process,
    server_env,
)

import requests_emma
from requests_emma import EmmaAuth, EmmaSession, RetryPolicy
from requests_emma._cli import main as _cli
from requests_emma.testing import FakeEmmaServer, no_retry_waits

DOCS = Path(__file__).resolve().parent.parent / "docs"


def at_the_prompt(
    env: Mapping[str, str], answer: Callable[[subprocess.Popen[bytes], int], object]
) -> tuple[int, str, str]:
    """Run `token` on a terminal; at the prompt, ``answer(child, terminal)``; status, out, err."""
    controller, terminal = os.openpty()
    with subprocess.Popen(
        [*DEFAULT_SIGINT, sys.executable, "-m", "requests_emma", "token"],
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
            answer(child, controller)
            stdout, stderr = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
            os.close(controller)
    return child.returncode, stdout.decode(), (prompt + stderr).decode()


needs_a_pty = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")


def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.upper().startswith(STRIPPED):
            monkeypatch.delenv(name)


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


#: An answer with characters outside ASCII, as emma sends it: UTF-8 JSON.
ZURICH = {"id": 91, "name": "Zürich", "note": "Genève ✓ 東京"}


def test_get_json_on_an_ascii_stdout_is_escaped(server: FakeEmmaServer) -> None:
    """Non-ASCII JSON on an ASCII stdout is printed with \\u escapes: the same JSON."""
    body = json.dumps(ZURICH, ensure_ascii=False).encode()
    server.fail_next_api_calls(1, 200, {"Content-Type": "application/json"}, body)
    result = run_cli(
        "get", "/v1/locations/91", env={**server_env(server), "PYTHONIOENCODING": "ascii"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.isascii()
    assert json.loads(result.stdout) == ZURICH
    assert "\\u00fcrich" in result.stdout


def test_get_json_on_a_utf8_stdout_keeps_its_characters(server: FakeEmmaServer) -> None:
    """Non-ASCII JSON on a UTF-8 stdout is printed with its characters as they are."""
    body = json.dumps(ZURICH, ensure_ascii=False).encode()
    server.fail_next_api_calls(1, 200, {"Content-Type": "application/json"}, body)
    result = run_cli(
        "get", "/v1/locations/91", env={**server_env(server), "PYTHONIOENCODING": "utf-8"}
    )
    assert result.returncode == 0, result.stderr
    assert '"note": "Genève ✓ 東京"' in result.stdout


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", bytes(range(256)) * 4),  # binary
        ("text/plain; charset=iso-8859-1", "Zürich, no newline at the end".encode("latin-1")),
        ("application/json", b'{"truncated": '),  # labelled JSON, but it is not
        ("application/json", b'{"far": 1e400}'),  # JSON that would print as Infinity
        ("text/plain", b'{"looks": "like JSON"}'),  # JSON, but not labelled so
        ("application/json", b""),  # an empty answer: nothing at all on stdout
    ],
)
def test_get_of_a_body_that_is_not_json_writes_its_bytes(
    server: FakeEmmaServer, content_type: str, body: bytes
) -> None:
    """A body that is not JSON reaches stdout byte for byte: nothing added, nothing changed."""
    server.fail_next_api_calls(1, 200, {"Content-Type": content_type}, body)
    result = run_cli("get", "/v1/files/1", env=server_env(server))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout_bytes == body


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
    """A refused connection is exit 4, naming the origin (no path or query) and the OS reason."""
    env = {"EMMA_CLIENT_ID": "id", "EMMA_CLIENT_SECRET": "secret-value"}
    port = closed_port()
    result = run_cli("get", f"http://127.0.0.1:{port}/external/v1/locations?name=Oslo", env=env)
    assert result.returncode == 4
    line = one_error_line(result)
    assert f"could not connect to the API at http://127.0.0.1:{port} (" in line
    assert "refused" in line.lower()  # "Connection refused", in the OS's words
    assert "/external" not in line and "Oslo" not in line


def test_a_timeout_names_the_origin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An API that does not answer in time is exit 4, naming the origin but not the query."""
    no_proxy_env(monkeypatch)
    monkeypatch.setenv("EMMA_CLIENT_ID", "id")
    monkeypatch.setenv("EMMA_CLIENT_SECRET", "secret-value")
    # In process: the CLI's 30 s timeout, shortened.
    monkeypatch.setattr(_cli, "EmmaSession", functools.partial(EmmaSession, timeout=0.3))
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        status = _cli.main(["get", f"http://127.0.0.1:{port}/v1/locations?name=Oslo"])
    assert status == 4
    err = capsys.readouterr().err
    assert (
        err == f"requests-emma: error: the API at http://127.0.0.1:{port} did not answer in time\n"
    )


def test_unreachable_token_endpoint_exits_4_naming_the_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused token call is exit 4 (not 3), naming the host, after one line per retry."""
    no_proxy_env(monkeypatch)
    monkeypatch.setenv("EMMA_CLIENT_ID", "id")
    monkeypatch.setenv("EMMA_CLIENT_SECRET", "secret-value")
    port = closed_port()
    with no_retry_waits():
        status = _cli.main(["--base-url", f"http://127.0.0.1:{port}/external", "token"])
    assert status == 4
    *retries, error = capsys.readouterr().err.splitlines()
    assert error.startswith(f"requests-emma: error: could not reach emma at 127.0.0.1:{port}: ")
    assert "Connection refused" in error
    assert len(retries) == 4  # the default policy: 5 attempts, 4 retries
    for number, line in enumerate(retries, start=1):
        assert line.startswith("requests-emma: token call POST /v1/issue-token failed (")
        assert f"attempt {number} of 5; retrying in " in line


def test_unknown_token_host_exits_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host name that does not resolve is exit 4, naming the host and the resolver's words."""
    no_proxy_env(monkeypatch)
    monkeypatch.setenv("EMMA_CLIENT_ID", "id")
    monkeypatch.setenv("EMMA_CLIENT_SECRET", "secret-value")

    def no_such_name(*args: object, **kwargs: object) -> NoReturn:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # The resolver itself is replaced: no DNS query leaves the machine.
    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with no_retry_waits():
        status = _cli.main(["--base-url", "https://emma.invalid/external", "token"])
    assert status == 4
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("requests-emma: error: could not reach emma at emma.invalid:443: ")
    assert "Name or service not known" in error


def test_silent_token_endpoint_exits_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token endpoint that accepts the connection but never answers is exit 4 too."""
    no_proxy_env(monkeypatch)
    monkeypatch.setenv("EMMA_CLIENT_ID", "id")
    monkeypatch.setenv("EMMA_CLIENT_SECRET", "secret-value")
    # In process: the token call's timeout and deadline, shortened.
    quick = RetryPolicy(attempts=2, deadline=2.0)
    monkeypatch.setattr(_cli, "EmmaAuth", functools.partial(EmmaAuth, timeout=0.3, retry=quick))
    with socket.socket() as silent, no_retry_waits():
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        status = _cli.main(["--base-url", f"http://127.0.0.1:{port}", "token"])
    assert status == 4
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"requests-emma: error: could not reach emma at 127.0.0.1:{port}: ")


def test_retries_are_shown_at_default_verbosity(server: FakeEmmaServer) -> None:
    """Without -v, each retry of the token call is one line on stderr, and the token comes."""
    server.fail_next_token_calls(2, 503)
    result = run_cli("token", env=server_env(server), retry_waits=False)  # no real backoff
    assert result.returncode == 0, result.stderr
    assert server.is_valid_access_token(result.stdout.strip())
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert "HTTP 503" in lines[0] and "attempt 1 of 5; retrying in" in lines[0]
    assert "HTTP 503" in lines[1] and "attempt 2 of 5; retrying in" in lines[1]


def test_verbose_reports_a_rejected_credential_once(server: FakeEmmaServer) -> None:
    """With -v, rejected credentials show up once on stderr: the error line, no log echo."""
    env = {**server_env(server), "EMMA_CLIENT_SECRET": "wrong-secret-value"}
    result = run_cli("-v", "token", env=env)
    assert result.returncode == 3
    assert result.stderr.count("rejected the client credentials") == 1, result.stderr


def test_verbose_does_not_call_the_first_token_a_renewal(server: FakeEmmaServer) -> None:
    """With -v, the first token call is logged as a token issued, not as a renewal."""
    result = run_cli("-v", "token", env=server_env(server))
    assert result.returncode == 0, result.stderr
    assert "token issued" in result.stderr
    assert "renew" not in result.stderr.lower()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_its_own_status(server: FakeEmmaServer) -> None:
    """Output to a full device: "cannot write output: No space left on device", exit 74."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "requests_emma", "get", "/v1/locations"],
            env=child_env(server_env(server)),
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 74
    assert result.stderr == "requests-emma: error: cannot write output: No space left on device\n"


@pytest.mark.parametrize(("typed", "suggested"), [("gte", "get"), ("tokne", "token")])
def test_a_mistyped_command_gets_a_suggestion(typed: str, suggested: str) -> None:
    """A subcommand close to a real one is named, with the closest one suggested: exit 2."""
    result = run_cli(typed)
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"unknown command '{typed}'; did you mean '{suggested}'?" in line
    assert "token, get, serve, demo" in line


@pytest.mark.parametrize("path", ["", "  "])
def test_get_of_an_empty_path_is_a_usage_error(server: FakeEmmaServer, path: str) -> None:
    """`get ''` is exit 2, before any token call."""
    result = run_cli("get", path, env=server_env(server))
    assert result.returncode == 2
    assert "get: PATH is empty" in one_error_line(result)
    assert server.token_calls == 0


def test_version_is_the_installed_version() -> None:
    """`--version` and `requests_emma.__version__` both show the installed metadata's version."""
    installed = importlib.metadata.version("requests-emma")
    assert requests_emma.__version__ == installed
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"requests-emma {installed}\n"


#: Each subcommand, with what it needs to get as far as writing its output.
EVERY_COMMAND = [["token"], ["get", "/v1/locations"], ["demo"], ["serve"]]


@pytest.mark.skipif(os.name == "nt", reason="closes stdout with a POSIX shell")
@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda command: command[0])
def test_stdout_closed_at_start_is_exit_74(server: FakeEmmaServer, command: list[str]) -> None:
    """Started with stdout closed (`>&-`): one error line, exit 74, before any token call."""
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "requests_emma", *command],
        env=child_env(server_env(server)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 74, result.stderr
    assert one_error_line(result) == "requests-emma: error: cannot write output: stdout is closed"
    assert server.token_calls == 0


@pytest.mark.skipif(os.name == "nt", reason="closes stderr with a POSIX shell")
def test_stderr_closed_keeps_errors_off_stdout(server: FakeEmmaServer) -> None:
    """With stderr closed (`2>&-`), an error line is not written to stdout instead."""
    env = {**server_env(server), "EMMA_CLIENT_SECRET": "not-the-secret"}
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "requests_emma", "token"],
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout == ""


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda command: command[0])
def test_closed_stdout_is_quiet(server: FakeEmmaServer, command: list[str]) -> None:
    """A reader that went away (| head) ends the command with 141 and no traceback."""
    with subprocess.Popen(
        [sys.executable, "-m", "requests_emma", *command],
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


@pytest.mark.parametrize(
    "args",
    [
        ["token", "--client-secret=topsecret123"],
        ["token", "--client-secret", "topsecret123"],
        ["--client-secret", "topsecret123", "get", "/v1/locations"],
        ["token", "--secret=topsecret123"],
    ],
)
def test_there_is_no_secret_flag(args: list[str]) -> None:
    """A secret flag is a usage error that names EMMA_CLIENT_SECRET and not the value given."""
    result = run_cli(*args, env={"EMMA_CLIENT_ID": "id"})
    assert result.returncode == 2
    line = one_error_line(result)
    assert "no option for the client secret" in line
    assert "EMMA_CLIENT_SECRET" in line
    assert "topsecret123" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["token", "topsecret123"], "1 unexpected argument"),
        (["get", "/v1/locations", "topsecret123", "it's-topsecret123"], "2 unexpected arguments"),
        (["token", "--pasword=topsecret123"], "unknown option --pasword"),
        (["token", "--pasword", "topsecret123"], "unknown option --pasword; 1 unexpected"),
        (["topsecret123"], "unknown command (value not shown)"),
        (["--base-url", "ftp://topsecret123", "token"], "--base-url: base_url must be"),
        (
            ["token", "--base-url=https://example.com/x?q=topsecret123"],
            "--base-url: base_url must not",
        ),
        (["serve", "--port", "topsecret123"], "argument --port: must be a port number"),
        (["token", "--verbose=topsecret123"], "-v/--verbose"),
        (["token", "--json=topsecret123"], "--json"),
    ],
)
def test_usage_errors_never_show_values(args: list[str], shown: str) -> None:
    """Usage errors name options but never repeat a value given: any could be a secret."""
    result = run_cli(*args, env={"EMMA_CLIENT_ID": "id"})
    assert result.returncode == 2
    assert shown in one_error_line(result)
    assert "topsecret123" not in result.stdout + result.stderr


def test_insecure_base_url_exits_2() -> None:
    """Plain http to a non-loopback host is refused before any call: exit 2."""
    env = {"EMMA_CLIENT_ID": "id", "EMMA_CLIENT_SECRET": "secret-value"}
    result = run_cli("token", "--base-url", "http://api.example.com/external", env=env)
    assert result.returncode == 2
    assert "https" in one_error_line(result)


@pytest.mark.parametrize("source", ["--base-url", "EMMA_API_URL"])
def test_a_bad_base_url_names_its_source(source: str) -> None:
    """A refused base URL says whether it came from --base-url or from EMMA_API_URL."""
    env = {"EMMA_CLIENT_ID": "id", "EMMA_CLIENT_SECRET": "secret-value"}
    args = ["token"]
    if source == "--base-url":
        args += ["--base-url", "http://api.example.com/external"]
    else:
        env["EMMA_API_URL"] = "http://api.example.com/external"
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith(f"requests-emma: error: {source}: ")
    assert "https" in line


def test_rejected_credentials_exit_3(server: FakeEmmaServer) -> None:
    """Credentials issue-token rejects: exit 3, one error line saying so with emma's message,
    and (without -v) no log line repeating it."""
    env = {**server_env(server), "EMMA_CLIENT_SECRET": "wrong-secret-value"}
    result = run_cli("token", env=env)
    assert result.returncode == 3
    line = one_error_line(result)
    assert "rejected the client credentials" in line
    assert "Invalid client credentials" in line


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
    for code in ("0", "1", "2", "3", "4", "70", "74", "130", "141"):
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


@needs_a_pty
def test_secret_prompt_on_a_terminal(server: FakeEmmaServer) -> None:
    """With stdin a terminal and no EMMA_CLIENT_SECRET, the secret is asked for, not echoed."""
    env = {"EMMA_CLIENT_ID": server.client_id, "EMMA_API_URL": server.base_url}
    status, stdout, stderr = at_the_prompt(
        env, lambda _, terminal: os.write(terminal, server.client_secret.encode() + b"\n")
    )
    assert status == 0, stderr
    assert server.is_valid_access_token(stdout.strip())
    assert server.client_secret not in stdout + stderr


@needs_a_pty
def test_end_of_input_at_the_prompt_exits_2() -> None:
    """Ctrl-D at the secret prompt: exit 2, "no client secret given", on a line of its own."""
    status, stdout, stderr = at_the_prompt(
        {"EMMA_CLIENT_ID": "id"}, lambda _, terminal: os.write(terminal, b"\x04")
    )
    assert status == 2
    assert stdout == ""
    prompt, error = stderr.splitlines()
    assert prompt == "emma client secret: "
    assert error.startswith("requests-emma: error: no client secret given")


@needs_a_pty
def test_an_empty_secret_at_the_prompt_says_so() -> None:
    """Enter alone at the secret prompt: exit 2, saying the secret entered was empty."""
    status, _, stderr = at_the_prompt(
        {"EMMA_CLIENT_ID": "id"}, lambda _, terminal: os.write(terminal, b"\n")
    )
    assert status == 2
    error = stderr.splitlines()[-1]
    assert error.startswith("requests-emma: error: no client secret: an empty one was entered")
    assert "run in a terminal" not in error


@needs_a_pty
def test_interrupt_at_the_prompt_ends_the_prompt_line() -> None:
    """Ctrl-C at the secret prompt: exit 130, the error on its own line, not after the prompt."""
    status, _, stderr = at_the_prompt(
        {"EMMA_CLIENT_ID": "id"}, lambda child, _: child.send_signal(signal.SIGINT)
    )
    assert status == 130
    assert stderr.splitlines() == ["emma client secret: ", "requests-emma: error: interrupted"]


# -- demo and entry points -----------------------------------------------------------------


#: The plain run's environment: a base URL and proxies, all of which the demo must ignore.
DEMO_ENV = {
    "EMMA_API_URL": "https://unreachable.invalid/external",
    "HTTP_PROXY": "http://127.0.0.1:9",  # a proxy from the environment must be ignored
    "ALL_PROXY": "http://127.0.0.1:9",
}


class DemoRun(NamedTuple):
    result: subprocess.CompletedProcess[str]
    seconds: float  # from its start to its end


class CutDemoRun(NamedTuple):
    printed: bytes  # what it printed before its reader went away
    returncode: int
    stderr: bytes


class DemoRuns(NamedTuple):
    plain: DemoRun  # in DEMO_ENV
    verbose: DemoRun  # with -v
    cut: CutDemoRun  # its reader gone mid-tour


#: The line the demo prints just before the background renewal's log line.
BEFORE_THE_RENEWALS_LOG_LINE = b"renewal runs beside it)\n"


def run_demo(*args: str, env: Mapping[str, str] | None = None) -> DemoRun:
    started = time.monotonic()
    result = run_cli_process(*args, "demo", env=env, timeout=60)
    return DemoRun(result, time.monotonic() - started)


def run_demo_cut_mid_tour() -> CutDemoRun:
    """The demo whose stdout is closed as soon as the line before the renewal's log line
    arrives (unbuffered reads), before that one, written from the renewal's own thread."""
    with subprocess.Popen(
        [sys.executable, "-m", "requests_emma", "demo"],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None
        printed = b""
        while BEFORE_THE_RENEWALS_LOG_LINE not in printed:
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                break  # it ended before that line: the test says so
            printed += chunk
        child.stdout.close()
        _, stderr = child.communicate(timeout=60)
    return CutDemoRun(printed, child.returncode, stderr)


@pytest.fixture(scope="module")
def demo_runs() -> DemoRuns:
    """The demo's runs the tests read, side by side: each spends most of its few seconds
    waiting (for its first token to near expiry, then two Retry-After: 1), so together they
    take the time of one."""
    with ThreadPoolExecutor(3) as pool:
        plain = pool.submit(run_demo, env=DEMO_ENV)
        verbose = pool.submit(run_demo, "-v")
        cut = pool.submit(run_demo_cut_mid_tour)
        return DemoRuns(plain.result(), verbose.result(), cut.result())


def test_demo_whose_reader_goes_away_mid_tour_is_quiet(demo_runs: DemoRuns) -> None:
    """The reader gone while the background renewal logs: 141, no traceback from its thread."""
    cut = demo_runs.cut
    assert BEFORE_THE_RENEWALS_LOG_LINE in cut.printed, cut.printed
    assert cut.returncode == 141
    assert cut.stderr == b""


def test_demo_runs_offline_without_credentials_in_under_30_s(demo_runs: DemoRuns) -> None:
    """`demo` ends with 0 and nothing on stderr, offline and with no credentials, in < 30 s."""
    result, elapsed = demo_runs.plain
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert elapsed < 30


def test_demo_walks_through_five_steps(demo_runs: DemoRuns) -> None:
    """The tour has five numbered steps."""
    out = demo_runs.plain.result.stdout
    steps = [line for line in out.splitlines() if line[:2] in {"1.", "2.", "3.", "4.", "5."}]
    assert len(steps) == 5


@pytest.mark.parametrize(
    "shown",
    [
        "token calls: 1 issue-token, 0 refresh-token",  # first token
        "token calls: none (the token was reused)",  # calls
        "token calls: 0 issue-token, 1 refresh-token",  # expiry and refresh
        "401 'Token is not valid'; the request was replayed once",  # revoked
        "token calls: 0 issue-token, 3 refresh-token",  # two 503s, then success
    ],
    ids=["first-token", "reuse", "refresh", "revoked", "retries"],
)
def test_demo_shows_each_steps_token_calls(demo_runs: DemoRuns, shown: str) -> None:
    """Each step of the tour says what it cost in token calls (or what was replayed)."""
    assert shown in demo_runs.plain.result.stdout


def test_demo_callers_never_see_an_error(demo_runs: DemoRuns) -> None:
    """Every request of the tour is answered 200: the caller never sees a 4xx or 5xx."""
    out = demo_runs.plain.result.stdout
    assert "-> 200" in out
    assert "-> 4" not in out and "-> 5" not in out


def test_demo_prints_no_token(demo_runs: DemoRuns) -> None:
    """No token (a JWT begins ``eyJ``) appears in the tour."""
    assert "eyJ" not in demo_runs.plain.result.stdout


@pytest.fixture
def verbose_demo(demo_runs: DemoRuns) -> subprocess.CompletedProcess[str]:
    return demo_runs.verbose.result


def test_verbose_demo_prints_each_log_line_once(
    verbose_demo: subprocess.CompletedProcess[str],
) -> None:
    """`-v demo` shows the library's log lines once, in the tour, and nothing on stderr."""
    assert verbose_demo.returncode == 0, verbose_demo.stderr
    assert verbose_demo.stderr == ""
    assert "     log: token issued" in verbose_demo.stdout


def test_demo_explains_a_path_without_a_slash(
    verbose_demo: subprocess.CompletedProcess[str],
) -> None:
    """Each GET the demo shows starts with a slash, or the next line explains why not."""
    lines = verbose_demo.stdout.splitlines()
    gets = [i for i, line in enumerate(lines) if line.startswith("   GET ")]
    assert len(gets) >= 5
    for i in gets:
        if not lines[i].startswith("   GET /"):
            assert "with or without a leading slash" in lines[i + 1], lines[i]


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


# -- the docs' examples --------------------------------------------------------------------


def code_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.skipif(os.name == "nt", reason="a POSIX shell example")
def test_cli_md_script_example_reports_the_status(server: FakeEmmaServer, tmp_path: Path) -> None:
    """docs/how-to/cli.md's scripting example prints the command's real exit status when it fails."""
    section = (DOCS / "how-to" / "cli.md").read_text().split("### Script against it", 1)[1]
    script = code_blocks(section, "sh")[0]
    server.fail_next_api_calls(1, 403, body=b'{"code": "FORBIDDEN", "message": "Denied."}')
    scripts = sysconfig.get_path("scripts")
    env = {**server_env(server), "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run(
        ["sh", "-c", script],
        env=child_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        "failed (1): requests-emma: error: GET /v1/ssh-keys: HTTP 403"
        in result.stdout + result.stderr
    )


@pytest.mark.slow
def test_testing_md_examples_run_on_their_own(tmp_path: Path) -> None:
    """Each Python example in docs/how-to/testing.md's how-tos runs as a file of its own."""
    how_to = (DOCS / "how-to" / "testing.md").read_text().split("## Reference", 1)[0]
    blocks = code_blocks(how_to, "python")
    assert len(blocks) >= 6
    if importlib.util.find_spec("httpx2") is None:  # it needs Python 3.11 or newer
        blocks = [block for block in blocks if "httpx2" not in block]
    for number, block in enumerate(blocks):
        (tmp_path / f"test_example_{number}.py").write_text(block)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            str(tmp_path),
        ],
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
