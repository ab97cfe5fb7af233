"""The docs as a new user meets them on a fresh machine: install lines that work from a
checkout, and the httpx how-to's examples run as they are against a local fake emma."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import child_env, server_env

from requests_emma.testing import FakeEmmaServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: ``pip install requests-emma`` or ``'requests-emma[x]'``: the package is not on an index.
FROM_AN_INDEX = re.compile(r"pip install ['\"]?requests-emma\b")


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_install_lines_work_from_a_checkout(page: Path) -> None:
    """No page says `pip install 'requests-emma[...]'`: it is installed from a checkout."""
    assert FROM_AN_INDEX.findall(page.read_text()) == []


def _examples(markdown: str) -> list[tuple[str, str | None]]:
    """Each Python block, with the ``text`` block that follows it (its output) if any."""
    blocks = re.findall(r"^```(python|text)\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    found: list[tuple[str, str | None]] = []
    for kind, code in blocks:
        if kind == "python":
            found.append((code, None))
        elif found and found[-1][1] is None:
            found[-1] = (found[-1][0], code)
    return found


HTTPX_EXAMPLES = _examples((ROOT / "docs" / "how-to" / "httpx.md").read_text())


@pytest.mark.parametrize(("code", "output"), HTTPX_EXAMPLES, ids=lambda value: "")
def test_httpx_examples_run_against_the_serve_exports(
    server: FakeEmmaServer, code: str, output: str | None
) -> None:
    """Each Python example of the httpx how-to runs as it is with the variables `requests-emma
    serve` exports, and prints the output shown under it."""
    if "httpx2" in code:
        pytest.importorskip("httpx2", reason="httpx2 needs Python 3.11 or newer")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(server_env(server)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if output is not None:
        assert result.stdout == output
    assert server.token_calls == 1  # one token, whoever asked for it
