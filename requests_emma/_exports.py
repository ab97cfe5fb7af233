"""Public names of a package, some loaded at first use (PEP 562).

``requests_emma`` and ``requests_emma.testing`` both export names that import something
heavy (httpx, filelock) that most programs never need; :func:`exports` gives such a package
the module ``__getattr__`` and ``__dir__`` that load them when first asked for, and shows
every exported name under the package's path rather than its private module's (tracebacks,
reprs, the docs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    namespace: dict[str, Any], lazy: Mapping[str, str | Callable[[], object]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package whose ``globals()`` is ``namespace``.

    ``lazy`` maps a name to what gives its value at first use: the module (relative to the
    package) a name of ``__all__`` is loaded from, or a function that makes the value
    (``__version__``). The names of ``__all__`` already in ``namespace`` are made public now.
    """
    package = namespace["__name__"]
    for name in set(namespace["__all__"]) - set(lazy):
        namespace[name].__module__ = package

    def __getattr__(name: str) -> Any:
        if name not in lazy:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source = lazy[name]
        if callable(source):
            value = source()
        else:
            value = getattr(importlib.import_module(source, package), name)
            value.__module__ = package
        namespace[name] = value  # the next lookup finds it without this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *lazy})

    return __getattr__, __dir__
