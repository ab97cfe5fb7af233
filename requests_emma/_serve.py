"""``requests-emma serve``: the embedded fake emma in the foreground, for your own tools.

It prints, on stdout, the ``export`` lines that point ``EmmaAuth``, ``EmmaSession`` and the
other subcommands at it (throwaway credentials, made up at start), then logs one line per
answer on stderr: method, path (no query string) and status, never a header or a token.
stdout holds nothing but the ``export`` lines, so it can be saved and sourced. Ctrl-C (or
SIGTERM) stops it cleanly.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from types import FrameType
from typing import TextIO

from . import _config
from .testing import FakeEmmaServer


class ListenError(Exception):
    """The port cannot be listened on (in use, say): reported on one line."""


def run_serve(port: int, token_lifetime: int, *, out: TextIO, log: TextIO) -> int:
    """Serve until interrupted; returns the exit status (0 once stopped by Ctrl-C)."""
    server = FakeEmmaServer(token_lifetime=token_lifetime)
    log_lock = threading.Lock()

    def log_request(method: str, path: str, status: int) -> None:
        line = f"{time.strftime('%H:%M:%S')} {method} {path} {status}\n"
        with log_lock:  # handler threads answer concurrently: whole lines only
            log.write(line)
            log.flush()

    server.request_log = log_request
    stop = threading.Event()

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        server.start(port)
    except OSError as error:
        raise ListenError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        exports = {
            _config.API_URL_VAR: server.base_url,
            _config.CLIENT_ID_VAR: server.client_id,
            _config.CLIENT_SECRET_VAR: server.client_secret,
        }
        out.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())
        out.flush()
        log.write(f"# fake emma serving at {server.base_url}; Ctrl-C stops it\n")
        log.flush()
        try:
            while not stop.wait(0.5):  # a timed wait, so Ctrl-C is seen on every platform
                pass
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    log.write("# fake emma stopped\n")
    log.flush()
    return 0
