"""FileTokenCache with a real directory, real files and real processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cache_workers
import filelock
import pytest
from cache_workers import CacheSpec

from requests_emma import EmmaAuth, FileTokenCache
from requests_emma._caches.protocol import MAX_ENTRY_BYTES, cache_key
from requests_emma.testing import FakeEmmaServer

WAIT = 60.0
spawn = multiprocessing.get_context("spawn")


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    private = tmp_path / "tokens"
    private.mkdir(mode=0o700)
    return private


@pytest.fixture
def cache(directory: Path) -> FileTokenCache:
    return FileTokenCache(directory)


KEY = cache_key("https://api.emma.ms/external", "client-id", "secret")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


ENTRY = b"\x01sealed entry bytes, opaque to the cache"


def test_saved_bytes_load_back(cache: FileTokenCache) -> None:
    """save then load returns the same bytes."""
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY


def test_an_absent_entry_loads_as_none(cache: FileTokenCache) -> None:
    """A key never saved loads as None."""
    assert cache.load(KEY) is None


def test_a_save_with_nothing_of_use_removes_the_entry(cache: FileTokenCache) -> None:
    """save with ttl <= 0 (nothing in the entry of use) leaves no entry behind."""
    cache.save(KEY, ENTRY, 60.0)
    cache.save(KEY, b"spent", 0.0)
    assert cache.load(KEY) is None
    cache.save(KEY, b"spent", -1.0)  # and nothing to remove is no error
    assert cache.load(KEY) is None


def test_a_file_is_read_as_it_is_and_replaced_by_a_save(
    cache: FileTokenCache, directory: Path
) -> None:
    """What the file holds is returned as it is (the library judges it); save replaces it."""
    (directory / f"{KEY}.json").write_bytes(b"{not json")
    assert cache.load(KEY) == b"{not json"
    cache.save(KEY, ENTRY, 60.0)
    assert cache.load(KEY) == ENTRY


def test_an_oversized_file_is_read_no_further_than_an_entry_can_be(
    cache: FileTokenCache, directory: Path
) -> None:
    """A huge file costs one bounded read: load returns at most MAX_ENTRY_BYTES + 1 bytes."""
    (directory / f"{KEY}.json").write_bytes(b"x" * (MAX_ENTRY_BYTES * 4))
    loaded = cache.load(KEY)
    assert loaded is not None and len(loaded) == MAX_ENTRY_BYTES + 1


def test_two_keys_never_see_each_others_entries(cache: FileTokenCache) -> None:
    """Two clients, or one client id with a wrong secret, get separate entries."""
    base = "https://api.emma.ms/external"
    right = cache_key(base, "client-a", "secret-a")
    other_client = cache_key(base, "client-b", "secret-b")
    wrong_secret = cache_key(base, "client-a", "not-the-secret")
    cache.save(right, b"entry of client a", 60.0)
    assert cache.load(other_client) is None
    assert cache.load(wrong_secret) is None
    cache.save(other_client, b"entry of client b", 60.0)
    assert cache.load(right) == b"entry of client a"


def test_no_file_holds_the_secret_or_a_token(directory: Path, server: FakeEmmaServer) -> None:
    """After an EmmaAuth renewed through the cache, no file name or content holds the client
    secret, the client id, the access token or the refresh token."""
    auth = EmmaAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
        token_cache=FileTokenCache(directory),
    )
    token = auth.get_token()
    assert token.refresh_token is not None and server.token_calls == 1
    files = list(directory.iterdir())
    assert any(path.suffix == ".json" for path in files)
    for path in files:
        content = path.read_bytes()
        for secret in (server.client_secret, server.client_id, token.access_token):
            assert secret not in path.name and secret.encode() not in content
        assert token.refresh_token.encode() not in content


def test_save_leaves_no_temporary_file(cache: FileTokenCache, directory: Path) -> None:
    """After saves, the directory holds the entry and nothing half-written."""
    for _ in range(3):
        cache.save(KEY, ENTRY, 60.0)
    assert sorted(path.name for path in directory.iterdir()) == [f"{KEY}.json"]


def test_default_directory_and_files_are_private_under_a_permissive_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, permissive_umask: None
) -> None:
    """With umask 0, the default directory is 0700 and the entry and lock files 0600."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = FileTokenCache()
    assert cache.path == tmp_path / "xdg" / "requests-emma" / "tokens"
    with cache.lock(KEY):
        cache.save(KEY, ENTRY, 60.0)
        assert stat.S_IMODE((cache.path / f"{KEY}.lock").stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache.path / f"{KEY}.json").stat().st_mode) == 0o600


def test_an_existing_default_directory_is_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A default directory found with mode 0755 is set to 0700."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    existing = tmp_path / "xdg" / "requests-emma" / "tokens"
    existing.mkdir(parents=True)
    existing.chmod(0o755)
    assert stat.S_IMODE(FileTokenCache().path.stat().st_mode) == 0o700


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path that does not exist is a ValueError naming it and what to do."""
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="does not exist: create it") as raised:
        FileTokenCache(missing)
    assert str(missing) in str(raised.value)


def test_a_file_instead_of_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path that is a file is a ValueError saying it is not a directory."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        FileTokenCache(tmp_path / "file")


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    """A group- or world-writable directory is a ValueError: others could swap tokens."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ValueError, match="writable by other users"):
        FileTokenCache(shared)


