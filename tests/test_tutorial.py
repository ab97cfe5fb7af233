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
        yield Serve(env, log)
    finally:
        child.terminate()
        child.wait(timeout=30)
        pumping.join(timeout=30)
        child.stdout.close()
        child.stderr.close()


def test_every_example_shows_its_output() -> None:
    """Each Python example of the tutorial is followed by the output it prints."""
    assert len(EXAMPLES) >= 4
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
