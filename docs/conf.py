"""Sphinx configuration for the requests-emma documentation (MyST Markdown, furo).

``tox -e docs`` builds it with warnings as errors and runs every ``{doctest}`` and
``{testcode}`` example against an embedded :class:`~requests_emma.testing.FakeEmmaServer`
(see ``doctest_global_setup``), so the examples need no account and no network.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import requests_emma

project = "requests-emma"
author = "the requests-emma authors"
copyright = "requests-emma authors"  # noqa: A001 - the name Sphinx reads
release = requests_emma.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.graphviz",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", ".venv"]
root_doc = "index"

# Markdown: headings get anchors (so "page.md#a-heading" links are checked), and the
# ```{directive}``` fences cover autodoc, doctests and diagrams.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]



class _MystVersionOnly(logging.Filter):
    """MyST logs its whole ``MdParserConfig(...)`` at the start of every build: keep the version.

    ``myst_parser.sphinx_ext.main.create_myst_config`` logs it at INFO (``"myst v%s: %s"``),
    a screenful of settings each time ``tox -e docs`` runs a builder.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 2 and "myst v" in str(record.msg):
            record.msg, record.args = "myst v%s", record.args[:1]
        return True


# Sphinx's loggers are "sphinx." + the module's name.
logging.getLogger("sphinx.myst_parser.sphinx_ext.main").addFilter(_MystVersionOnly())

html_theme = "furo"
html_title = "requests-emma"

# The reference shows each name at its public path, and describes each argument once: types
# in the signature (not in a list of parameters of their own), and where reference.md has a
# table of an object's arguments or fields, that table (see _drop_tabled_arguments).
autodoc_typehints = "signature"
# A signature too long for one line lists its parameters one to a line.
python_maximum_signature_line_length = 88
autodoc_member_order = "bysource"
add_module_names = True

# Diagrams are rendered to SVG at build time by Graphviz's `dot`, with no network.
graphviz_output_format = "svg"

# Every doctest group starts with a fresh fake emma, and the environment points EmmaAuth()
# and EmmaSession() at it: the examples run as written, with no credentials.
doctest_global_setup = """
import os as _os
from requests_emma.testing import FakeEmmaServer as _FakeEmmaServer

_fake_emma = _FakeEmmaServer().start()
_os.environ.update(
    EMMA_API_URL=_fake_emma.base_url,
    EMMA_CLIENT_ID=_fake_emma.client_id,
    EMMA_CLIENT_SECRET=_fake_emma.client_secret,
)
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
    _os.environ.pop(_name, None)
"""
doctest_global_cleanup = """
_fake_emma.stop()
"""

# Types from other projects have no pages here (intersphinx would need the network), and
# private types are not documented: neither is a broken link.
nitpick_ignore_regex = [
    (r"py:class", r"(collections\.abc|contextlib|filelock|os|redis|requests|requests_oauthlib|responses|urllib3)\..*"),
    # EmmaHttpxAuth's client arguments, httpx2_token_transport's types: httpx and httpx2
    # have no Sphinx inventory here.
    (r"py:class", r"httpx\.(Client|AsyncClient)"),
    (r"py:class", r"httpx2\..*"),
    # Functions of the private cache modules that the caches' docstrings mention.
    (r"py:func", r"(default_directory|cache_key)"),
    (r"py:class", r"requests_emma\.(.*\.)?_\w+(\..*)?"),
    # EmmaSession's annotations: a private alias (seconds or a (connect, read) pair) and
    # urllib3's Retry, imported by its short name.
    (r"py:class", r"(Timeout|Retry)"),
]


_AUTODOC = re.compile(
    r"^\.\. auto(?:class|exception|function):: ([\w.]+)(?:\(.*\)(?: -> .*)?)?$"
)
_DESCRIBED = re.compile(r"``(\w+)``:")


def tabled_arguments(reference: str) -> dict[str, set[str]]:
    """The objects that ``reference`` (reference.md) autodocs with a table right after them
    (before the next heading or autodoc directive), and the names in its first column."""
    tabled: dict[str, set[str]] = {}
    current = None
    for line in reference.splitlines():
        directive = _AUTODOC.match(line.strip())
        if directive or line.startswith("#"):
            current = directive.group(1) if directive else None
        elif current and line.startswith("| ") and not line.startswith("| ---"):
            first_column = line.split("|")[1]
            tabled.setdefault(current, set()).update(re.findall(r"`(\w+)`", first_column))
    return tabled


_TABLED = tabled_arguments((Path(__file__).parent / "reference.md").read_text())


def _drop_tabled_arguments(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Leave out of the page a docstring paragraph that goes through arguments one by one
    (it starts with an argument's name in double backquotes and a colon) when reference.md
    describes them in a table: help() shows the docstring, the reference the table, and
    neither shows both."""
    tabled = _TABLED.get(name)
    if not tabled:
        return  # every other docstring as it is
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    kept = []
    for paragraph in paragraphs:
        described = _DESCRIBED.match(paragraph[0].strip()) if paragraph else None
        if paragraph and not (described and described.group(1) in tabled):
            kept += [*paragraph, ""]
    lines[:] = kept


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _drop_tabled_arguments)
