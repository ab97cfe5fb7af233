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
and timing are nobody else's business. A directory that other users may write to is refused,
and so is one this user does not own, or one reached through a symbolic link that anyone but
this user or root owns (whoever owns a link can point it elsewhere later). The directory is
checked again before each lock and save, so nothing is written into a directory that was not
checked: one removed since (a cleaner of ``/tmp`` or ``~/.cache``) is made again, 0700, and
checked like a new one. filelock would otherwise make it, parents included, with the umask's
mode (0775, 0777) when it takes a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
from pathlib import Path

import filelock
import platformdirs

from .._core.durations import seconds
from .protocol import LOCK_TIMEOUT, MAX_ENTRY_BYTES

_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_MAX_LINKS = 40  # symbolic links the kernel follows in one path before ELOOP

logger = logging.getLogger("requests_emma")


def default_directory() -> Path:
    """Where :class:`FileTokenCache` keeps tokens by default: ``tokens`` in the user's
    cache directory for requests-emma (``~/.cache/requests-emma/tokens`` on Linux)."""
    return platformdirs.user_cache_path("requests-emma", appauthor=False) / "tokens"


class FileTokenCache:
    """A :class:`~requests_emma.TokenCache` in files, shared by the processes of one host.

    ``path`` is a directory: ``None`` uses ``default_directory()``, created if needed
    (mode 0700). A directory you pass must exist, be writable, be owned by this user, not be
    writable by other users, and not be reached through a symbolic link that anyone but
    this user or root owns. Anything else is a ``ValueError`` here, naming the path and what
    to do, rather than an error at the first request. ``lock_timeout`` is the longest
    ``lock()`` waits before raising ``filelock.Timeout``; a renewal waits no longer than its
    own deadline (the ``RetryPolicy`` deadline) allows either.

    Use one per host (or container) and pass it to every ``EmmaAuth``; processes that use
    the same directory share tokens. For several hosts, use :class:`RedisTokenCache`.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        self.lock_timeout = seconds("lock_timeout", lock_timeout, positive=True)
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
            with open(self._file(key, ".json"), "rb") as entry:
                return entry.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        """Write ``entry`` under ``key`` atomically (temporary file, fsync, rename); with
        ``ttl <= 0`` (nothing in it of use), remove the old entry instead."""
        target = self._file(key, ".json")
        if ttl <= 0:
            target.unlink(missing_ok=True)
            return
        self._ensure_directory()
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
        if hasattr(os, "O_DIRECTORY"):  # the rename itself survives a crash (not on Windows)
            directory = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def lock(self, key: str, timeout: float = LOCK_TIMEOUT) -> filelock.FileLock:
        """The OS file lock for ``key``; entering it raises ``filelock.Timeout`` (a
        ``TimeoutError``) after ``timeout`` seconds, or ``lock_timeout`` if that is
        shorter. The kernel releases it when its holder dies."""
        self._ensure_directory()
        return filelock.FileLock(
            self._file(key, ".lock"),
            timeout=max(0.0, min(timeout, self.lock_timeout)),
            mode=0o600,
            # Waiters poll; a try is one cheap system call, and every waiter of a cold start
            # goes through the lock in turn, so a short interval keeps that queue short.
            poll_interval=0.01,
        )

    def _file(self, key: str, suffix: str) -> Path:
        """The file of ``key`` with ``suffix``; a ``ValueError`` for a key that is no file name."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(
                "token cache key must be 1-128 letters, digits, '.', '_' or '-' "
                "(use requests_emma's cache_key())"
            )
        return self.path / f"{key}{suffix}"

    def _ensure_directory(self) -> None:
        """Check the directory again, as at construction, before a lock or a save writes in
        it; make it again (0700) if it was removed, rather than leave that to filelock, which
        makes a lock file's missing directory with the umask's mode."""
        if os.path.lexists(self.path):
            _check_directory(self.path)
            return
        _make_private_directory(self.path)
        logger.warning(
            "token cache directory %r had been removed; made it again (mode 0700)",
            str(self.path),
        )


