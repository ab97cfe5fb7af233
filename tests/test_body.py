"""Request bodies sent twice or once: the 401 replay and EmmaSession's retries, with real
pipes, socket files, streamed downloads and files on disk."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import pytest
import requests
from fakes import WAIT

from requests_emma import EmmaAuth, EmmaSession
from requests_emma._requests.body_rewind import can_be_resent
from requests_emma.testing import FakeEmmaServer

# Large enough to fill a pipe's buffer several times over and to go out in many chunks.
PAYLOAD = json.dumps({"name": "deploy", "key": "ssh-ed25519 " + "A" * 200_000}).encode()
JSON = {"Content-Type": "application/json"}


def bodies(server: FakeEmmaServer, method: str, path: str) -> list[bytes]:
    """The bodies of the ``method`` calls to ``path`` the server received, in order."""
    return [r.body for r in server.requests if (r.method, r.path) == (method, path)]


def _feed(writer: IO[bytes], data: bytes) -> None:
    try:
        with writer:
            writer.write(data)
    except BrokenPipeError:  # the test stopped reading early; its assertions will say why
        pass


@contextlib.contextmanager
def _fed(reader: IO[bytes], writer: IO[bytes], data: bytes) -> Iterator[IO[bytes]]:
    """``reader``, with a thread writing ``data`` into ``writer`` and then closing it."""
    feeder = threading.Thread(target=_feed, args=(writer, data), name="feeder")
    feeder.start()
    try:
        with reader:
            yield reader
    finally:
        feeder.join(WAIT)


def _pipe(data: bytes) -> contextlib.AbstractContextManager[IO[bytes]]:
    read_end, write_end = os.pipe()
    return _fed(os.fdopen(read_end, "rb"), os.fdopen(write_end, "wb"), data)


def _socket_file(data: bytes) -> contextlib.AbstractContextManager[IO[bytes]]:
    ours, theirs = socket.socketpair()
    reader, writer = ours.makefile("rb"), theirs.makefile("wb")
    ours.close()  # the files now own the sockets: closing the writer ends the stream
    theirs.close()
    return _fed(reader, writer, data)


@contextlib.contextmanager
def _download(data: bytes) -> Iterator[IO[bytes]]:
    with FakeEmmaServer() as source:
        # The source's next API call is answered with ``data``, before any token check.
        source.fail_next_api_calls(1, 200, JSON, data)
        url = source.base_url + "/v1/locations"
        with requests.get(url, stream=True, timeout=WAIT) as download:
            yield download.raw


class ProgressReader(io.RawIOBase):
    """Reads through another stream counting the bytes, as upload progress wrappers do:
    ``tell()`` says how far it got, but it cannot seek (``seekable()`` is False)."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        with memoryview(buffer) as view:
            data = self._source.read(len(view))
            view[: len(data)] = data
        self._count += len(data)
        return len(data)

    def tell(self) -> int:
        return self._count


@pytest.fixture(
    params=[
        "pipe",
        "socket file",
        "progress reader over a pipe",
        "progress reader over a streamed download",
    ]
)
def forward_only_body(request: pytest.FixtureRequest) -> Iterator[IO[bytes]]:
    """A stream that yields PAYLOAD once and cannot go back.

    On a pipe or a socket file ``tell()`` fails; a reader that counts what it passed on,
    over either or over a streamed download, has a working ``tell()``.
    """
    kind: str = request.param
    source = _socket_file if kind == "socket file" else _download if "download" in kind else _pipe
    with source(PAYLOAD) as stream:
        if kind.startswith("progress"):
            with ProgressReader(stream) as counted:
                yield cast("IO[bytes]", counted)
        else:
            yield stream


@pytest.fixture(params=["file on disk", "BytesIO"])
def body_at_offset(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IO[bytes]]:
    """A seekable stream holding a preamble and then PAYLOAD, positioned at PAYLOAD's start."""
    content = b"PREAMBLE" + PAYLOAD
    if request.param == "BytesIO":
        stream: IO[bytes] = io.BytesIO(content)
    else:
        path = tmp_path / "body.json"
        path.write_bytes(content)
        stream = path.open("rb")
    with stream:
        stream.seek(len(b"PREAMBLE"))
        yield stream


