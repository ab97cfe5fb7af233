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

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Ctrl-C and SIGTERM only set the event, whenever they come: no KeyboardInterrupt can
    # land between two lines below and skip the clean stop. A signal the shell told us to
    # ignore (a background job's SIGINT) stays ignored.
    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        try:
            server.start(port)
        except OSError as error:
            message = f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}"
            raise ListenError(message) from None
        exports = {
            _config.API_URL_VAR: server.base_url,
            _config.CLIENT_ID_VAR: server.client_id,
            _config.CLIENT_SECRET_VAR: server.client_secret,
        }
        out.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())
        out.flush()
        log.write(f"# fake emma serving at {server.base_url}; Ctrl-C stops it\n")
        log.flush()
        while not stop.wait(0.5):  # a timed wait, so the signal is seen on every platform
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.write("# fake emma stopped\n")
    log.flush()
    return 0
