"""`requests-emma serve`, run as a real process, with `token` and `get` used against it."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import pytest
import requests
from cli_runs import DEFAULT_SIGINT, child_env, one_error_line, run_cli

from requests_emma import EmmaAuth, EmmaSession

pytestmark = pytest.mark.skipif(os.name == "nt", reason="sends SIGINT, a POSIX signal")


class Serving:
    """A running `requests-emma serve`: its export lines as a dict, its stderr lines as a queue."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.child = child
        assert child.stdout is not None and child.stderr is not None
        self.exports = self._read_exports(child.stdout)
        self.log: queue.Queue[str] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, args=(child.stderr,), daemon=True)
        self.pump.start()

    @staticmethod
    def _read_exports(stdout: IO[str]) -> dict[str, str]:
        exports = {}
        for _ in range(3):
            line = stdout.readline()
            assert line.startswith("export "), line
            name, _, value = line[len("export ") :].rstrip("\n").partition("=")
            exports[name] = value
        return exports

    def _pump(self, stderr: IO[str]) -> None:
        for line in stderr:
            self.log.put(line.rstrip("\n"))

    def next_log_line(self) -> str:
        return self.log.get(timeout=30)


@pytest.fixture
def serving() -> Iterator[Serving]:
    child = subprocess.Popen(
        # The test sends SIGINT: it must not be ignored.
        [
            *DEFAULT_SIGINT,
            sys.executable,
            "-m",
            "requests_emma",
            "serve",
            "--token-lifetime",
            "120",
        ],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    serving = None
    try:
        serving = Serving(child)
        yield serving
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        if serving is not None:
            serving.pump.join(timeout=30)  # stderr is at its end once the child is gone
        for stream in (child.stdout, child.stderr):
            assert stream is not None
            stream.close()


def test_serve_prints_exports_that_token_and_get_work_with(serving: Serving) -> None:
    """The export lines point `token` and `get` at the served fake: both succeed."""
    assert set(serving.exports) == {"EMMA_API_URL", "EMMA_CLIENT_ID", "EMMA_CLIENT_SECRET"}
    assert serving.exports["EMMA_API_URL"].startswith("http://127.0.0.1:")
    token = run_cli("token", "--json", env=serving.exports)
    assert token.returncode == 0, token.stderr
    assert '"expires_in": 1' in token.stdout  # 119 or 120 s: --token-lifetime was applied
    get = run_cli("get", "/v1/locations/18", env=serving.exports)
    assert get.returncode == 0, get.stderr
    assert '"name": "London"' in get.stdout


def test_serve_logs_each_request_without_tokens(serving: Serving) -> None:
    """Each request served is one stderr line: method, path, status; no token, no secret."""
    assert serving.next_log_line().startswith("# fake emma serving at http://127.0.0.1:")
    assert serving.next_log_line().startswith("# kill -USR1 ")
    result = run_cli("get", "/v1/locations?name=London", env=serving.exports)
    assert result.returncode == 0, result.stderr
    issue, get = serving.next_log_line(), serving.next_log_line()
    assert issue.endswith(" POST /external/v1/issue-token 200")
    assert get.endswith(" GET /external/v1/locations 200")  # the query string is not shown
    for line in (issue, get):
        assert len(line.split()) == 4  # time, method, path, status: nothing else
        assert serving.exports["EMMA_CLIENT_SECRET"] not in line


def test_ctrl_c_stops_serve_cleanly(serving: Serving) -> None:
    """SIGINT ends `serve` with status 0, a closing line and no traceback."""
    assert serving.next_log_line().startswith("# fake emma serving at ")
    assert serving.next_log_line().startswith("# kill -USR1 ")
    serving.child.send_signal(signal.SIGINT)
    assert serving.child.wait(timeout=30) == 0
    assert serving.next_log_line() == "# fake emma stopped"
    assert serving.child.stdout is not None
    assert serving.child.stdout.read() == ""  # nothing on stdout after the exports
    port = int(serving.exports["EMMA_API_URL"].rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe:  # the port is closed: nothing listens any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_sigusr1_revokes_every_token_and_serving_goes_on(serving: Serving) -> None:
    """SIGUSR1, as its second log line says, revokes the tokens: a client's next call gets a
    401, renews and replays it; `serve` goes on serving."""
    assert serving.next_log_line().startswith("# fake emma serving at ")
    assert (
        serving.next_log_line() == f"# kill -USR1 {serving.child.pid} revokes every token it issued"
    )
    auth = EmmaAuth(
        serving.exports["EMMA_CLIENT_ID"],
        serving.exports["EMMA_CLIENT_SECRET"],
        base_url=serving.exports["EMMA_API_URL"],
    )
    url = f"{auth.base_url}/v1/locations/18"
    assert requests.get(url, auth=auth, timeout=30).history == []
    serving.child.send_signal(signal.SIGUSR1)
    while serving.next_log_line() != "# every token issued so far is revoked":
        pass  # the log lines of the first call
    response = requests.get(url, auth=auth, timeout=30)
    assert (response.status_code, [r.status_code for r in response.history]) == (200, [401])
    assert serving.child.poll() is None


@pytest.mark.parametrize("lines_read", [0, 1], ids=["at-start", "after-its-first-line"])
def test_serve_keeps_answering_when_its_log_reader_is_gone(lines_read: int) -> None:
    """stderr's reader gone (`serve 2>&1 | head`): token and API calls still get answers."""
    with subprocess.Popen(
        [sys.executable, "-m", "requests_emma", "serve"],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None and child.stderr is not None
            exports = Serving._read_exports(child.stdout)
            for _ in range(lines_read):
                assert child.stderr.readline().startswith("# fake emma serving at ")
            child.stderr.close()  # every log line from now on meets a broken pipe
            for _ in range(3):  # a new client each time: a token call, then API calls
                auth = EmmaAuth(
                    exports["EMMA_CLIENT_ID"],
                    exports["EMMA_CLIENT_SECRET"],
                    base_url=exports["EMMA_API_URL"],
                )
                assert auth.get_token().access_token
                with EmmaSession(auth, retries=0) as session:
                    assert session.get("/v1/locations/18").json()["name"] == "London"
                    assert session.post("/v1/ssh-keys", json={"name": "k"}).status_code == 201
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=30) == 0  # a clean stop, though its last line is lost
        finally:
            if child.poll() is None:
                child.kill()


def test_serve_on_a_busy_port_exits_2(serving: Serving) -> None:
    """A port already listened on is one error line, exit 2."""
    port = serving.exports["EMMA_API_URL"].rsplit(":", 1)[1].split("/")[0]
    result = run_cli("serve", "--port", port)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: " in one_error_line(result)
