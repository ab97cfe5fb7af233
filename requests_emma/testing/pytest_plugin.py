"""The requests-emma pytest plugin: an ``emma_server`` fixture.

Installing requests-emma registers this module with pytest (the ``pytest11`` entry point,
plugin name ``requests_emma``), so any test can ask for ``emma_server``. ``-p
no:requests_emma`` turns it off.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import FakeEmmaServer


@pytest.fixture
def emma_server() -> Iterator[FakeEmmaServer]:
    """A running :class:`~requests_emma.testing.FakeEmmaServer`, stopped after the test.

    Point the code under test at ``emma_server.base_url`` with ``emma_server.client_id``
    and ``emma_server.client_secret``.
    """
    with FakeEmmaServer() as server:
        yield server
