"""``requests-emma serve``: the embedded fake emma in the foreground, for your own tools.

It prints, on stdout, the ``export`` lines that point ``EmmaAuth``, ``EmmaSession`` and the
other subcommands at it (throwaway credentials, made up at start), then logs one line per
answer on stderr: method, path (no query string) and status, never a header or a token.
stdout holds nothing but the ``export`` lines, so it can be saved and sourced. Ctrl-C (or
SIGTERM) stops it cleanly. SIGUSR1 (``kill -USR1 PID``, the command its second log line
shows) revokes every token it has issued, as emma revokes a service app's tokens: the
next call with one gets a 401, which shows a client's renewal and replay from outside.

The log is written from the handler thread before the answer, so a log that cannot be
written (stderr closed, or a reader that went away: ``serve 2>&1 | head``) must not take the
answer with it: the log stops, serving goes on. The server keeps no record of the requests
it serves (nothing reads it here), so a long-running one does not grow.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import threading
import time
from typing import TextIO

from .._core import credentials

# The command runs the test kit's fake emma by design: the same server the tests and
# users' own tests run against, so what the command shows is what they get.
from ..testing import FakeEmmaServer
from .arguments import CommandError
from .main import discard


class _Log:
    """Whole lines to a stream, from any thread, until the stream fails: then nothing."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream  # None: closed at start (`2>&-`)
        self._lock = threading.Lock()  # handler threads answer concurrently

    def line(self, text: str) -> None:
        with self._lock:
            if self._stream is None:
                return
            try:
                self._stream.write(text + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # a broken pipe, a full disk; ValueError: closed
                discard(self._stream)
                self._stream = None

    def request(self, method: str, path: str, status: int) -> None:
        self.line(f"{time.strftime('%H:%M:%S')} {method} {path} {status}")


def run_serve(port: int, token_lifetime: int, *, out: TextIO, log: TextIO | None) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM); a port it cannot listen on is a
    ``CommandError``."""
    server = FakeEmmaServer(token_lifetime=token_lifetime, max_recorded_requests=0)
    serve_log = _Log(log)
    server.request_log = serve_log.request
    received: queue.SimpleQueue[int] = queue.SimpleQueue()  # safe to put to in a handler
    # A signal only notes itself, whenever it comes: no KeyboardInterrupt can land between
    # two lines below and skip the clean stop, and the revocation runs in this loop, not
    # inside a write of the log. A signal the shell told us to ignore (a background job's
    # SIGINT) stays ignored.
    revoke = getattr(signal, "SIGUSR1", None)  # not on Windows
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.put(signum))
        for sig in (signal.SIGINT, signal.SIGTERM, revoke)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        try:
            server.start(port)
        except OSError as error:
            message = f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}"
            raise CommandError(message) from None
        exports = {
            credentials.API_URL_VAR: server.base_url,
            credentials.CLIENT_ID_VAR: server.client_id,
            credentials.CLIENT_SECRET_VAR: server.client_secret,
        }
        out.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())
        out.flush()
        serve_log.line(f"# fake emma serving at {server.base_url}; Ctrl-C stops it")
        if revoke in previous:
            serve_log.line(f"# kill -USR1 {os.getpid()} revokes every token it issued")
        while True:
            try:
                signum = received.get(timeout=0.5)  # timed, so a signal is seen on every platform
            except queue.Empty:
                continue
            if signum != revoke:
                break
            server.revoke()
            serve_log.line("# every token issued so far is revoked")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    serve_log.line("# fake emma stopped")
