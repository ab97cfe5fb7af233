"""The documentation keeps up with the code: every public name has a reference entry, every
method of the fake emma is in the testing how-to, and the shell example that backgrounds
`serve` works as written."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sysconfig
import types
from pathlib import Path

import pytest
from cli_runs import child_env

import requests_emma
import requests_emma.oauthlib
import requests_emma.testing

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE = (DOCS / "reference.md").read_text()
AUTODOC = re.compile(r"^\.\. auto(?:class|exception|function):: ([\w.]+)$", re.MULTILINE)
DOCUMENTED = set(AUTODOC.findall(REFERENCE))
SHELL = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


MODULES = [requests_emma, requests_emma.testing, requests_emma.oauthlib]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_every_public_name_is_in_the_reference(module: types.ModuleType) -> None:
    """docs/reference.md autodocs each name of __all__, at its public path."""
    names = {f"{module.__name__}.{name}" for name in module.__all__}
    assert names - DOCUMENTED == set()


def test_every_public_method_of_the_fake_emma_is_documented() -> None:
    """Each public method FakeEmmaServer has (its token service's too) is in the testing how-to."""
    testing = (DOCS / "how-to" / "testing.md").read_text()
    methods = {
        name
        for name, value in inspect.getmembers(requests_emma.testing.FakeEmmaServer)
        if callable(value) and not name.startswith("_")
    }
    assert {name for name in methods if f"`{name}(" not in testing} == set()


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="a POSIX shell example")
@pytest.mark.parametrize("page", ["README.md", "docs/how-to/cli.md"])
def test_the_serve_example_leaves_no_file_behind(page: str, tmp_path: Path) -> None:
    """The shell example that backgrounds `serve` works as written: the GET answers, `serve`
    stops cleanly on the SIGTERM, and no file is left where it ran."""
    text = (DOCS.parent / page).read_text()
    [script] = [block for block in SHELL.findall(text) if "requests-emma serve >" in block]
    checkout, temporary = tmp_path / "checkout", tmp_path / "tmp"
    checkout.mkdir()
    temporary.mkdir()
    path = sysconfig.get_path("scripts") + os.pathsep + os.environ.get("PATH", "")
    result = subprocess.run(
        ["sh", "-c", "set -e\n" + script + "wait\n"],  # wait: serve exits cleanly on SIGTERM
        env=child_env({"PATH": path, "TMPDIR": str(temporary)}),
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "London"' in result.stdout
    assert result.stderr.endswith("# fake emma stopped\n"), result.stderr
    assert list(checkout.iterdir()) == []
    assert list(temporary.iterdir()) == []
