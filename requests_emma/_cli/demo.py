"""``requests-emma demo``: the token lifecycle, step by step, against a local fake emma.

Everything runs against :class:`FakeEmmaServer` on 127.0.0.1 with its own throwaway
credentials: no network, nothing from the environment, no proxy. Instead of waiting for
real expiry, the first token lives a few seconds and the server's knobs (revoke, expire,
planned failures) stage the rest, so the whole tour takes a few seconds.

The library's log lines are printed from inside the library, some from its background
renewal thread: printing one never raises there (it would break the renewal and print a
traceback). A failure to print it (a reader that went away) is raised by the next line the
tour prints instead, in the main thread, where the command reports it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

import requests

from .._core import wire as _wire
from .._core.token import Token
from .._requests.auth import EmmaAuth
from .._requests.session import EmmaSession

# The command runs the test kit's fake emma by design: the same server the tests and
# users' own tests run against, so what the command shows is what they get.
from ..testing import FakeEmmaServer
from .main import logging_to

#: Lifetime of the first token, in seconds: short enough to watch it being renewed.
FIRST_TOKEN_LIFETIME = 3
#: Lifetime of the later tokens: long, so nothing but the staged events renews them.
LATER_TOKEN_LIFETIME = 300
#: Renew this many seconds before expiry. Set rather than left to the default so the tour
#: shows the same thing whatever the default margin becomes.
REFRESH_MARGIN = 1.0
#: How close to expiry step 3 goes before calling again, in seconds: inside the margin.
EXPIRY_CLOSENESS = 0.4
#: How long step 3 waits for its background renewal, in seconds: a token call takes ms.
RENEWAL_WAIT = 5.0


class _Narrator(logging.Handler):
    """Prints the tour, with the library's own log lines (DEBUG and up) indented in it."""

    def __init__(self, out: TextIO, server: FakeEmmaServer) -> None:
        super().__init__(logging.DEBUG)
        self.out = out
        self.server = server
        self._seen = (0, 0)  # issue-token and refresh-token calls told so far
        self._log_failure: Exception | None = None

    def say(self, text: str = "") -> None:
        if self._log_failure is not None:
            raise self._log_failure
        self.out.write(text + "\n")
        self.out.flush()

    def emit(self, record: logging.LogRecord) -> None:
        """Print a log line; a failure waits for the next :meth:`say` (see the module doc)."""
        try:
            self.say(f"     log: {record.getMessage()}")
        except (OSError, ValueError) as error:  # ValueError: an encoding error, a closed file
            self._log_failure = error

    def call(self, session: EmmaSession, path: str) -> None:
        response = session.get(path)
        self.say(f"   GET {path} -> {response.status_code}{_summary(response)}")
        for earlier in response.history:
            _, message = _wire.parse_error(earlier.content)
            self.say(
                f"   (the API first answered {earlier.status_code} {message or ''!r}; "
                "the request was replayed once with the new token)"
            )

    def token_calls(self) -> None:
        now = (self.server.issue_calls, self.server.refresh_calls)
        issued, refreshed = (count - seen for count, seen in zip(now, self._seen))
        self._seen = now
        if not issued and not refreshed:
            self.say("   token calls: none (the token was reused)")
        else:
            self.say(f"   token calls: {issued} issue-token, {refreshed} refresh-token")


def run_demo(out: TextIO) -> None:
    """Run the tour, writing it to ``out``."""
    started = time.monotonic()
    with FakeEmmaServer(token_lifetime=FIRST_TOKEN_LIFETIME) as server:
        narrator = _Narrator(out, server)
        with logging_to(narrator, logging.DEBUG):
            _tour(narrator)
    narrator.say(
        f"\nDone in {time.monotonic() - started:.1f} s: {server.api_calls} API requests, "
        f"{server.token_calls} token calls, and not one error reached the caller.\n"
        "Against the real API: set EMMA_CLIENT_ID and EMMA_CLIENT_SECRET, then run "
        "`requests-emma get /v1/locations`."
    )


def _tour(narrator: _Narrator) -> None:
    say = narrator.say
    server = narrator.server
    renewed = threading.Event()
    # Loopback traffic, token calls and API calls alike, never goes through a proxy.
    auth = EmmaAuth(
        server.client_id,
        server.client_secret,
        base_url=server.base_url,
        refresh_margin=REFRESH_MARGIN,
        on_token=lambda token: renewed.set(),
    )
    with EmmaSession(auth) as session:
        say("requests-emma demo: the token lifecycle against a local fake emma.")
        say("No credentials and no network: the fake runs on 127.0.0.1 with throwaway ones.")
        say(f"Fake emma API: {server.base_url}")
        say(
            f"The first token lives {FIRST_TOKEN_LIFETIME} s; the client renews tokens "
            f"{REFRESH_MARGIN:g} s before they expire."
        )

        say("\n1. The first request fetches a token")
        narrator.call(session, "/v1/locations")
        narrator.token_calls()
        first = auth.get_token()
        say(f"   token: {_describe(first)}")
        server.token_lifetime = LATER_TOKEN_LIFETIME

        say("\n2. More requests reuse it")
        narrator.call(session, "/v1/locations/18")
        narrator.call(session, "v1/locations?name=Singapore")
        say("   (with or without a leading slash, a path resolves below the base URL)")
        narrator.call(session, "/v1/ssh-keys")
        narrator.token_calls()

        say("\n3. Near its expiry, the token is renewed in the background")
        wait = max(0.0, first.expires_in() - EXPIRY_CLOSENESS)
        say(f"   waiting {wait:.1f} s, until the token is {EXPIRY_CLOSENESS:g} s from expiry...")
        time.sleep(wait)
        renewed.clear()
        narrator.call(session, "/v1/locations")
        say("   (the request went out at once with the current token; a renewal runs beside it)")
        renewed.wait(RENEWAL_WAIT)
        narrator.token_calls()
        say(f"   new token: {_describe(auth.get_token())}")
        say("   (the server rotated the refresh token: the one just used is now revoked)")

        say("\n4. A revoked token: the 401 is answered by renewing and replaying")
        say("   the server revokes every token, access and refresh")
        server.revoke()
        narrator.call(session, "/v1/locations")
        narrator.token_calls()
        say("   (refresh-token refused the revoked refresh token, so a new token was issued)")

        say("\n5. The token endpoint hiccups: the renewal is retried")
        say("   the server drops the access token, and its token endpoint answers 503 twice")
        server.expire_access_tokens()
        server.fail_next_token_calls(2, 503, {"Retry-After": "1"})
        narrator.call(session, "/v1/locations")
        narrator.token_calls()


def _describe(token: Token) -> str:
    refresh = "with a refresh token" if token.refresh_token else "no refresh token"
    return f"{token.token_type}, expires in {token.expires_in():.0f} s, {refresh}"


def _summary(response: requests.Response) -> str:
    """``: London, Frankfurt``: the names in a good answer (an object or a list of them)."""
    data = response.json() if response.ok else None
    items = data if isinstance(data, list) else [data]
    names = [item["name"] for item in items if isinstance(item, dict) and "name" in item]
    if isinstance(data, list) and not names:
        return ": (empty list)"
    return f": {', '.join(map(str, names))}" if names else ""