def test_forward_only_body_gets_the_401_back(
    server: FakeEmmaServer, auth: EmmaAuth, forward_only_body: IO[bytes]
) -> None:
    """A forward-only stream answered 401 went out once, whole: the 401 is returned, unrenewed."""
    auth.get_token()
    server.revoke()
    response = requests.post(
        server.base_url + "/v1/ssh-keys",
        data=forward_only_body,
        headers=JSON,
        auth=auth,
        timeout=WAIT,
    )
    assert response.status_code == 401
    assert bodies(server, "POST", "/v1/ssh-keys") == [PAYLOAD]
    assert server.token_calls == 1  # the first token only


def test_forward_only_body_gets_the_503_back_from_a_session(
    server: FakeEmmaServer, session: EmmaSession, forward_only_body: IO[bytes]
) -> None:
    """EmmaSession sends a forward-only stream once: the 503 is returned, no urllib3 error."""
    server.fail_next_api_calls(1, 503)
    response = session.put("/v1/locations", data=forward_only_body)
    assert response.status_code == 503
    assert bodies(server, "PUT", "/v1/locations") == [PAYLOAD]


def test_seekable_body_is_replayed_from_its_start_position(
    server: FakeEmmaServer, auth: EmmaAuth, body_at_offset: IO[bytes]
) -> None:
    """A seekable stream that started mid-way is replayed after a 401 from that position."""
    auth.get_token()
    server.revoke()
    response = requests.post(
        server.base_url + "/v1/ssh-keys",
        data=body_at_offset,
        headers=JSON,
        auth=auth,
        timeout=WAIT,
    )
    assert response.status_code == 201
    assert bodies(server, "POST", "/v1/ssh-keys") == [PAYLOAD, PAYLOAD]


def test_seekable_body_is_retried_from_its_start_position(
    server: FakeEmmaServer, session: EmmaSession, body_at_offset: IO[bytes]
) -> None:
    """EmmaSession retries a PUT of a seekable stream from where it started, not from 0."""
    server.fail_next_api_calls(1, 503)
    session.put("/v1/locations", data=body_at_offset)
    assert bodies(server, "PUT", "/v1/locations") == [PAYLOAD, PAYLOAD]


def test_generator_body_is_sent_once_by_a_session(
    server: FakeEmmaServer, session: EmmaSession
) -> None:
    """EmmaSession does not retry a generator body: it would go out empty."""
    server.fail_next_api_calls(1, 503)
    response = session.put("/v1/locations", data=(chunk for chunk in [b"one", b"two"]))
    assert response.status_code == 503
    assert bodies(server, "PUT", "/v1/locations") == [b"onetwo"]


class _SeekableInName(ProgressReader):
    """A reader whose seekable() claims what its seek() cannot do."""

    def seekable(self) -> bool:
        return True


def test_stream_that_cannot_seek_as_it_claims_fails_as_a_request_error(
    server: FakeEmmaServer, session: EmmaSession
) -> None:
    """If a retry's rewind fails after all, the error is requests' (a RequestException)."""
    server.fail_next_api_calls(1, 503)
    with (
        _pipe(PAYLOAD) as pipe,
        pytest.raises(requests.exceptions.UnrewindableBodyError, match="seekable"),
    ):
        session.put("/v1/locations", data=_SeekableInName(pipe))
    assert bodies(server, "PUT", "/v1/locations") == [PAYLOAD]


class _TellOnly:
    """A file-like object without seekable(), as many wrappers are: read() and tell()."""

    def __init__(self) -> None:
        self._data = io.BytesIO(PAYLOAD)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def tell(self) -> int:
        return self._data.tell()

    def __iter__(self) -> Iterator[bytes]:  # requests streams iterable bodies only
        return iter(self._data)


class _TellAndSeek(_TellOnly):
    def seek(self, offset: int, whence: int = 0) -> int:
        return self._data.seek(offset, whence)


@pytest.mark.parametrize(("body", "expected"), [(_TellAndSeek, True), (_TellOnly, False)])
def test_stream_without_seekable_is_judged_by_its_seek(body: type, expected: bool) -> None:
    """A stream with no seekable() can be resent exactly when it has a seek()."""
    request = requests.Request("PUT", "http://127.0.0.1/", data=body())
    assert can_be_resent(request.prepare()) is expected