def _make_private_directory(path: Path) -> Path:
    _check_links(path)  # before anything is made where another user's link points
    # Missing parents too are made 0700 whatever the umask: mkdir(parents=True) makes them
    # with the umask's mode (0777 under umask 0), and whoever may write in a parent can swap
    # the directory below it for one of their own.
    made = [parent for parent in path.parents if not os.path.lexists(parent)]
    try:
        for part in [*reversed(made), path]:
            part.mkdir(mode=0o700, exist_ok=True)
            _check_owner(part, part.stat())  # before the chmod: never change another's mode
            os.chmod(part, 0o700)  # mkdir's mode is cut by the umask; path may have existed
    except OSError as error:
        raise ValueError(
            f"cannot create the token cache directory {str(path)!r} ({error.strerror}): "
            "pass FileTokenCache(path=...) a writable directory"
        ) from None
    return _check_directory(path)


def _check_directory(path: Path) -> Path:
    where = repr(str(path))
    _check_links(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise ValueError(
            f"token cache directory {where} does not exist: create it (mode 0700) "
            "or pass another path"
        ) from None
    except OSError as error:
        raise ValueError(
            f"token cache directory {where} cannot be read ({error.strerror}): pass another path"
        ) from None
    if not stat.S_ISDIR(status.st_mode):
        raise ValueError(f"token cache path {where} is not a directory: pass a directory")
    _check_owner(path, status)
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ValueError(
            f"token cache directory {where} is writable by other users, who could replace "
            "its tokens: pass a private directory (chmod 700)"
        )
    try:  # the one real test of "writable": read-only mounts, ACLs, another owner
        tempfile.TemporaryFile(dir=path).close()
    except OSError as error:
        raise ValueError(
            f"token cache directory {where} is not writable ({error.strerror}): "
            "make it writable for this user or pass another path"
        ) from None
    return path


def _check_owner(path: Path, status: os.stat_result) -> None:
    """Refuse a directory this user does not own: its owner could put tokens of their own in
    it, even a 0700 one, and this user (root included) would send them."""
    if hasattr(os, "geteuid") and status.st_uid != os.geteuid():  # Windows has no owner uid
        raise ValueError(
            f"token cache directory {str(path)!r} is owned by {_user(status.st_uid)}, not by "
            f"this process's user {_user(os.geteuid())}, and its owner could plant tokens in "
            "it: pass a directory this user owns (mkdir -m 700), or chown it to this user"
        )


def _check_links(path: Path) -> None:
    """Refuse a path that goes through a symbolic link owned by anyone but this user or root:
    the link's owner can point it at another directory whenever they like (ssh checks
    ``~/.ssh`` the same way). Every link counts, those inside another link's target too;
    the walk stops at the first component that does not exist yet."""
    if not hasattr(os, "geteuid"):  # Windows: no owner uid to compare
        return
    trusted = {0, os.geteuid()}
    walked = Path(path.anchor)  # a real directory: every link before it replaced by its target
    pending = list(reversed(path.parts[1:]))  # the components still to walk, the next last
    links = 0
    while pending and links <= _MAX_LINKS:
        part = pending.pop()
        # walked has no links in it, so its parent is where ".." leads, and not a link.
        component = walked.parent if part == ".." else walked / part
        try:
            status = os.lstat(component)
        except OSError:
            return  # missing or unreadable: creating or stat-ing the directory says so
        if not stat.S_ISLNK(status.st_mode):
            walked = component
            continue
        if status.st_uid not in trusted:
            raise ValueError(
                f"token cache path {str(path)!r} goes through the symbolic link "
                f"{str(component)!r}, owned by {_user(status.st_uid)}, who can point it at "
                "another directory at any time: pass the directory's real path, or a path "
                "whose links this user or root owns"
            )
        links += 1
        target = Path(os.readlink(component))
        walked /= target.anchor  # an absolute target starts again at the root
        pending.extend(reversed(target.parts[1:] if target.anchor else target.parts))


def _user(uid: int) -> str:
    try:
        import pwd  # not on Windows

        return f"{pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"
