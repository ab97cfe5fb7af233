"""Helpers for testing code that uses requests-emma.

- :class:`FakeEmmaServer`: a real emma look-alike on 127.0.0.1 to point ``EmmaAuth`` at.
- :func:`no_retry_waits`: run token-endpoint and ``EmmaSession`` retries without sleeping.
- :class:`FakeClock` and :func:`use_clock`: time that moves only when a test moves it, put
  on an ``EmmaAuth`` (and so on every ``EmmaSession`` on it) in one place.
- :func:`add_token_endpoints`: emma's token endpoints on a ``responses`` mock, for suites
  that mock HTTP with ``responses`` (:class:`FakeTokenEndpoints` is what it returns).

The ``emma_server`` pytest fixture (a running :class:`FakeEmmaServer`) comes with the
package: see :mod:`requests_emma.testing.pytest_plugin`.
"""

from __future__ import annotations

from ._clock import FakeClock, use_clock
from ._responses import FakeTokenEndpoints, add_token_endpoints
from ._server import FakeEmmaServer, RecordedRequest
from ._waits import no_retry_waits

__all__ = [
    "FakeClock",
    "FakeEmmaServer",
    "FakeTokenEndpoints",
    "RecordedRequest",
    "add_token_endpoints",
    "no_retry_waits",
    "use_clock",
]


# Tracebacks, reprs and the docs show the public path, not the private module.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
