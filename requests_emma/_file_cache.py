""":class:`FileTokenCache`: a token cache in a private directory, for the processes of one host.

One file per key (``<key>.json``, next to its lock file ``<key>.lock``) rather than one
file for all keys: saving one client's token then never reads, rewrites or risks another
client's entry, two clients never wait on each other's lock, and damage to one file (a
full disk, a hand edit) costs one client one token call.

Writes are atomic: the entry goes to a temporary file in the same directory, is flushed
to disk (fsync), and renamed over the old one, so a reader sees the old entry or the new
one, never half of one; readers therefore need no lock. The lock is a ``filelock`` lock on
``<key>.lock``: an OS file lock, released by the kernel when its holder dies, even by
SIGKILL.

Permissions: the directory is 0700 and files 0600 whatever the umask: the entries are
sealed (nobody without the client secret can read or forge them), but their presence, size
and timing are nobody else's business. A directory that other users may write to is refused.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import tempfile
from pathlib import Path

import filelock
import platformdirs

from ._cache import LOCK_TIMEOUT, MAX_ENTRY_BYTES

_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def default_directory() -> Path:
    """Where :class:`FileTokenCache` keeps tokens by default: ``tokens`` in the user's
    cache directory for requests-emma (``~/.cache/requests-emma/tokens`` on Linux)."""
    return platformdirs.user_cache_path("requests-emma", appauthor=False) / "tokens"


class FileTokenCache:
    """A :class:`~requests_emma.TokenCache` in files, shared by the processes of one host.

    ``path`` is a directory: ``None`` uses ``default_directory()``, created if needed
    (mode 0700). A directory you pass must exist, be writable, and not be writable by other
    users. Anything else is a ``ValueError`` here, naming the path and what to do, rather
    than an error at the first request. ``lock_timeout`` is the longest ``lock()`` waits
    before raising ``filelock.Timeout``; a renewal waits no longer than its own deadline
    (the ``RetryPolicy`` deadline) allows either.

    Use one per host (or container) and pass it to every ``EmmaAuth``; processes that use
    the same directory share tokens. For several hosts, use :class:`RedisTokenCache`.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)):
            raise ValueError(  # noqa: TRY004 - the project's rule: bad values are ValueErrors
                f"lock_timeout must be a number of seconds, got a {type(lock_timeout).__name__}"
            )
        if not (math.isfinite(lock_timeout) and lock_timeout > 0):
            raise ValueError(
                f"lock_timeout must be a positive number of seconds, got {lock_timeout!r}"
            )
        self.lock_timeout = float(lock_timeout)
        if path is None:
            self.path = _make_private_directory(default_directory())
        else:
            self.path = _check_directory(Path(path).absolute())

    def __repr__(self) -> str:
        return f"FileTokenCache(path={str(self.path)!r})"

    def load(self, key: str) -> bytes | None:
        """The entry saved under ``key``, or ``None`` if there is none.

        Raises ``OSError`` if the file exists but cannot be read.
        """
        try:
            with open(self._entry(key), "rb") as entry:
                return entry.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        """Write ``entry`` under ``key`` atomically (temporary file, fsync, rename); with
        ``ttl <= 0`` (nothing in it of use), remove the old entry instead."""
        target = self._entry(key)
        if ttl <= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            return
        fd, temporary = tempfile.mkstemp(dir=self.path, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                os.chmod(temporary, 0o600)  # mkstemp's 0600 minus the umask: make it exact
                file.write(entry)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_directory(self.path)  # the rename itself survives a crash

    def lock(self, key: str, timeout: float = LOCK_TIMEOUT) -> filelock.FileLock:
        """The OS file lock for ``key``; entering it raises ``filelock.Timeout`` (a
        ``TimeoutError``) after ``timeout`` seconds, or ``lock_timeout`` if that is
        shorter. The kernel releases it when its holder dies."""
        return filelock.FileLock(
            self.path / f"{_checked(key)}.lock",
            timeout=max(0.0, min(timeout, self.lock_timeout)),
            mode=0o600,
            # Waiters poll; a try is one cheap system call, and every waiter of a cold start
            # goes through the lock in turn, so a short interval keeps that queue short.
            poll_interval=0.01,
        )

    def _entry(self, key: str) -> Path:
        return self.path / f"{_checked(key)}.json"


def _checked(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(
            "token cache key must be 1-128 letters, digits, '.', '_' or '-' "
            "(use requests_emma's cache_key())"
        )
    return key


def _make_private_directory(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is cut by the umask; it may also have existed
    except OSError as error:
        raise ValueError(
            f"cannot create the token cache directory {str(path)!r} ({error.strerror}): "
            "pass FileTokenCache(path=...) a writable directory"
        ) from None
    return _check_directory(path)


def _check_directory(path: Path) -> Path:
    where = repr(str(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(
            f"token cache directory {where} does not exist: create it (mode 0700) "
            "or pass another path"
        ) from None
    except OSError as error:
        raise ValueError(
            f"token cache directory {where} cannot be read ({error.strerror}): pass another path"
        ) from None
    if not stat.S_ISDIR(mode):
        raise ValueError(f"token cache path {where} is not a directory: pass a directory")
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ValueError(
            f"token cache directory {where} is writable by other users, who could replace "
            "its tokens: pass a private directory (chmod 700)"
        )
    try:  # the one real test of "writable": read-only mounts, ACLs, another owner
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(
            f"token cache directory {where} is not writable ({error.strerror}): "
            "make it writable for this user or pass another path"
        ) from None
    return path


def _fsync_directory(path: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a directory
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
