"""Helpers for testing code that uses requests-emma.

- :class:`FakeEmmaServer`: a real emma look-alike on 127.0.0.1 to point ``EmmaAuth`` at.
- :func:`no_retry_waits`: run token-endpoint and ``EmmaSession`` retries without sleeping.
- :class:`FakeClock` and :func:`use_clock`: time that moves only when a test moves it, put
  on an ``EmmaAuth`` (and so on every ``EmmaSession`` on it) in one place.
- :func:`add_token_endpoints`: emma's token endpoints on a ``responses`` mock, for suites
  that mock HTTP with ``responses`` (:class:`FakeTokenEndpoints` is what it returns).
- :func:`add_respx_token_endpoints`: the same on a respx router, for suites that mock httpx
  with respx. It is loaded at its first use, as it imports httpx.
- :func:`httpx2_token_transport`: an ``httpx2.MockTransport`` that answers them, for suites
  that mock httpx2 (respx does not intercept it). Loaded at its first use.

The ``emma_server`` pytest fixture (a running :class:`FakeEmmaServer`) comes with the
package: see :mod:`requests_emma.testing.pytest_plugin`.
"""

from __future__ import annotations

import typing

from .. import _exports
from ._clock import FakeClock, use_clock
from ._responses import FakeTokenEndpoints, add_token_endpoints
from ._server import FakeEmmaServer, RecordedRequest
from ._waits import no_retry_waits

if typing.TYPE_CHECKING:
    from ._httpx2 import httpx2_token_transport
    from ._respx import add_respx_token_endpoints

__all__ = [
    "FakeClock",
    "FakeEmmaServer",
    "FakeTokenEndpoints",
    "RecordedRequest",
    "add_respx_token_endpoints",
    "add_token_endpoints",
    "httpx2_token_transport",
    "no_retry_waits",
    "use_clock",
]

#: Public names loaded at first use (PEP 562): they import httpx or httpx2, which
#: ``requests_emma.testing`` (loaded by the pytest plugin in every test run) does not need.
_LAZY = {"add_respx_token_endpoints": "._respx", "httpx2_token_transport": "._httpx2"}


__getattr__, __dir__ = _exports.exports(globals(), _LAZY)
