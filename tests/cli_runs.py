"""The command line as the tests run it: ``python -m requests_emma`` in a process of its own,
with the developer's credentials and proxies kept out of its environment, and stdin not a
terminal (so it never prompts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from requests_emma.testing import FakeEmmaServer

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

#: The command line as ``python -m requests_emma`` runs it, inside ``no_retry_waits()``: the
#: token call's retries happen, without the real backoff between them.
_WITHOUT_RETRY_WAITS = (
    "import sys\n"
    "from requests_emma._cli.main import main\n"
    "from requests_emma.testing import no_retry_waits\n"
    "with no_retry_waits():\n"
    "    status = main()\n"
    "raise SystemExit(status)\n"
)


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


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cache_home: Path | None = None,
    retry_waits: bool = True,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run the command line with ``args`` and ``env`` added to the cleared environment;
    ``cache_home``: its user cache directory (``XDG_CACHE_HOME``), where it keeps its token;
    ``retry_waits=False``: without the waits between token-call retries."""
    extra = dict(env or {})
    if cache_home is not None:
        extra["XDG_CACHE_HOME"] = str(cache_home)
    command = ["-m", "requests_emma"] if retry_waits else ["-c", _WITHOUT_RETRY_WAITS]
    return subprocess.run(
        [sys.executable, *command, *args],
        env=child_env(extra),
        stdin=subprocess.DEVNULL,  # not a terminal: the CLI must never prompt here
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
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
