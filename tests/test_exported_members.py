"""The public names: each module's ``__all__`` is what it exports, under its public path."""

from __future__ import annotations

import importlib.util
import inspect
import types
import typing

import pytest

import requests_emma
import requests_emma.aiohttp
import requests_emma.testing

MODULES = [requests_emma, requests_emma.testing, requests_emma.aiohttp]
#: Public names loaded on first use that need an extra only some Pythons can install.
NEEDS_HTTPX2 = {"EmmaHttpx2Auth", "httpx2_token_transport"}
HAS_HTTPX2 = importlib.util.find_spec("httpx2") is not None


def _names(module: types.ModuleType, names: list[str]) -> list[str]:
    """``names`` less those that need httpx2 where it is not installed (Python 3.10)."""
    return [name for name in names if HAS_HTTPX2 or name not in NEEDS_HTTPX2]


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_all_is_exactly_the_public_names(module: types.ModuleType) -> None:
    """``__all__`` is sorted and equals the module's attributes minus private ones."""
    exported = sorted(
        name
        for name, value in ((name, getattr(module, name)) for name in _names(module, dir(module)))
        # Subpackages and ``from __future__ import annotations`` bind names without exporting.
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    )
    assert _names(module, module.__all__) == exported


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_public_names_show_the_public_module(module: types.ModuleType) -> None:
    """Every exported class, exception and function has ``__module__`` set to the public one."""
    for name in _names(module, module.__all__):
        assert getattr(module, name).__module__ == module.__name__, name


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_public_annotations_resolve_at_runtime(module: types.ModuleType) -> None:
    """``typing.get_type_hints`` resolves every public callable's annotations (as pydantic,
    typer or Sphinx do), so no name in them is imported for type checkers only."""
    for name in _names(module, module.__all__):
        value = getattr(module, name)
        if not inspect.isclass(value):
            if callable(value):
                typing.get_type_hints(value)
            continue
        for member_name, member in vars(value).items():
            function = getattr(member, "__func__", member)  # a classmethod's function too
            if inspect.isfunction(function) and (
                member_name == "__init__" or member_name[0] != "_"
            ):
                typing.get_type_hints(function)
