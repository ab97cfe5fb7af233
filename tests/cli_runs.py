"""The command line as the tests run it: ``main(argv)`` in this process (``run_cli``), or
``python -m requests_emma`` in a process of its own where a process is the point (signals,
closed pipes, exit statuses of the process); either way with the developer's credentials and
proxies kept out of its environment, and stdin not a terminal (so it never prompts)."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from requests_emma._cli.main import main
from requests_emma.testing import FakeEmmaServer, no_retry_waits

#: Variables the child must not inherit: the developer's credentials, or a proxy that would
#: route 127.0.0.1 elsewhere.
STRIPPED = ("EMMA_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

#: Prefix a command with this to run it with Ctrl-C's default action, as a terminal's
#: foreground job has it. A child inherits an ignored SIGINT (pytest run as a background job
#: of a script, ``pytest &``) and Python then leaves it ignored; subprocess's
#: ``restore_signals`` resets only SIGPIPE and SIGXFSZ, and a ``preexec_fn`` is not safe
#: with the test servers' threads running. So a small Python resets it, then execs.
DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys\n"
    + "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    + "os.execv(sys.argv[1], sys.argv[1:])\n",
]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``STRIPPED``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(STRIPPED)}
    env.update(extra or {})
    return env


def server_env(server: FakeEmmaServer) -> dict[str, str]:
    """The variables that point the command line at ``server``, with its credentials."""
    return {
        "EMMA_CLIENT_ID": server.client_id,
        "EMMA_CLIENT_SECRET": server.client_secret,
        "EMMA_API_URL": server.base_url,
    }


@dataclass(frozen=True)
class CliRun:
    """What a run of the command line did: its exit status, and what it wrote."""

    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes  # stdout as written, byte for byte


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cache_home: Path | None = None,
    retry_waits: bool = True,
) -> CliRun:
    """Run the command line's ``main(args)`` in this process, with ``env`` added to the
    cleared environment (``PYTHONIOENCODING``: stdout's encoding, as Python takes it), stdin
    not a terminal and stdout and stderr captured; ``cache_home``: its user cache directory
    (``XDG_CACHE_HOME``), where it keeps its token; ``retry_waits=False``: without the waits
    between token-call retries."""
    extra = dict(env or {})
    if cache_home is not None:
        extra["XDG_CACHE_HOME"] = str(cache_home)
    environ = child_env(extra)
    written = {"stdout": io.BytesIO(), "stderr": io.BytesIO()}
    encoding = environ.get("PYTHONIOENCODING", "utf-8")
    out = io.TextIOWrapper(written["stdout"], encoding=encoding, newline="\n")
    err = io.TextIOWrapper(written["stderr"], encoding="utf-8", newline="\n")
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, environ, clear=True))
        stack.enter_context(mock.patch.object(sys, "stdin", io.StringIO()))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        if not retry_waits:
            stack.enter_context(no_retry_waits())
        try:
            status = main(list(args))
        except SystemExit as exit:  # --help, --version: argparse ends the run
            status = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    out.flush()
    err.flush()
    output = written["stdout"].getvalue()
    text = output.decode(encoding, errors="replace")  # stdout_bytes: what was written
    return CliRun(status, text, written["stderr"].getvalue().decode(), output)


def run_cli_process(
    *args: str,
    env: Mapping[str, str] | None = None,
    cache_home: Path | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """``run_cli`` as ``python -m requests_emma`` in a process of its own."""
    extra = dict(env or {})
    if cache_home is not None:
        extra["XDG_CACHE_HOME"] = str(cache_home)
    return subprocess.run(
        [sys.executable, "-m", "requests_emma", *args],
        env=child_env(extra),
        stdin=subprocess.DEVNULL,  # not a terminal: the CLI must never prompt here
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(result: CliRun | subprocess.CompletedProcess[str]) -> str:
    """The one line ``result`` wrote to stderr, an error line without a traceback."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("requests-emma: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
