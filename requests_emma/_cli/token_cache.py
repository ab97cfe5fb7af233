"""The command line's token cache: one token for many runs, and where each run's came from.

``token``, ``get`` and ``check`` pass ``EmmaAuth`` a :class:`FileTokenCache` in the user's
cache directory (``default_directory()``), as ``gcloud`` and ``az`` keep theirs, so a shell
loop of commands makes one token call rather than one per run. The entries are sealed with
the client secret like every cache entry, so the directory holds nothing usable without it.

A cache directory that cannot be used (another user's, not writable, not creatable) is not
a reason to fail a command that can get a token without it: the command says so on one
stderr line and carries on with a token of its own.

:class:`NotingCache` is the file cache, noting what the renewal did with it: an entry loaded
and nothing saved means the token came from the cache (the renewal saves whenever it got a
token from emma, or was told to wait). A lock or a save that
failed is noted too: the renewal carries on without the cache (and logs a warning), so the
token is new and was not kept for the next run.
"""

from __future__ import annotations

import sys

from .._caches.file_cache import FileTokenCache
from .arguments import PROG


class NotingCache(FileTokenCache):
    """A :class:`FileTokenCache` that notes whether the token in use came from it, and which
    step failed."""

    #: Whether the token in use came from the cache rather than from emma: an entry was
    #: loaded, and nothing saved since.
    served_the_token = False
    #: The step that failed, which left the new token unsaved: ``"lock"`` until a save is
    #: tried (a renewal that took the lock and got a token from emma saves it; one that could
    #: not take the lock carries on without the cache), ``"save"`` if that save failed.
    failed_step: str | None = "lock"

    def load(self, key: str) -> bytes | None:
        entry = super().load(key)
        self.served_the_token = self.served_the_token or entry is not None
        return entry

    def save(self, key: str, entry: bytes, ttl: float) -> None:
        self.served_the_token = False
        self.failed_step = "save"  # until it is done
        super().save(key, entry, ttl)
        self.failed_step = None


def open_cache() -> NotingCache | None:
    """The default cache, or ``None`` (after one warning line on stderr) when its directory
    cannot be used."""
    try:
        return NotingCache()
    except ValueError as error:
        if sys.stderr is not None:  # closed (`2>&-`): nowhere to warn
            sys.stderr.write(
                f"{PROG}: warning: token cache not used ({error}); carrying on without it, "
                "with a new token for this run (--no-cache skips the cache)\n"
            )
        return None
