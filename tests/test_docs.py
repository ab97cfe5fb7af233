"""The documentation keeps up with the code: every public name has a reference entry, every
method of the fake emma is in the testing how-to, and the shell example that backgrounds
`serve` works as written."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sysconfig
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_runs import child_env

import requests_emma
import requests_emma.oauthlib
import requests_emma.testing

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE = (DOCS / "reference.md").read_text()
AUTODOC = re.compile(
    r"^\.\. auto(?:class|exception|function):: ([\w.]+)(?:\(.*\)(?: -> .*)?)?$", re.MULTILINE
)
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


def argument_tables(reference: str) -> dict[str, set[str]]:
    """The names autodoc'ed in the reference with a table after them (before the next
    heading or directive), and the backquoted names in the table's first column."""
    tables: dict[str, set[str]] = {}
    current = None
    for line in reference.splitlines():
        directive = AUTODOC.match(line.strip())
        if directive or line.startswith("#"):
            current = directive.group(1) if directive else None
        elif current and line.startswith("| ") and not line.startswith("| ---"):
            tables.setdefault(current, set()).update(re.findall(r"`(\w+)`", line.split("|")[1]))
    return tables


def docstring_handlers() -> list[Callable[..., None]]:
    """The ``autodoc-process-docstring`` handlers docs/conf.py gives Sphinx."""
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert conf.autodoc_typehints != "description"  # or the types come as one more list
    handlers: list[Callable[..., None]] = []

    class App:
        def connect(self, event: str, handler: Callable[..., None]) -> None:
            if event == "autodoc-process-docstring":
                handlers.append(handler)

    getattr(conf, "setup", lambda app: None)(App())
    return handlers


def test_the_reference_describes_each_argument_once() -> None:
    """An argument or field the reference describes in a table is not described again by the
    docstring autodoc shows above it (a paragraph of ``name``: ...), nor by a list of types."""
    tables = argument_tables(REFERENCE)
    assert {"requests_emma.EmmaAuth", "requests_emma.TokenStatus"} <= tables.keys()
    handlers = docstring_handlers()
    twice = []
    for name, arguments in tables.items():
        module, _, attribute = name.rpartition(".")
        obj: Any = getattr(__import__(module, fromlist=[attribute]), attribute)
        lines = (inspect.getdoc(obj) or "").splitlines()
        for handler in handlers:
            handler(None, "class", name, obj, {}, lines)
        paragraphs = "\n".join(lines).split("\n\n")
        twice += [
            f"{name}: {argument}"
            for argument in arguments
            for paragraph in paragraphs
            if paragraph.strip().startswith(f"``{argument}``:")
        ]
    assert twice == []


#: Code blocks whose lines are shown as they are: every kind but program output (``text``,
#: one line per message by design), diagrams' sources and reST directives.
SHOWN_CODE = re.compile(
    r"^```(python|pycon|sh|console|yaml|toml|ini|json|\{testcode\}|\{doctest\})\n(.*?)^```",
    re.MULTILINE | re.DOTALL,
)
#: What the text column of the docs shows of a code line at 1280 px wide (92 characters), with
#: a margin.
CODE_WIDTH = 88


def test_code_lines_fit_the_page() -> None:
    """No line of code in the docs is wider than the page's text column."""
    too_wide = [
        f"{page.relative_to(DOCS)}: {line}"
        for page in sorted(DOCS.rglob("*.md"))
        for _, code in SHOWN_CODE.findall(page.read_text())
        for line in code.splitlines()
        if len(line) > CODE_WIDTH
    ]
    assert too_wide == []


#: A table row in the Markdown sources, and the line under its header.
_RULE = re.compile(r"^\|\s*:?-")
#: Where a browser may break a cell's text: spaces, and after a hyphen.
_UNBREAKABLE = re.compile(r"[^\s-]*-|[^\s-]+")
#: What the text column holds at 1280 px, in characters of a table's narrowest layout: each
#: column as wide as its longest unbreakable piece, plus 3 for its padding. Measured in
#: Chromium: tables estimated at 98 and more overflowed the column, 97 and less fitted.
TABLE_WIDTH = 90


def tables(markdown: str) -> list[list[list[str]]]:
    """The Markdown tables outside code blocks: rows of cells (the rule line left out)."""
    found: list[list[list[str]]] = []
    lines, fenced = markdown.splitlines(), False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("|") or _RULE.match(line):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        if number > 0 and lines[number - 1].startswith("|"):
            found[-1].append(cells)
        else:
            found.append([cells])
    return found


def narrowest_width(rows: list[list[str]]) -> int:
    """The characters ``rows`` take at the least, as a browser lays the table out."""
    widths = [0] * len(rows[0])
    for row in rows:
        for column, cell in enumerate(row[: len(widths)]):
            text = re.sub(r"\]\([^)]*\)", "]", cell).replace("`", " ").replace("**", "")
            pieces = _UNBREAKABLE.findall(text) or [""]
            widths[column] = max(widths[column], *(len(p.strip("[]")) for p in pieces))
    return sum(width + 3 for width in widths)


def test_tables_fit_the_page() -> None:
    """No table in the docs is wider than the page's text column at 1280 px."""
    too_wide = [
        f"{page.relative_to(DOCS)}: {' | '.join(rows[0])} ({narrowest_width(rows)})"
        for page in sorted(DOCS.rglob("*.md"))
        for rows in tables(page.read_text())
        if narrowest_width(rows) > TABLE_WIDTH
    ]
    assert too_wide == []


#: A code line of a docstring, shown inside the reference's indented member blocks: 4
#: characters narrower than the page's text column.
DOCSTRING_CODE_WIDTH = CODE_WIDTH - 4


def docstring_code(doc: str) -> list[str]:
    """The lines of ``doc``'s literal blocks (after a ``::``) and doctest examples."""
    code: list[str] = []
    block_indent = None
    for line in doc.splitlines():
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and line.strip() and indent <= block_indent:
            block_indent = None
        if block_indent is not None or line.lstrip().startswith((">>> ", "... ")):
            code.append(line)
        if line.rstrip().endswith("::"):
            block_indent = indent
    return code


def test_docstring_examples_fit_the_reference() -> None:
    """No code line of a documented docstring is wider than the reference's member blocks."""
    too_wide = []
    for target in sorted(DOCUMENTED):
        module_name, _, name = target.rpartition(".")
        if "httpx2" in target and importlib.util.find_spec("httpx2") is None:
            continue  # httpx2 needs Python 3.11 or newer
        value = getattr(importlib.import_module(module_name), name)
        members = vars(value).values() if inspect.isclass(value) else ()
        documented = [
            value,
            *(m for m in members if inspect.isfunction(m) or isinstance(m, property)),
        ]
        docs = [inspect.getdoc(item) or "" for item in documented]
        too_wide += [
            f"{target}: {line}"
            for doc in docs
            for line in docstring_code(doc)
            if len(line) > DOCSTRING_CODE_WIDTH
        ]
    assert too_wide == []
