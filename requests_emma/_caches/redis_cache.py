""":class:`RedisTokenCache`: a token cache in Redis, for fleets that span several hosts.

An entry is one Redis string, ``<prefix><key>``, holding a sealed entry (opaque bytes:
nobody without the client secret can read or forge it) in base64, so that a client made
with ``decode_responses=True`` reads it too, set with the TTL the library gives, so Redis
drops it when nothing in it is of use any more. The lock is a
redis-py :class:`redis.lock.Lock` on ``<prefix><key>:lock`` with two bounds:

- ``lock_timeout``: the lock's own TTL. A holder that dies (SIGKILL, a lost host) cannot
  block the others for longer than this. It must outlast a renewal (the ``RetryPolicy``
  deadline, 30 s by default), or a slow renewal would let a second process in;
- ``blocking_timeout``: the longest a waiter tries before ``lock()`` raises; a renewal
  waits no longer than its own deadline allows either.

An outage raises a redis-py error (``ConnectionError``, ``TimeoutError``), which
``EmmaAuth`` logs before carrying on with its in-memory token. A lock another process keeps
for the whole wait raises :class:`LockNotAcquired` instead, a ``LockError`` that is also the
builtin ``TimeoutError``: not an outage, but another process renewing. To keep an outage's
delay small, :meth:`RedisTokenCache.from_url` sets short socket timeouts and one quick retry;
a client you build yourself keeps its own settings.

This module, and redis-py with it, loads at the first use of :class:`RedisTokenCache`, so
``import requests_emma`` works without redis-py; making a cache without it says how to get
it (``pip install 'requests-emma[redis]'``).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from .._core.durations import seconds
from .._core.secret import Secret
from .._core.urls import host_in_url
from .._errors import without_tracebacks
from .protocol import LOCK_TIMEOUT

try:  # at runtime too, so that the annotations naming it resolve
    import redis

    class LockNotAcquired(redis.exceptions.LockError, TimeoutError):
        """Another holder kept the Redis lock for the whole wait: both redis-py's
        ``LockError`` and the ``TimeoutError`` the :class:`~requests_emma.TokenCache`
        protocol asks for."""

except ImportError:  # RedisTokenCache() says how to install it
    pass

logger = logging.getLogger("requests_emma")

DEFAULT_PREFIX = "requests-emma:token:"
#: Socket and connect timeouts of :meth:`RedisTokenCache.from_url`, in seconds: a Redis
#: on the same network answers in milliseconds; an outage costs about twice this.
DEFAULT_SOCKET_TIMEOUT = 0.5
#: How often a waiter tries to take the Redis lock, in seconds.
LOCK_POLL = 0.02


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ImportError(
            "RedisTokenCache needs redis-py: pip install 'requests-emma[redis]'"
        ) from None
    return redis


class RedisTokenCache:
    """A :class:`~requests_emma.TokenCache` in Redis, shared by processes on any host.

    ``client`` is a ``redis.Redis`` (or a client with the same ``get``, ``set`` and
    ``lock``); see :meth:`from_url` for one with short timeouts. Keys are ``prefix`` plus
    the cache key. ``lock_timeout`` bounds how long a dead holder keeps the lock and
    ``blocking_timeout`` how long ``lock()`` waits for it; both must be positive, and
    ``lock_timeout`` should outlast a renewal (the ``RetryPolicy`` deadline).

    The ``repr`` shows the Redis location only, never a password.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_timeout: float = LOCK_TIMEOUT,
        blocking_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        _import_redis()
        missing = [
            name for name in ("get", "set", "lock") if not callable(getattr(client, name, None))
        ]
        if missing:
            raise ValueError(
                f"client has no {', '.join(missing)} method: pass a redis.Redis "
                f"(or use RedisTokenCache.from_url), got a {type(client).__name__}"
            )
        self.prefix, self.lock_timeout, self.blocking_timeout = _settings(
            prefix, lock_timeout, blocking_timeout
        )
        self.client = client
        self._location = _location_of(client)
        self._made_from: tuple[Secret, dict[str, Any]] | None = None  # from_url's arguments

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_timeout: float = LOCK_TIMEOUT,
        blocking_timeout: float = LOCK_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        **redis_options: Any,
    ) -> RedisTokenCache:
        """A cache on a new ``redis.Redis.from_url(url)`` client with short timeouts.

        ``url`` is ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
        ``unix://path``. ``socket_timeout`` is used for connecting and for each command,
        and a failed command is retried once at once, so an outage adds about two
        ``socket_timeout`` to a renewal. ``redis_options`` go to redis-py as they are.
        """
        # First: from here on no frame holds the URL, and the password it may hold, in plain
        # text for a traceback of an error below (shown with its locals by pytest -l or
        # Sentry) to show.
        secret_url = Secret(url)
        del url
        redis_module = _import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if not isinstance(secret_url.reveal(), str):
            raise ValueError(f"url must be a str, got a {secret_url.kind().__name__}")  # noqa: TRY004
        timeout = seconds("socket_timeout", socket_timeout, positive=True)
        # Checked before there is a client, which holds the password.
        _settings(prefix, lock_timeout, blocking_timeout)
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # redis-py's default retries ten times with backoff up to a second: seconds of
            # stall on an outage. One immediate retry covers a connection gone stale.
            "retry": Retry(NoBackoff(), 1),
            **redis_options,
        }
        failure: Exception | None = None
        try:
            client = redis_module.Redis.from_url(secret_url.reveal(), **options)
        except Exception as exc:  # noqa: BLE001 - raised below, outside this handler
            # Its frames (redis-py's) hold the URL: it leaves without them, and is not the
            # context of an error raised in here.
            failure = without_tracebacks(exc)
        if failure is not None:
            if not isinstance(failure, (ValueError, TypeError)):
                raise failure  # e.g. a ConnectionError: single_connection_client connects now
            if not _is_redis_url(secret_url):
                # redis-py's message may repeat part of the URL, password included.
                raise ValueError(
                    "url is not a Redis URL: use redis://host:port/db, rediss://host:port/db "
                    "or unix:///path/to/socket"
                )
            given = f" ({', '.join(sorted(redis_options))})" if redis_options else ""
            reason = "" if _shows_password(str(failure), secret_url) else f": {failure}"
            raise ValueError(f"redis-py could not make a client with these options{given}{reason}")
        cache = cls(
            client, prefix=prefix, lock_timeout=lock_timeout, blocking_timeout=blocking_timeout
        )
        cache._location = _location_of_url(secret_url.reveal())
        cache._made_from = (
            secret_url,  # it may hold a password: keep it out of reprs and tracebacks
            {
                "prefix": prefix,
                "lock_timeout": lock_timeout,
                "blocking_timeout": blocking_timeout,
                "socket_timeout": socket_timeout,
                **redis_options,
            },
        )
        return cache

    def __reduce__(self) -> tuple[Any, ...]:
        # A Redis client holds sockets and locks: a cache made by from_url crosses a process
        # boundary (pickle, as EmmaAuth does) as its arguments and gets a new client there.
        if self._made_from is None:
            raise TypeError(
                "a RedisTokenCache around your own client cannot be pickled: "
                "make it with RedisTokenCache.from_url(...) to send it to other processes"
            )
        url, options = self._made_from
        return (_from_url, (url, options))

    def __repr__(self) -> str:
        # Of any instance, one whose __init__ raised included (a traceback shown with its
        # locals reprs that ``self``).
        if not hasattr(self, "_location"):
            return "RedisTokenCache(<not fully constructed>)"
        return f"RedisTokenCache({self._location}, prefix={self.prefix!r})"

    def load(self, key: str) -> bytes | None:
        """The entry saved under ``key``, or ``None`` if there is none.

        Raises redis-py's ``ConnectionError`` or ``TimeoutError`` when Redis is not there.
        """
        data = self.client.get(self.prefix + key)
        if isinstance(data, str):  # a client made with decode_responses=True
            data = data.encode("ascii", "replace")
        if not isinstance(data, bytes):
            return None
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:  # not ours: the library treats it as absent
            return b""

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        """Store ``entry`` under ``key``, dropped by Redis after ``ttl`` seconds; with
        ``ttl <= 0`` (nothing in it of use), delete the old entry instead."""
        ttl_ms = math.ceil(ttl * 1000)
        if ttl_ms <= 0:
            self.client.delete(self.prefix + key)
            return
        self.client.set(self.prefix + key, base64.b64encode(entry), px=ttl_ms)

    def lock(
        self, key: str, timeout: float = LOCK_TIMEOUT
    ) -> contextlib.AbstractContextManager[object]:
        """The Redis lock for ``key``. Entering it raises an error that is both a
        ``redis.exceptions.LockError`` and a ``TimeoutError`` after ``timeout`` seconds, or
        ``blocking_timeout`` if that is shorter; a connection error when Redis is not there."""
        return self._locked(
            self.prefix + key + ":lock", max(0.0, min(timeout, self.blocking_timeout))
        )

    @contextlib.contextmanager
    def _locked(self, name: str, blocking_timeout: float) -> Iterator[object]:
        lock = self.client.lock(
            name,
            timeout=self.lock_timeout,
            blocking_timeout=blocking_timeout,
            # redis-py polls every 0.1 s by default: with a fleet waiting at a cold start,
            # each waiter in turn then costs up to that. A try is one SET NX.
            sleep=LOCK_POLL,
        )
        if not lock.acquire():
            raise LockNotAcquired(f"token cache lock not acquired within {blocking_timeout:g} s")
        try:
            yield lock
        finally:
            try:
                lock.release()
            except redis.RedisError as error:
                # The renewal is done; the lock expires by itself within lock_timeout. An
                # error here must not fail the request that renewed.
                logger.warning(
                    "token cache: could not release the Redis lock (%s); it expires within %g s",
                    type(error).__name__,
                    self.lock_timeout,
                )


