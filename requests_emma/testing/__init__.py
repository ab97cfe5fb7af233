"""Helpers for testing code that uses requests-emma.

- :class:`FakeEmmaServer`: a real emma look-alike on 127.0.0.1 to point ``EmmaAuth`` at.
- :func:`no_retry_waits`: run token-endpoint and ``EmmaSession`` retries without sleeping.
- :class:`FakeClock` and :func:`use_clock`: time that moves only when a test moves it, put
  on an ``EmmaAuth`` (and so on every ``EmmaSession`` on it) in one place.
- :func:`add_token_endpoints`: emma's token endpoints on a ``responses`` mock, for suites
  that mock HTTP with ``responses`` (:class:`FakeTokenEndpoints` is what it returns).
- :func:`add_respx_token_endpoints`: the same on a respx router, for suites that mock httpx
  with respx. It is loaded at its first use, as it imports httpx.

The ``emma_server`` pytest fixture (a running :class:`FakeEmmaServer`) comes with the
package: see :mod:`requests_emma.testing.pytest_plugin`.
"""

from __future__ import annotations

import typing

from ._clock import FakeClock, use_clock
from ._responses import FakeTokenEndpoints, add_token_endpoints
from ._server import FakeEmmaServer, RecordedRequest
from ._waits import no_retry_waits

if typing.TYPE_CHECKING:
    from ._respx import add_respx_token_endpoints

__all__ = [
    "FakeClock",
    "FakeEmmaServer",
    "FakeTokenEndpoints",
    "RecordedRequest",
    "add_respx_token_endpoints",
    "add_token_endpoints",
    "no_retry_waits",
    "use_clock",
]

#: Public names loaded at first use (PEP 562): they import httpx, which
#: ``requests_emma.testing`` (loaded by the pytest plugin in every test run) does not need.
_LAZY = {"add_respx_token_endpoints": "._respx"}


def _public(value: typing.Any) -> typing.Any:
    # Tracebacks, reprs and the docs show the public path, not the private module.
    value.__module__ = __name__
    return value


for _name in __all__:
    if _name not in _LAZY:
        _public(globals()[_name])
del _name


def __getattr__(name: str) -> typing.Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = _public(getattr(importlib.import_module(_LAZY[name], __name__), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
