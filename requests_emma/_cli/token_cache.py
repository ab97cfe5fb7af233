"""The command line's token cache: one token for many runs, and where each run's came from.

``token``, ``get`` and ``check`` pass ``EmmaAuth`` a :class:`FileTokenCache` in the user's
cache directory (``default_directory()``), as ``gcloud`` and ``az`` keep theirs, so a shell
loop of commands makes one token call rather than one per run. The entries are sealed with
the client secret like every cache entry, so the directory holds nothing usable without it.

A cache directory that cannot be used (another user's, not writable, not creatable) is not
a reason to fail a command that can get a token without it: the command says so on one
stderr line and carries on with a token of its own.

:class:`NotingCache` passes every call through to the real cache and notes what the renewal
did with it: an entry loaded and nothing saved means the token came from the cache (the
renewal saves whenever it got a token from emma, or was told to wait). A lock or a save that
failed is noted too: the renewal carries on without the cache (and logs a warning), so the
token is new and was not kept for the next run.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from .._caches.file_cache import FileTokenCache
from .arguments import PROG


class NotingCache:
    """A :class:`~requests_emma.TokenCache` that notes whether the token in use came from it,
    and which step failed."""

    def __init__(self, cache: FileTokenCache) -> None:
        self.cache = cache
        #: Whether the token in use came from the cache rather than from emma: an entry was
        #: loaded, and nothing saved since.
        self.served_the_token = False
        #: ``"lock"`` or ``"save"``: the step that failed, which left the new token unsaved.
        self.failed_step: str | None = None

    def __repr__(self) -> str:
        return repr(self.cache)

    def load(self, key: str) -> bytes | None:
        entry = self.cache.load(key)
        self.served_the_token = self.served_the_token or entry is not None
        return entry

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        self.served_the_token = False
        try:
            self.cache.save(key, entry, ttl)
        except Exception:
            self.failed_step = "save"
            raise

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        self.failed_step = "lock"  # until it is taken: not what is done while it is held
        with self.cache.lock(key, timeout):
            self.failed_step = None
            yield


def open_cache() -> NotingCache | None:
    """The default cache, or ``None`` (after one warning line on stderr) when its directory
    cannot be used."""
    try:
        return NotingCache(FileTokenCache())
    except ValueError as error:
        if sys.stderr is not None:  # closed (`2>&-`): nowhere to warn
            sys.stderr.write(
                f"{PROG}: warning: token cache not used ({error}); carrying on without it, "
                "with a new token for this run (--no-cache skips the cache)\n"
            )
        return None
