"""The public names: each module's ``__all__`` is what it exports, under its public path."""

from __future__ import annotations

import types

import pytest

import requests_emma
import requests_emma.testing

MODULES = [requests_emma, requests_emma.testing]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_all_is_exactly_the_public_names(module: types.ModuleType) -> None:
    """``__all__`` is sorted and equals the module's attributes minus private ones."""
    exported = sorted(
        name
        for name, value in ((name, getattr(module, name)) for name in dir(module))
        # Subpackages and ``from __future__ import annotations`` bind names without exporting.
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    )
    assert module.__all__ == exported


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_public_names_show_the_public_module(module: types.ModuleType) -> None:
    """Every exported class, exception and function has ``__module__`` set to the public one."""
    for name in module.__all__:
        assert getattr(module, name).__module__ == module.__name__, name
