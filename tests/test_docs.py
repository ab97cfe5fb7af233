"""The documentation keeps up with the code: every public name has a reference entry."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

import requests_emma
import requests_emma.testing

REFERENCE = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()
AUTODOC = re.compile(r"^\.\. auto(?:class|exception|function):: ([\w.]+)$", re.MULTILINE)
DOCUMENTED = set(AUTODOC.findall(REFERENCE))


@pytest.mark.parametrize("module", [requests_emma, requests_emma.testing], ids=lambda m: m.__name__)
def test_every_public_name_is_in_the_reference(module: types.ModuleType) -> None:
    """docs/reference.md autodocs each name of __all__, at its public path."""
    names = {f"{module.__name__}.{name}" for name in module.__all__}
    assert names - DOCUMENTED == set()
