"""FileTokenCache's directory belongs to this user: owners, symbolic links, a removed directory.

Real directories, links and owners: the tests that give a file to another user (``os.chown``,
``os.lchown`` to ``nobody``) need root, and are skipped otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import auth_for

from requests_emma import FileTokenCache
from requests_emma.testing import FakeEmmaServer

OTHER = 65534  # nobody

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a file to another user (os.chown) needs root",
)
posix_only = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="needs POSIX file owners")


@pytest.fixture
def sticky(tmp_path: Path) -> Path:
    """A world-writable directory with the sticky bit, like /tmp."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    return shared


@pytest.fixture
def group_umask() -> Iterator[None]:
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


@needs_root
def test_a_directory_owned_by_another_user_is_refused(token_directory: Path) -> None:
    """A 0700 directory another user owns is a ValueError naming the path, the owner and
    what to do."""
    os.chown(token_directory, OTHER, OTHER)
    with pytest.raises(ValueError, match="owned by") as refused:
        FileTokenCache(token_directory)
    message = str(refused.value)
    assert repr(str(token_directory)) in message
    assert f"uid {OTHER}" in message
    assert "chown" in message


@needs_root
def test_the_default_directory_owned_by_another_user_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing default directory that another user owns is refused, and its mode is not
    changed on the way."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    theirs = tmp_path / "requests-emma" / "tokens"
    theirs.mkdir(parents=True, mode=0o755)
    os.chmod(theirs, 0o755)
    os.chown(theirs, OTHER, OTHER)
    with pytest.raises(ValueError, match="owned by"):
        FileTokenCache()
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o755


@needs_root
def test_a_link_another_user_owns_is_refused(token_directory: Path, sticky: Path) -> None:
    """A path through a symbolic link is refused once the link belongs to another user (who
    could point it elsewhere later), with the link and its owner named; the same link owned
    by this user is accepted."""
    link = sticky / "emma-tokens"
    link.symlink_to(token_directory)
    assert FileTokenCache(link).path == link
    os.lchown(link, OTHER, OTHER)
    with pytest.raises(ValueError, match="symbolic link") as refused:
        FileTokenCache(link)
    assert repr(str(link)) in str(refused.value)
    assert f"uid {OTHER}" in str(refused.value)


@needs_root
def test_a_link_inside_a_links_target_is_checked(
    tmp_path: Path, token_directory: Path, sticky: Path
) -> None:
    """Every link on the way counts: one reached through the target of another is checked
    too."""
    theirs = sticky / "theirs"
    theirs.symlink_to(token_directory)
    os.lchown(theirs, OTHER, OTHER)
    ours = tmp_path / "ours"
    ours.symlink_to(sticky)
    with pytest.raises(ValueError, match="symbolic link") as refused:
        FileTokenCache(ours / "theirs")
    assert repr(str(sticky / "theirs")) in str(refused.value)


@posix_only
def test_a_removed_directory_is_made_again_private(
    server: FakeEmmaServer,
    token_directory: Path,
    group_umask: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cache directory removed after construction is made again with mode 0700 (not the
    umask's 0775, as filelock would), and a WARNING says so."""
    auth = auth_for(server, token_cache=FileTokenCache(token_directory))
    shutil.rmtree(token_directory)
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        auth.get_token()
    assert stat.S_IMODE(token_directory.stat().st_mode) == 0o700
    assert any(name.endswith(".json") for name in os.listdir(token_directory))
    assert any("made it again" in r.getMessage() for r in caplog.records)


@needs_root
def test_a_directory_given_to_another_user_after_construction_is_not_read(
    server: FakeEmmaServer, token_directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory that belongs to another user by the time of a renewal is not used: its
    token (planted, as far as anyone can tell) is not sent; a new one is fetched."""
    cache = FileTokenCache(token_directory)
    planted = auth_for(server, token_cache=cache).get_token()
    os.chown(token_directory, OTHER, OTHER)
    with caplog.at_level(logging.WARNING, logger="requests_emma"):
        token = auth_for(server, token_cache=cache).get_token()
    assert token.access_token != planted.access_token
    assert server.token_calls == 2
    assert any("unavailable" in r.getMessage() for r in caplog.records)


@posix_only
def test_missing_parents_of_the_default_directory_are_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under umask 0, the parents FileTokenCache() makes for its directory are 0700 too, not
    world-writable (0777)."""
    home = tmp_path / "fresh" / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    old = os.umask(0)
    try:
        cache = FileTokenCache()
    finally:
        os.umask(old)
    made = [tmp_path / "fresh", home, home / "requests-emma", cache.path]
    assert [stat.S_IMODE(path.stat().st_mode) for path in made] == [0o700] * 4
