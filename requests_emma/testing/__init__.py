"""Helpers for testing code that uses requests-emma.

- :class:`FakeEmmaServer`: a real emma look-alike on 127.0.0.1 to point ``EmmaAuth`` at.
- :func:`no_retry_waits`: run token-endpoint and ``EmmaSession`` retries without sleeping.
- :func:`add_token_endpoints`: emma's token endpoints on a ``responses`` mock, for suites
  that mock HTTP with ``responses`` (:class:`FakeTokenEndpoints` is what it returns).

The ``emma_server`` pytest fixture (a running :class:`FakeEmmaServer`) comes with the
package: see :mod:`requests_emma.testing.pytest_plugin`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .. import _clock
from ._responses import FakeTokenEndpoints, add_token_endpoints
from ._server import FakeEmmaServer, RecordedRequest

__all__ = [
    "FakeEmmaServer",
    "FakeTokenEndpoints",
    "RecordedRequest",
    "add_token_endpoints",
    "no_retry_waits",
]


@contextlib.contextmanager
def no_retry_waits() -> Iterator[None]:
    """Within this block, retries happen without waiting between attempts.

    That is token-endpoint retries and ``EmmaSession``'s (with ``retries=<int>``; a urllib3
    ``Retry`` you pass waits as usual). Attempts, deadlines and errors behave as usual; only
    the backoff and ``Retry-After`` sleeps are skipped, so a test of your code does not sit
    through them. It applies to every thread.
    """
    previous = _clock.set_waits_enabled(False)
    try:
        yield
    finally:
        _clock.set_waits_enabled(previous)
