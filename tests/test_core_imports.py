"""The core (``requests_emma._core``) stays pure: none of its modules imports the HTTP,
network or concurrency stack (requests, urllib3, httpx, anyio, asyncio, socket, threading),
none sleeps, and importing one in a fresh interpreter loads none of them, except through the
three doors the design leaves open, each checked to be the one that let it in:

- ``requests_emma._errors``: the exception root subclasses ``requests.RequestException``, so
  that ``except requests.RequestException`` catches auth failures; it brings requests (and
  urllib3, socket, threading with it);
- ``tenacity``: the retry decider the design keeps; it imports threading;
- ``logging``: the one ``requests_emma`` logger the design asks for; it imports threading for
  its module lock. The core may log (what happened, with numbers), never lock or wait.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import requests_emma

PACKAGE = Path(requests_emma.__file__).parent
CORE = PACKAGE / "_core"
MODULES = sorted(path.stem for path in CORE.glob("*.py") if path.stem != "__init__")
STACK = ("requests", "urllib3", "httpx", "anyio", "asyncio", "socket", "threading")
DOORS = ("requests_emma._errors", "tenacity", "logging")

_PROBE = """
import importlib, json, sys, types

package = types.ModuleType("requests_emma")  # the core alone: not the package's __init__
package.__path__ = [sys.argv[1]]
sys.modules["requests_emma"] = package
stack, doors, let_in = set(sys.argv[3].split(",")), tuple(sys.argv[4].split(",")), {}


def door(frame):
    while frame is not None:
        name = frame.f_globals.get("__name__") or ""
        if name in doors or name.startswith(tuple(d + "." for d in doors)):
            return name
        frame = frame.f_back
    return None


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in stack and name not in sys.modules:
            let_in.setdefault(name, door(sys._getframe(1)))
        return None


before = set(sys.modules)
sys.meta_path.insert(0, Watch())
importlib.import_module("requests_emma._core." + sys.argv[2])
new = sorted(name for name in set(sys.modules) - before if name in stack)
print(json.dumps({name: let_in.get(name) for name in new}))
"""


def _imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions and TYPE_CHECKING too),
    relative imports written out in full."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "requests_emma._core".rsplit(".", node.level - 1)[0]
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module or "")
    return names


def _sleeps(path: Path) -> list[int]:
    """The lines of ``path`` that call a ``sleep`` (``time.sleep(...)``, ``sleep(...)``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "sleep"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"time", "asyncio", "anyio", "trio"}
            )
            or (isinstance(node.func, ast.Name) and node.func.id == "sleep")
        )
    ]


@pytest.mark.parametrize("module", MODULES)
def test_a_core_module_imports_none_of_the_stack(module: str) -> None:
    """No import statement in a core module names requests, urllib3, httpx, anyio, asyncio,
    socket or threading."""
    stack = {name for name in _imported_names(CORE / f"{module}.py") if name.split(".")[0] in STACK}
    assert stack == set()


@pytest.mark.parametrize("module", MODULES)
def test_a_core_module_does_not_sleep(module: str) -> None:
    """No core module calls time.sleep (or asyncio's, anyio's, trio's): the drivers wait."""
    assert _sleeps(CORE / f"{module}.py") == []


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_core_module_loads_the_stack_only_through_a_door(module: str) -> None:
    """Imported alone in a fresh interpreter, a core module loads none of the stack, except
    what requests_emma._errors, tenacity or logging import themselves."""
    probe = [sys.executable, "-c", _PROBE, str(PACKAGE), module, ",".join(STACK), ",".join(DOORS)]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    let_in = json.loads(result.stdout)
    assert {name: door for name, door in let_in.items() if door is None} == {}
