"""The documentation keeps up with the code: every public name has a reference entry."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pytest

import requests_emma
import requests_emma.oauthlib
import requests_emma.testing

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE = (DOCS / "reference.md").read_text()
AUTODOC = re.compile(r"^\.\. auto(?:class|exception|function):: ([\w.]+)$", re.MULTILINE)
DOCUMENTED = set(AUTODOC.findall(REFERENCE))


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