def _from_url(url: Secret, options: dict[str, Any]) -> RedisTokenCache:
    return RedisTokenCache.from_url(url.reveal(), **options)


def _settings(
    prefix: str, lock_timeout: float, blocking_timeout: float
) -> tuple[str, float, float]:
    """The checked ``prefix``, ``lock_timeout`` and ``blocking_timeout``."""
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a str, got a {type(prefix).__name__}")  # noqa: TRY004
    return (
        prefix,
        seconds("lock_timeout", lock_timeout, positive=True),
        seconds("blocking_timeout", blocking_timeout, positive=True),
    )


def _is_redis_url(url: Secret) -> bool:
    """Whether redis-py reads ``url`` as a Redis URL (so an error came from the options)."""
    from redis import connection

    parse: Callable[[str], object] = connection.parse_url  # untyped in redis-py
    try:
        parse(url.reveal())
    except ValueError:
        return False
    return True


def _shows_password(text: str, url: Secret) -> bool:
    """Whether ``text`` shows the user name and password part of ``url``."""
    userinfo = urllib.parse.urlsplit(url.reveal()).netloc.rpartition("@")[0]
    return bool(userinfo) and any(part and part in text for part in userinfo.split(":"))


def _location_of_url(url: str) -> str:
    """``url`` without user name and password (and without its query string)."""
    parts = urllib.parse.urlsplit(url)
    host = host_in_url(parts.hostname or "")
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _location_of(client: object) -> str:
    """Where ``client`` connects, from its connection pool's settings; never a password."""
    pool = getattr(client, "connection_pool", None)
    settings = getattr(pool, "connection_kwargs", None)
    if not isinstance(settings, dict):
        return type(client).__name__
    if settings.get("path"):
        return f"unix://{settings['path']}?db={settings.get('db', 0)}"
    host = host_in_url(str(settings.get("host", "localhost")))
    return f"redis://{host}:{settings.get('port', 6379)}/{settings.get('db', 0)}"
