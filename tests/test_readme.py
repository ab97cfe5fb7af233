"""README.md: its Python examples run as written, and its signature of EmmaAuth is the real one."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import child_env, server_env

from requests_emma import EmmaAuth
from requests_emma.testing import FakeEmmaServer

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
SIGNATURE = next(block for block in BLOCKS if block.startswith("EmmaAuth(\n"))
SCRIPTS = [block for block in BLOCKS if block is not SIGNATURE and "def test_" not in block]
TESTS = [block for block in BLOCKS if "def test_" in block]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda block: block.splitlines()[-1][:40])
def test_readme_example_runs_as_written(server: FakeEmmaServer, script: str) -> None:
    """Each README example runs on its own, with EMMA_* pointing at a fake emma."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=child_env(server_env(server)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert server.token_calls >= 1  # it really called the (fake) API


@pytest.mark.slow
def test_readme_test_example_passes(tmp_path: Path) -> None:
    """The README's pytest example passes with the emma_server fixture the package installs."""
    assert TESTS
    for number, block in enumerate(TESTS):
        (tmp_path / f"test_readme_{number}.py").write_text(block)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_shows_the_real_signature() -> None:
    """The configuration block lists EmmaAuth's parameters: names, kinds, types, defaults."""
    assert shown_parameters(SIGNATURE) == real_parameters()


def shown_parameters(block: str) -> list[tuple[str, str, str, str]]:
    """(name, kind, annotation, default) of each parameter in the block's ``EmmaAuth(...)``."""
    arguments = block.split("(", 1)[1].rsplit(")", 1)[0]
    function = ast.parse(f"def EmmaAuth({arguments}): ...").body[0]
    assert isinstance(function, ast.FunctionDef)
    args = function.args
    shown = []
    for kind, params, defaults in (
        ("POSITIONAL_OR_KEYWORD", args.args, args.defaults),
        ("KEYWORD_ONLY", args.kwonlyargs, args.kw_defaults),
    ):
        padded = [None] * (len(params) - len(defaults)) + list(defaults)
        for param, default in zip(params, padded, strict=True):
            annotation = ast.unparse(param.annotation) if param.annotation else ""
            value = repr(ast.literal_eval(default)) if default is not None else ""
            shown.append((param.arg, kind, annotation, value))
    return shown


def real_parameters() -> list[tuple[str, str, str, str]]:
    return [
        (
            param.name,
            param.kind.name,
            str(param.annotation),  # a string: the package uses postponed annotations
            "" if param.default is param.empty else repr(param.default),
        )
        for param in inspect.signature(EmmaAuth).parameters.values()
    ]
