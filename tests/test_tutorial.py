"""docs/tutorial.md works as written, against `requests-emma serve` started as step 2 says.

Each Python example is run twice, as the page invites: pasted at the prompt of an interactive
``python`` (a real ``python -i`` reading it line by line, as a terminal would feed it, with
the blank line that ends a pasted block), and saved as a file of its own. Both must print
exactly the output the page shows under it, and nothing may go wrong on the way.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import pytest
from cli_runs import child_env

pytestmark = pytest.mark.skipif(os.name == "nt", reason="stops `serve` with SIGTERM")

TUTORIAL = (Path(__file__).resolve().parent.parent / "docs" / "tutorial.md").read_text()
BLOCK = re.compile(
    r"^```(\{testcode\}|\{testoutput\}|sh|json|text)\n(.*?)^```", re.MULTILINE | re.DOTALL
)


class Example(NamedTuple):
    step: str
    code: str
    output: str


def examples() -> list[Example]:
    """Each ``{testcode}`` block of the tutorial, with the ``{testoutput}`` right after it
    (empty if there is none)."""
    found = []
    for step in re.split(r"^## ", TUTORIAL, flags=re.MULTILINE)[1:]:
        blocks = BLOCK.findall(step)
        for (kind, code), (next_kind, output) in zip(blocks, [*blocks[1:], ("", "")]):
            if kind == "{testcode}":
                shown = output if next_kind == "{testoutput}" else ""
                found.append(Example(step.split("\n", 1)[0], code, shown))
    return found


EXAMPLES = examples()


class Serve(NamedTuple):
    env: dict[str, str]
    log: queue.Queue[str]
    pid: int
    #: The two lines it logs at its start (taken off ``log``).
    start_lines: list[str]


@pytest.fixture(scope="module")
def serve() -> Iterator[Serve]:
    """`requests-emma serve`, run as step 2 says; its exports, and its log lines as they come."""
    script = Path(sysconfig.get_path("scripts")) / "requests-emma"
    child = subprocess.Popen(
        [str(script), "serve"],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    log: queue.Queue[str] = queue.Queue()

    def pump(stderr: IO[str]) -> None:
        for line in stderr:
            log.put(line.rstrip("\n"))

    pumping = threading.Thread(target=pump, args=(child.stderr,), daemon=True)
    pumping.start()
    try:
        env = {}
        for _ in range(3):
            line = child.stdout.readline()
            assert line.startswith("export "), line
            name, _, value = line[len("export ") :].rstrip("\n").partition("=")
            env[name] = value
        start_lines = [log.get(timeout=30), log.get(timeout=30)]
        yield Serve(env, log, child.pid, start_lines)
    finally:
        child.terminate()
        child.wait(timeout=30)
        pumping.join(timeout=30)
        child.stdout.close()
        child.stderr.close()


def test_every_example_shows_its_output() -> None:
    """Each Python example of the tutorial is followed by the output it prints."""
    assert len(EXAMPLES) >= 3
    assert all(example.output.strip() for example in EXAMPLES)


def test_serve_prints_the_exports_step_2_shows(serve: Serve) -> None:
    """Step 2's `serve` prints the three export lines the page shows, names in that order."""
    shown = re.findall(r"^export (\w+)=", TUTORIAL.split("## 2.", 1)[1], flags=re.MULTILINE)[:3]
    assert list(serve.env) == shown


def test_step_3_prints_the_json_shown(serve: Serve) -> None:
    """Step 3's `requests-emma get` prints the page's JSON; `serve` logs the two calls it names."""
    step = TUTORIAL.split("## 3.", 1)[1].split("## 4.", 1)[0]
    command = BLOCK.findall(step)[0][1].strip()
    shown = BLOCK.findall(step)[1][1]
    script_dir = sysconfig.get_path("scripts")
    result = subprocess.run(
        ["sh", "-c", command],
        env=child_env({**serve.env, "PATH": script_dir + os.pathsep + os.environ["PATH"]}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown
    for shown_line in re.findall(r"`((?:POST|GET) /external/\S+ \d{3})`", step):
        next_request_logged(serve, shown_line)


def next_request_logged(serve: Serve, request: str) -> None:
    """Wait until `serve` logs ``request`` ("METHOD PATH STATUS", after the time of day)."""
    while True:
        line = serve.log.get(timeout=30)  # lines before it (its start, an earlier call) skipped
        if line.split(" ", 1)[-1] == request:
            return


def test_step_2_shows_the_revoke_command_serve_prints(serve: Serve) -> None:
    """Step 2's `serve` output ends with the two lines `serve` logs at its start, its own
    process number in the second."""
    shown = BLOCK.findall(TUTORIAL.split("## 2.", 1)[1])[1][1].splitlines()[-2:]
    port = serve.env["EMMA_API_URL"].split(":")[-1].split("/")[0]
    expected = [
        re.sub(r":\d+/", f":{port}/", shown[0]),
        re.sub(r"-USR1 \d+", f"-USR1 {serve.pid}", shown[1]),
    ]
    assert serve.start_lines == expected


def test_step_5_replaces_the_revoked_token(serve: Serve, tmp_path: Path) -> None:
    """Step 5's commands, its `kill` sent to step 2's `serve`: the cached token is refused,
    and `serve` logs the 401, the token calls and the replay the page shows, in that order."""
    step = TUTORIAL.split("## 5.", 1)[1].split("## 6.", 1)[0]
    commands = BLOCK.findall(step)[0][1].strip().splitlines()
    shown = [line.split(" ", 1)[1] for line in BLOCK.findall(step)[1][1].strip().splitlines()]
    env = child_env({
        **serve.env,
        "PATH": sysconfig.get_path("scripts") + os.pathsep + os.environ["PATH"],
        "XDG_CACHE_HOME": str(tmp_path),  # the command line's token cache, this test's own
    })  # fmt: skip
    for command in commands:
        kill = re.match(r"kill -USR1 \d+", command)
        if kill:
            command = f"kill -USR1 {serve.pid}" + command[kill.end() :]
        result = subprocess.run(
            ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert (result.returncode, result.stderr) == (0, "")
        if kill:  # the signal is handled in `serve`'s own time: wait until it says so
            next_log_line_is(serve, "# every token issued so far is revoked")
    assert "# every token issued so far is revoked" in step
    assert [serve.log.get(timeout=30).split(" ", 1)[1] for _ in shown] == shown


def next_log_line_is(serve: Serve, wanted: str) -> None:
    """Wait until `serve` logs the line ``wanted`` (lines before it skipped)."""
    while serve.log.get(timeout=30) != wanted:
        pass


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.step[:24])
def test_example_pasted_at_the_python_prompt(serve: Serve, example: Example) -> None:
    """The example, pasted into interactive `python` and ended with Enter, prints what is shown."""
    result = subprocess.run(
        [sys.executable, "-i", "-q"],  # -i: the interactive prompt, though stdin is a pipe
        input=example.code + "\n",
        env=child_env(serve.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # stderr has the prompts and nothing else: no IndentationError, no traceback.
    assert re.sub(r"(>>> |\.\.\. )", "", result.stderr).strip() == "", result.stderr
    assert result.stdout == example.output


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.step[:24])
def test_example_saved_as_a_file(serve: Serve, example: Example, tmp_path: Path) -> None:
    """The example, saved as a file of its own and run with `python`, prints what is shown."""
    (tmp_path / "example.py").write_text(example.code)
    result = subprocess.run(
        [sys.executable, "example.py"],
        env=child_env(serve.env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == example.output
