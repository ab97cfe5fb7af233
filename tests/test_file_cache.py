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
from test_cache_format import a_token

from requests_emma import FileTokenCache
from requests_emma._cache import cache_key
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


def test_a_saved_token_loads_back(cache: FileTokenCache) -> None:
    """save then load returns the same token, refresh token included."""
    token = a_token()
    cache.save(KEY, token)
    assert cache.load(KEY) == token


def test_an_absent_entry_loads_as_none(cache: FileTokenCache) -> None:
    """A key never saved loads as None."""
    assert cache.load(KEY) is None


def test_a_spent_entry_loads_as_none(cache: FileTokenCache) -> None:
    """An entry whose access and refresh tokens have both expired loads as None."""
    cache.save(KEY, a_token(expires_at=time.time() - 60, refresh_expires_at=time.time() - 1))
    assert cache.load(KEY) is None


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\x00\x01\x02\xff", b'{"something": "else"}', b'{"schema": 99}'],
    ids=["empty", "corrupt", "binary", "foreign", "other-schema"],
)
def test_bad_content_loads_as_none_and_is_rewritten(
    cache: FileTokenCache, directory: Path, content: bytes
) -> None:
    """Corrupt, foreign or other-schema file content loads as None; the next save fixes it."""
    (directory / f"{KEY}.json").write_bytes(content)
    assert cache.load(KEY) is None
    token = a_token()
    cache.save(KEY, token)
    assert cache.load(KEY) == token


def test_truncated_content_loads_as_none_and_is_rewritten(
    cache: FileTokenCache, directory: Path
) -> None:
    """An entry cut short (a full disk, a crash elsewhere) loads as None; save rewrites it."""
    cache.save(KEY, a_token())
    entry = directory / f"{KEY}.json"
    entry.write_bytes(entry.read_bytes()[:40])
    assert cache.load(KEY) is None
    token = a_token()
    cache.save(KEY, token)
    assert cache.load(KEY) == token


def test_two_keys_never_see_each_others_entries(cache: FileTokenCache) -> None:
    """Two clients, or one client id with a wrong secret, get separate entries."""
    base = "https://api.emma.ms/external"
    right = cache_key(base, "client-a", "secret-a")
    other_client = cache_key(base, "client-b", "secret-b")
    wrong_secret = cache_key(base, "client-a", "not-the-secret")
    token = a_token(access_token="token-of-client-a")
    cache.save(right, token)
    assert cache.load(other_client) is None
    assert cache.load(wrong_secret) is None
    cache.save(other_client, a_token(access_token="token-of-client-b"))
    assert cache.load(right) == token


def test_no_file_holds_the_secret(cache: FileTokenCache, directory: Path) -> None:
    """After save and lock, no file in the directory contains the client secret."""
    secret = "the-client-secret-value"
    key = cache_key("https://api.emma.ms/external", "client-id", secret)
    with cache.lock(key):
        cache.save(key, a_token())
    for path in directory.iterdir():
        assert secret not in path.name
        assert secret.encode() not in path.read_bytes()


def test_save_leaves_no_temporary_file(cache: FileTokenCache, directory: Path) -> None:
    """After saves, the directory holds the entry and nothing half-written."""
    for _ in range(3):
        cache.save(KEY, a_token())
    assert sorted(path.name for path in directory.iterdir()) == [f"{KEY}.json"]


def test_default_directory_and_files_are_private_under_a_permissive_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, permissive_umask: None
) -> None:
    """With umask 0, the default directory is 0700 and the entry and lock files 0600."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = FileTokenCache()
    assert cache.path == tmp_path / "xdg" / "requests-emma" / "tokens"
    with cache.lock(KEY):
        cache.save(KEY, a_token())
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
    token = a_token()
    cache.save(KEY, token)
    copy = pickle.loads(pickle.dumps(cache))
    assert (copy.path, copy.lock_timeout, copy.load(KEY)) == (cache.path, cache.lock_timeout, token)
