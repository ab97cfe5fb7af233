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

from collections.abc import Callable


class Send:
    """Post ``body()`` to the token endpoint at ``path`` before ``deadline``.

    ``body`` builds the JSON body when called, inside the transport's call, so that no frame
    of ours holds the client secret or a refresh token in plain text for a traceback to show.
    """

    __slots__ = ("body", "deadline", "path")

    def __init__(self, path: str, body: Callable[[], dict[str, str]], deadline: float) -> None:
        self.path = path
        self.body = body
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"Send({self.path!r}, deadline={self.deadline!r})"


class Sleep:
    """Wait ``seconds`` before the next attempt."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Sleep({self.seconds!r})"


class Lock:
    """Take the shared cache's lock for ``key``, waiting at most ``timeout`` seconds."""

    __slots__ = ("key", "timeout")

    def __init__(self, key: str, timeout: float) -> None:
        self.key = key
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Lock(timeout={self.timeout!r})"


class Load:
    """Read the shared cache's entry for ``key``."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return "Load()"


class Save:
    """Store the sealed ``data`` under ``key``, of use for ``ttl`` seconds."""

    __slots__ = ("data", "key", "ttl")

    def __init__(self, key: str, data: bytes, ttl: float) -> None:
        self.key = key
        self.data = data
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"Save(ttl={self.ttl!r})"


class Unlock:
    """Release the lock the last :class:`Lock` step took."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return "Unlock()"


Step = Send | Sleep | Lock | Load | Save | Unlock
#: Each step's answer: an Outcome for Send, bytes or None for Load, None for the rest.
Answer = object
