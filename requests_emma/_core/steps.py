"""The steps a renewal asks its driver to carry out, and what each one answers.

The renewal (``_core/renewal.py``) is a generator: it decides, and yields a step whenever it
needs the outside world; the driver (requests, ``httpx.Client``, ``httpx.AsyncClient``)
carries the step out and sends back its result, or throws in the exception it raised. The
steps are plain data, so a test can run a renewal by hand, step by step, with no server.

=================  ===================================  ======================================
step               the driver does                      and sends back (or throws)
=================  ===================================  ======================================
:class:`Send`      one POST to ``path``, bounded by     the :class:`~.outcome.Outcome` (a
                   ``deadline`` (monotonic)             transport never raises for the network)
:class:`Sleep`     waits ``seconds``                    ``None``
:class:`Lock`      takes the shared cache's lock for    ``None``; ``TimeoutError`` when another
                   ``key``, waiting at most ``timeout``  holder kept it, any other exception for
                                                        an outage
:class:`Load`      reads the cache entry under ``key``  its bytes or ``None``; an exception for
                                                        an outage
:class:`Save`      stores ``data`` under ``key`` for    ``None``; an exception for an outage
                   ``ttl`` seconds
:class:`Unlock`    releases the lock ``Lock`` took      ``None``; an exception for an outage
=================  ===================================  ======================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

# Steps are frozen, slotted dataclasses; the fields left out of their reprs are the ones a
# log or a traceback must not show (a body builder, a cache key, sealed data).


@dataclasses.dataclass(frozen=True, slots=True)
class Send:
    """Post ``body()`` to the token endpoint at ``path`` before ``deadline``.

    ``body`` builds the JSON body when called, inside the transport's call, so that no frame
    of ours holds the client secret or a refresh token in plain text for a traceback to show.
    """

    path: str
    body: Callable[[], dict[str, str]] = dataclasses.field(repr=False)
    deadline: float


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before the next attempt."""

    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Lock:
    """Take the shared cache's lock for ``key``, waiting at most ``timeout`` seconds."""

    key: str = dataclasses.field(repr=False)
    timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """Read the shared cache's entry for ``key``."""

    key: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Save:
    """Store the sealed ``data`` under ``key``, of use for ``ttl`` seconds."""

    key: str = dataclasses.field(repr=False)
    data: bytes = dataclasses.field(repr=False)
    ttl: float


@dataclasses.dataclass(frozen=True, slots=True)
class Unlock:
    """Release the lock the last :class:`Lock` step took."""

    key: str = dataclasses.field(repr=False)


Step = Send | Sleep | Lock | Load | Save | Unlock
