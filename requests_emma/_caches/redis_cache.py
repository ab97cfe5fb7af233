""":class:`RedisTokenCache`: a token cache in Redis, for fleets that span several hosts.

An entry is one Redis string, ``<prefix>{<key>}``, holding a sealed entry (opaque bytes:
nobody without the client secret can read or forge it) in base64, so that a client made
with ``decode_responses=True`` reads it too, set with the TTL the library gives, so Redis
drops it when nothing in it is of use any more. The lock is the client's own lock
(redis-py's or valkey-py's ``Lock``) on ``<prefix>{<key>}:lock``; the braces are a Cluster
hash tag, so an entry and its lock always live on the same node. Two bounds:

- ``lock_timeout``: the lock's TTL. A holder that dies (SIGKILL, a lost host) blocks the
  others no longer than this: 35 s, the ``RetryPolicy`` deadline (30 s) and time to save, so
  a dead holder costs the fleet one renewal's time. A lock found with no TTL, or a longer
  one (another program, a ``PERSIST``), is given this TTL by the first waiter;
- ``blocking_timeout``: the longest a waiter tries before ``lock()`` raises; a renewal
  waits no longer than its own deadline allows either.

An outage raises the client's error (``ConnectionError``, ``TimeoutError``), which the
renewal logs before carrying on with its in-memory token. A lock another process keeps for
the whole wait raises :class:`LockNotAcquired`, a ``LockError`` that is also the builtin
``TimeoutError``: not an outage, but another process renewing. A refusal with a known cause
(a full Redis, a command the ACL user may not run, a Cluster node reached without a Cluster
client) is not an outage either, and no retry mends it: the cache logs one WARNING naming
the cause and what to change, and carries on as if it held nothing (the renewal then works
as with no cache), until the cause is gone. Errors are told apart by what they mean (their
class names and Redis's reply), so valkey-py's work as redis-py's do. A failed release (a
refusal, a network blip) never fails the request that renewed: without the scripting
permission the lock is released by ``GET`` and ``DEL``, otherwise it expires with its TTL.

:meth:`RedisTokenCache.from_url` sets short socket timeouts and one quick retry, so an
outage costs little; a client you build yourself keeps its own settings. It builds a
Cluster client for ``redis+cluster://`` and a Sentinel one for ``redis+sentinel://``.

This module, and redis-py with it (or valkey-py, where redis-py is not installed), loads at
the first use of :class:`RedisTokenCache`, so ``import requests_emma`` works without
either; making a cache without them says how to get one.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import logging
import math
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

from .._core.durations import seconds
from .._core.secret import Secret
from .._core.urls import host_in_url
from .._errors import without_tracebacks
from .protocol import LOCK_TIMEOUT, MAX_ENTRY_BYTES, lacking


def _client_library() -> Any:
    """redis-py, or valkey-py (its fork, with the same API and the same names) without it."""
    for name in ("redis", "valkey"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    return None


_LIBRARY = _client_library()
if _LIBRARY is not None:
    _LockError: Any = _LIBRARY.exceptions.LockError

    class LockNotAcquired(_LockError, TimeoutError):  # type: ignore[misc]
        """Another holder kept the Redis lock for the whole wait: both the client library's
        ``LockError`` and the ``TimeoutError`` the :class:`~requests_emma.TokenCache`
        protocol asks for."""


logger = logging.getLogger("requests_emma")

DEFAULT_PREFIX = "requests-emma:token:"
#: Socket and connect timeouts of :meth:`RedisTokenCache.from_url`, in seconds: a Redis
#: on the same network answers in milliseconds; an outage costs about twice this.
DEFAULT_SOCKET_TIMEOUT = 0.5
#: How often a waiter tries to take the Redis lock, in seconds.
LOCK_POLL = 0.02
#: The lock's TTL: the ``RetryPolicy`` deadline (30 s by default) and 5 s to save and unlock.
LOCK_TTL = 35.0
#: The most of a value ``load`` reads: an entry in base64, and one byte to tell a longer one.
_MAX_STORED = math.ceil(MAX_ENTRY_BYTES / 3) * 4 + 1

#: What a refusal means, by the names of the error's classes in redis-py and valkey-py, or
#: the first word of Redis's reply (a client may map it to no class of its own).
_REFUSALS = {
    ("MovedError", "AskError", "MOVED", "ASK"): (
        "it is a Redis Cluster node (it answered MOVED or ASK): write redis+cluster://host:port "
        "for RedisTokenCache.from_url, or pass a RedisCluster client"
    ),
    ("OutOfMemoryError", "OOM"): (
        "Redis is full (maxmemory, with the noeviction policy): free memory, raise maxmemory or "
        "choose an evicting maxmemory-policy"
    ),
    ("NoPermissionError", "NOPERM"): (
        "the ACL user may not {what}: grant it (the minimal ACL: +get +getrange +set +del +pttl "
        "+pexpire +evalsha +script|load on ~{prefix}*)"
    ),
}


def _library_or_fail() -> Any:
    if _LIBRARY is None:
        raise ImportError(
            "RedisTokenCache needs redis-py or valkey-py: pip install 'requests-emma[redis]' "
            "(or 'requests-emma[valkey]')"
        )
    return _LIBRARY


class RedisTokenCache:
    """A :class:`~requests_emma.TokenCache` in Redis (or Valkey), shared by processes on any
    host.

    ``client`` is a ``redis.Redis``, a ``redis.RedisCluster``, a Sentinel ``master_for``
    client, or valkey-py's counterparts (any client with the same ``get``, ``set`` and
    ``lock``); see :meth:`from_url` for one with short timeouts. Keys are ``prefix`` plus
    the cache key in braces. ``lock_timeout`` is the lock's TTL, the longest a dead holder
    keeps it, and should outlast a renewal (the ``RetryPolicy`` deadline);
    ``blocking_timeout`` is how long ``lock()`` waits for it. Both must be positive.

    The ``repr`` shows the Redis location only (for Sentinel, the service and its
    sentinels), never a password.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_timeout: float = LOCK_TTL,
        blocking_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        _library_or_fail()
        missing = lacking(client, "get", "set", "lock")
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
        self._told: set[str] = set()  # the refusals already explained in a WARNING

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_timeout: float = LOCK_TTL,
        blocking_timeout: float = LOCK_TIMEOUT,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        **redis_options: Any,
    ) -> RedisTokenCache:
        """A cache on a new client for ``url``, with short timeouts.

        ``url`` is ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
        ``unix://path``; ``redis+cluster://[[user]:password@]host:port`` (any node) for a
        Redis Cluster; ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
        for the master Sentinel names ``service`` (the user and password are the master's).
        ``rediss+cluster://`` and ``rediss+sentinel://`` use TLS. Options in the query string
        (``?ssl_ca_certs=/path/ca.pem``) are redis-py's. ``socket_timeout`` is used for
        connecting and for each command, and a failed command is retried once at once, so an
        outage adds about two ``socket_timeout`` to a renewal. ``redis_options`` go to the
        client as they are.
        """
        # First: from here on no frame holds the URL, and the password it may hold, in plain
        # text for a traceback of an error below (shown with its locals by pytest -l or
        # Sentry) to show.
        secret_url = Secret(url)
        del url
        library = _library_or_fail()
        if not isinstance(secret_url.reveal(), str):
            raise ValueError(f"url must be a str, got a {secret_url.kind().__name__}")  # noqa: TRY004
        timeout = seconds("socket_timeout", socket_timeout, positive=True)
        settings: dict[str, Any] = {
            "prefix": prefix,
            "lock_timeout": lock_timeout,
            "blocking_timeout": blocking_timeout,
        }
        _settings(**settings)  # checked before there is a client, which holds the password
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # redis-py's default retries ten times with backoff up to a second: seconds of
            # stall on an outage. One immediate retry covers a connection gone stale.
            "retry": library.retry.Retry(library.backoff.NoBackoff(), 1),
            **redis_options,
        }
        failure: Exception | None = None
        try:
            client = _client_for(library, secret_url, options)
        except Exception as exc:  # noqa: BLE001 - raised below, outside this handler
            # Its frames (the client library's) hold the URL: it leaves without them, and is
            # not the context of an error raised in here.
            failure = without_tracebacks(exc)
        if failure is not None:
            if not isinstance(failure, (ValueError, TypeError)):
                raise failure  # e.g. a ConnectionError: single_connection_client connects now
            if not _is_redis_url(library, secret_url):
                # redis-py's message may repeat part of the URL, password included.
                raise ValueError(
                    "url is not a Redis URL: use redis://host:port/db, rediss://host:port/db, "
                    "unix:///path/to/socket, redis+cluster://host:port or "
                    "redis+sentinel://host:port,host:port/service"
                )
            given = f" ({', '.join(sorted(redis_options))})" if redis_options else ""
            reason = "" if _shows_password(str(failure), secret_url) else f": {failure}"
            raise ValueError(f"redis-py could not make a client with these options{given}{reason}")
        cache = cls(client, **settings)
        cache._location = _location_of_url(secret_url.reveal())
        # The URL may hold a password: a Secret keeps it out of reprs and tracebacks.
        cache._made_from = (
            secret_url,
            {**settings, "socket_timeout": socket_timeout, **redis_options},
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
        return (_from_url, self._made_from)

    def __repr__(self) -> str:
        # Of any instance, one whose __init__ raised included (a traceback shown with its
        # locals reprs that ``self``).
        if not hasattr(self, "_location"):
            return "RedisTokenCache(<not fully constructed>)"
        return f"RedisTokenCache({self._location}, prefix={self.prefix!r})"

    def load(self, key: str) -> bytes | None:
        """The entry saved under ``key``, or ``None`` if there is none.

        Raises the client's ``ConnectionError`` or ``TimeoutError`` when Redis is not there.
        """
        data = None
        with self._unless_refused("load"):
            # GETRANGE, not GET: a value of any size (not one of ours) is never read whole.
            data = self.client.getrange(self._name(key), 0, _MAX_STORED - 1)
        if not data:  # GETRANGE answers "" for a missing key; an entry is never empty
            return None
        # A client made with decode_responses=True gives a str: b64decode takes one (and
        # refuses one that is not ASCII, as it refuses other bytes outside base64).
        try:
            return b"" if len(data) >= _MAX_STORED else base64.b64decode(data, validate=True)
        except ValueError:  # not ours: the library treats it as absent
            return b""

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        """Store ``entry`` under ``key``, dropped by Redis after ``ttl`` seconds; with
        ``ttl <= 0`` (nothing in it of use), delete the old entry instead."""
        ttl_ms = math.ceil(ttl * 1000)
        with self._unless_refused("save"):
            if ttl_ms <= 0:
                self.client.delete(self._name(key))
            else:
                self.client.set(self._name(key), base64.b64encode(entry), px=ttl_ms)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = LOCK_TIMEOUT) -> Iterator[object]:
        """The Redis lock for ``key``. Entering it raises an error that is both the client
        library's ``LockError`` and a ``TimeoutError`` after ``timeout`` seconds, or
        ``blocking_timeout`` if that is shorter; a connection error when Redis is not there."""
        name = self._name(key) + ":lock"
        blocking_timeout = max(0.0, min(timeout, self.blocking_timeout))
        lock = self.client.lock(
            name,
            timeout=self.lock_timeout,
            blocking_timeout=blocking_timeout,
            # redis-py polls every 0.1 s by default: with a fleet waiting at a cold start,
            # each waiter in turn then costs up to that. A try is one SET NX.
            sleep=LOCK_POLL,
        )
        acquired = None  # stays None if Redis refuses: the renewal goes on without a lock
        with self._unless_refused("lock"):
            acquired = lock.acquire(blocking=False)
            if not acquired:
                # A lock with no TTL, or a longer one than lock_timeout, is given that TTL:
                # left as it is, it would stop every renewal for good (or for longer than a
                # renewal).
                ttl_ms = math.ceil(self.lock_timeout * 1000)
                with self._unless_refused("the lock's TTL check"):
                    left = self.client.pttl(name)
                    if left == -1 or left > ttl_ms:  # -1: no TTL (-2: no lock any more)
                        self.client.pexpire(name, ttl_ms)
                        logger.warning(
                            "token cache %r: its lock had %s; it now expires within %g s",
                            self,
                            "no TTL" if left == -1 else f"a TTL of {left / 1000:.0f} s",
                            self.lock_timeout,
                        )
                acquired = lock.acquire()
        if acquired is False:
            raise LockNotAcquired(f"token cache lock not acquired within {blocking_timeout:g} s")
        try:
            yield lock
        finally:
            if acquired:
                self._release(lock, name)

    def _name(self, key: str) -> str:
        return f"{self.prefix}{{{key}}}"  # the hash tag: an entry and its lock share a slot

    def _release(self, lock: Any, name: str) -> None:
        # The renewal is done: an error here must not fail the request that renewed.
        token = lock.local.token  # release() forgets it before it asks Redis
        try:
            lock.release()
        except Exception as error:  # noqa: BLE001 - any library's, judged by meaning below
            if "LockNotOwnedError" in _names(error):
                reason = "it had expired: the renewal outlasted the lock's TTL"
            elif self._refused(error, "the lock's release", "it is released by GET and DEL"):
                # No scripting (EVALSHA): compare and delete in two steps. Not atomic, but
                # only a holder past its TTL could lose a lock between the two.
                with self._unless_refused("the lock's release"):
                    held = self.client.get(name)
                    if (held.encode() if isinstance(held, str) else held) == token:
                        self.client.delete(name)
                return
            else:
                reason = f"{type(error).__name__}; it expires within {self.lock_timeout:g} s"
            logger.warning("token cache %r: could not release the lock (%s)", self, reason)

    @contextlib.contextmanager
    def _unless_refused(self, step: str) -> Iterator[None]:
        """Let a refusal with a known cause end the block (explained by :meth:`_refused`);
        anything else (an outage) goes on."""
        try:
            yield
        except Exception as error:
            if not self._refused(error, step):
                raise

    def _refused(
        self, error: Exception, step: str, then: str = "the renewal goes on without the cache"
    ) -> bool:
        """Whether ``error`` is a refusal with a known cause: logged as a WARNING the first
        time (as DEBUG after), so that a cause that lasts is told once, not per renewal."""
        names = _names(error) | {str(error).split(" ", 1)[0]}
        cause = next((cause for kinds, cause in _REFUSALS.items() if names & set(kinds)), None)
        if cause is None:
            return False
        command = re.search(r"'([\w|]+)' command", str(error))
        what = f"run {command.group(1)!r}" if command else "use these keys"
        cause = cause.format(what=what, prefix=self.prefix)
        level = logging.DEBUG if cause in self._told else logging.WARNING
        self._told.add(cause)
        logger.log(level, "token cache %r: %s refused: %s; %s", self, step, cause, then)
        return True