@pytest.fixture
def read_only_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot write to: mode 0500, or (as root, whom modes do
    not stop) a read-only tmpfs mounted there."""
    path = tmp_path / "read-only"
    path.mkdir(mode=0o700)
    if os.geteuid() != 0:
        path.chmod(0o500)
        yield path
        path.chmod(0o700)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_directory_is_a_clear_error_at_construction(
    read_only_directory: Path,
) -> None:
    """A directory that cannot be written is a ValueError at construction naming it."""
    with pytest.raises(ValueError, match="is not writable") as raised:
        FileTokenCache(read_only_directory)
    assert str(read_only_directory) in str(raised.value)


def test_an_uncreatable_default_directory_is_a_clear_error(
    read_only_directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A default directory that cannot be created is a ValueError saying to pass a path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(read_only_directory / "xdg"))
    with pytest.raises(ValueError, match=r"cannot create .* pass FileTokenCache\(path=\.\.\.\)"):
        FileTokenCache()


def test_a_bad_lock_timeout_is_refused(directory: Path) -> None:
    """lock_timeout must be a positive number of seconds."""
    for bad in (0, -1, float("nan"), "10", True):
        with pytest.raises(ValueError, match="lock_timeout"):
            FileTokenCache(directory, lock_timeout=bad)  # type: ignore[arg-type]


def test_a_key_that_is_not_a_plain_name_is_refused(cache: FileTokenCache) -> None:
    """A key with a path separator cannot escape the directory."""
    with pytest.raises(ValueError, match="cache_key"):
        cache.load("../escape")


def test_repr_shows_the_path_only(cache: FileTokenCache, directory: Path) -> None:
    """repr names the directory."""
    assert repr(cache) == f"FileTokenCache(path={str(directory)!r})"


def test_the_lock_excludes_a_second_holder(directory: Path) -> None:
    """While one holder has the lock, another times out with filelock.Timeout."""
    holder, other = FileTokenCache(directory), FileTokenCache(directory, lock_timeout=0.2)
    with holder.lock(KEY), pytest.raises(filelock.Timeout), other.lock(KEY):
        pass
    with other.lock(KEY):  # released: free again
        pass


def test_a_lock_wait_is_bounded_by_the_timeout_asked_and_by_lock_timeout(
    directory: Path,
) -> None:
    """lock(key, timeout) waits the shorter of timeout and lock_timeout, then raises a
    TimeoutError (filelock.Timeout)."""
    holder = FileTokenCache(directory)
    with holder.lock(KEY):
        for waiter, timeout in (
            (FileTokenCache(directory), 0.2),
            (FileTokenCache(directory, lock_timeout=0.2), 60.0),
        ):
            started = time.monotonic()
            with pytest.raises(TimeoutError), waiter.lock(KEY, timeout):
                pass
            assert time.monotonic() - started < 10.0  # wide margin; 60 s if unbounded


@pytest.mark.slow
def test_processes_contending_on_the_lock_renew_once(directory: Path) -> None:
    """8 processes doing check-then-renew under the lock make one token call in total."""
    with FakeEmmaServer() as server:
        server.token_delay = 0.3  # a renewal that takes a while: the window for a race
        credentials = (server.base_url, server.client_id, server.client_secret)
        outcomes = _run_contenders(CacheSpec("file", str(directory)), credentials, 8)
        assert server.token_calls == 1
    assert sorted(kind for kind, _ in outcomes) == ["adopted"] * 7 + ["renewed"]
    assert len({token for _, token in outcomes}) == 1


def _run_contenders(
    spec: CacheSpec, credentials: tuple[str, str, str], count: int
) -> list[tuple[str, str]]:
    key = cache_key(*credentials)
    start, results = spawn.Barrier(count), spawn.Queue()
    workers = [
        spawn.Process(
            target=cache_workers.check_then_renew, args=(spec, key, credentials, start, results)
        )
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=WAIT) for _ in workers]
    for worker in workers:
        worker.join(timeout=WAIT)
        assert worker.exitcode == 0
    return outcomes


@pytest.mark.slow
def test_a_lock_holder_killed_with_sigkill_releases_the_lock(directory: Path) -> None:
    """The OS releases a dead holder's file lock: the next process gets it at once."""
    held = spawn.Event()
    holder = spawn.Process(
        target=cache_workers.hold_lock, args=(CacheSpec("file", str(directory)), KEY, held)
    )
    holder.start()
    try:
        assert held.wait(timeout=WAIT)
        with pytest.raises(filelock.Timeout), FileTokenCache(directory, lock_timeout=0.2).lock(KEY):
            pass  # held for now
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        holder.join(timeout=WAIT)
        assert holder.exitcode == -signal.SIGKILL
        with FileTokenCache(directory, lock_timeout=10.0).lock(KEY):
            pass  # would raise filelock.Timeout if the dead holder still had it
    finally:
        holder.kill()
        holder.join(timeout=WAIT)


def test_the_cache_pickles(cache: FileTokenCache) -> None:
    """A FileTokenCache survives pickle (as EmmaAuth pickles) and reads the same files."""
    cache.save(KEY, ENTRY, 60.0)
    copy = pickle.loads(pickle.dumps(cache))
    assert (copy.path, copy.lock_timeout, copy.load(KEY)) == (cache.path, cache.lock_timeout, ENTRY)
