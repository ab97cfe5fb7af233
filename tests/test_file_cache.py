"""What FileTokenCache does beyond the cache contract (test_cache_contract.py): private
directories and files, clear errors for a directory it cannot use, bounded reads, atomic
saves. A real directory and real files."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from requests_emma import FileTokenCache
from requests_emma._caches.protocol import MAX_ENTRY_BYTES, cache_key

KEY = cache_key("https://api.emma.ms/external", "client-id", "secret")
ENTRY = b"\x01sealed entry bytes, opaque to the cache"


@pytest.fixture
def cache(token_directory: Path) -> FileTokenCache:
    return FileTokenCache(token_directory)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_an_oversized_file_is_read_no_further_than_an_entry_can_be(
    cache: FileTokenCache, token_directory: Path
) -> None:
    """A huge file costs one bounded read: load returns at most MAX_ENTRY_BYTES + 1 bytes."""
    (token_directory / f"{KEY}.json").write_bytes(b"x" * (MAX_ENTRY_BYTES * 4))
    loaded = cache.load(KEY)
    assert loaded is not None and len(loaded) == MAX_ENTRY_BYTES + 1


def test_save_leaves_no_temporary_file(cache: FileTokenCache, token_directory: Path) -> None:
    """After saves, the directory holds the entry and nothing half-written."""
    for _ in range(3):
        cache.save(KEY, ENTRY, 60.0)
    assert sorted(path.name for path in token_directory.iterdir()) == [f"{KEY}.json"]


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


def test_a_bad_lock_timeout_is_refused(token_directory: Path) -> None:
    """lock_timeout must be a positive number of seconds."""
    for bad in (0, -1, float("nan"), "10", True):
        with pytest.raises(ValueError, match="lock_timeout"):
            FileTokenCache(token_directory, lock_timeout=bad)  # type: ignore[arg-type]


def test_a_key_that_is_not_a_plain_name_is_refused(cache: FileTokenCache) -> None:
    """A key with a path separator cannot escape the directory."""
    with pytest.raises(ValueError, match="cache_key"):
        cache.load("../escape")


def test_repr_shows_the_path_only(cache: FileTokenCache, token_directory: Path) -> None:
    """repr names the directory."""
    assert repr(cache) == f"FileTokenCache(path={str(token_directory)!r})"