def _names(error: BaseException) -> set[str]:
    return {kind.__name__ for kind in type(error).__mro__}


def _client_for(library: Any, url: Secret, options: dict[str, Any]) -> Any:
    """The client for ``url``: a plain one, a Cluster one or a Sentinel master's."""
    scheme, _, rest = url.reveal().partition("://")
    base, _, kind = scheme.partition("+")
    if kind == "cluster":
        return library.RedisCluster.from_url(f"{base}://{rest}", **options)
    if kind != "sentinel":
        return library.Redis.from_url(url.reveal(), **options)
    parts = urllib.parse.urlsplit(f"//{rest}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    service, _, db = parts.path[1:].partition("/")
    sentinels = [urllib.parse.urlsplit(f"//{host}") for host in hostlist.split(",")]
    if not service or not all(sentinel.hostname for sentinel in sentinels):
        raise ValueError("a Sentinel URL names its sentinels and service")
    # The master's settings (user, password, db, TLS options) as redis-py reads them; "@"
    # with no user info before it reads as no user and no password.
    settings = library.connection.parse_url(f"{base}://{userinfo}@x/{db or 0}?{parts.query}")
    for name in ("host", "port", "connection_class"):
        settings.pop(name, None)
    sentinel = library.sentinel.Sentinel(
        [(each.hostname, each.port or 26379) for each in sentinels],
        **{**options, **settings, "ssl": base == "rediss"},
    )
    return sentinel.master_for(service)


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


def _is_redis_url(library: Any, url: Secret) -> bool:
    """Whether the client library reads ``url`` as a Redis URL (so an error came from the
    options)."""
    scheme, _, rest = url.reveal().partition("://")
    try:
        library.connection.parse_url(f"{scheme.partition('+')[0]}://{rest.replace(',', '')}")
    except ValueError:
        return False
    return True


def _shows_password(text: str, url: Secret) -> bool:
    """Whether ``text`` shows the user name and password part of ``url``."""
    userinfo = url.reveal().partition("://")[2].partition("/")[0].rpartition("@")[0]
    return bool(userinfo) and any(part and part in text for part in userinfo.split(":"))


def _location_of_url(url: str) -> str:
    """``url`` without user name and password (and without its query string)."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("?")[0].partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def _location_of(client: object) -> str:
    """Where ``client`` connects, from its settings; never a password."""
    nodes = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if isinstance(nodes, dict):  # a RedisCluster
        return f"redis+cluster://{','.join(nodes)}"
    pool = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:  # a Sentinel's master_for client
        sentinels = ",".join(_location_of(each).split("/")[2] for each in manager.sentinels)
        return f"redis+sentinel://{sentinels}/{getattr(pool, 'service_name', '?')}"
    settings = getattr(pool, "connection_kwargs", None)
    if not isinstance(settings, dict):
        return type(client).__name__
    if settings.get("path"):
        return f"unix://{settings['path']}?db={settings.get('db', 0)}"
    host = host_in_url(str(settings.get("host", "localhost")))
    return f"redis://{host}:{settings.get('port', 6379)}/{settings.get('db', 0)}"
