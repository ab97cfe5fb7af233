"""The ``requests-emma`` command line: ``token``, ``get PATH``, ``check``, ``serve`` and ``demo``.

Configuration comes from ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET`` and ``EMMA_API_URL``,
and the flags ``--base-url`` and ``--client-id``. The client secret is never a flag (flags
show in process lists and shell history): it comes from ``EMMA_CLIENT_SECRET``, or from a
prompt when stdin is a terminal.

Every error is one line on stderr, without a traceback or a secret, and the exit status
says what kind of error it was (``arguments.Exit``). Usage errors never repeat an
argument's value, since any of them may be a secret typed in the wrong place (a mistyped
subcommand close to a real one is the exception: it is repeated with a suggestion).

stdout holds only the result. ``get`` prints a JSON answer indented, with ``\\u`` escapes
for what stdout cannot encode (the same JSON), and any other answer byte for byte. A stdout
closed at start is exit 74 before anything is done; a reader that went away (``| head``)
ends the command quietly with 141, as it ends any program writing to a closed pipe.

At the default verbosity the token call's retries are shown on stderr, one line each, so a
struggling token endpoint is not a silent wait; ``-v`` shows all of the library's log.

``token``, ``get`` and ``check`` keep the token between runs in the user's cache directory
(``token_cache.py``; ``--no-cache`` opts out). ``check`` prints how long the token is valid
and whether it came from the cache, never the token: a probe for a container's health.
``check --timeout`` and ``token --timeout`` bound the whole command with the library's own
knob: the ``RetryPolicy`` deadline, which covers the cache's lock, every token call and the
waits between them.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

import requests

from .._core import credentials, urls
from .._core import wire as _wire
from .._core.retry_policy import RetryPolicy
from .._errors import CredentialsError, EmmaAuthError, TokenRequestError, os_reason
from .._requests.auth import EmmaAuth
from .._requests.session import EmmaSession
from .arguments import PROG, CommandError, Exit, command, parse, without_value
from .token_cache import NotingCache, open_cache


def main(argv: Sequence[str] | None = None) -> int:
    """Tokens and quick calls for the emma API.

    The client secret comes from $EMMA_CLIENT_SECRET, or a prompt when stdin is a terminal;
    there is no flag for it.

    exit status:
      0    success
      1    the API answered with a non-2xx status (get)
      2    bad arguments or configuration (missing credentials, bad base or proxy URL)
      3    no token: credentials rejected, or the token endpoint failed or asked to wait
      4    emma could not be reached (connection failed, name unknown, timed out)
      70   an unexpected internal error
      74   the output could not be written (a full disk, a closed stdout)
      130  interrupted (Ctrl-C)
      141  stdout's reader went away (piped into head, say); no message
    """
    # Runs the command line and returns the exit status; the docstring is what --help says.
    try:
        args = parse(sys.argv[1:] if argv is None else list(argv), main.__doc__ or "")
    except CommandError as error:
        return _fail(f"{error} (see {PROG} --help)", error.exit_code)
    if not args.gets_a_token:  # the demo shows the log in its tour; serve its lines
        return _report(args)
    # -v: every log record on stderr. Otherwise only the token call's retry lines, so a
    # struggling endpoint is not a silent wait, and no failure is reported twice.
    verbose = getattr(args, "verbose", False)
    handler = logging.StreamHandler(sys.stderr)
    level_name = "%(levelname)s " if verbose else ""
    handler.setFormatter(logging.Formatter(f"{PROG}: {level_name}%(message)s"))
    if not verbose:
        handler.addFilter(_shown_by_default)
    with logging_to(handler, logging.DEBUG if verbose else logging.WARNING):
        return _report(args)


def _report(args: argparse.Namespace) -> int:
    """Run the command; report any failure on one line, returning its exit status."""
    try:
        if sys.stdout is None:  # started with stdout closed (`>&-`): the result has nowhere to go
            raise CommandError("cannot write output: stdout is closed", Exit.OUTPUT)
        args.run(args)
        sys.stdout.flush()  # now, while a failure to write can still be reported
        return Exit.OK
    except CommandError as error:
        message, status = str(error), error.exit_code
    except EmmaAuthError as error:
        message, status = _auth_failure(error, args)
    except requests.ConnectionError as error:  # ConnectTimeout included
        reason = os_reason(error) or ("timed out" if isinstance(error, requests.Timeout) else "")
        message = f"could not connect to {_api_at(error)}" + (f" ({reason})" if reason else "")
        status = Exit.UNREACHABLE
    except requests.Timeout as error:
        message, status = f"{_api_at(error)} did not answer in time", Exit.UNREACHABLE
    except requests.RequestException as error:
        message, status = f"request failed: {error}", Exit.USAGE
    except KeyboardInterrupt:
        message, status = "interrupted", Exit.INTERRUPTED
    except OSError as error:
        # The OSErrors left: writing stdout failed (the reader went away, a full disk, a
        # quota). Point stdout at /dev/null so the flush at exit stays quiet.
        discard(sys.stdout)
        if isinstance(error, BrokenPipeError):  # the reader went away: no message
            return Exit.BROKEN_PIPE
        message, status = f"cannot write output: {error.strerror or error}", Exit.OUTPUT
    except Exception as error:  # the promise is one line, never a traceback
        if getattr(args, "verbose", False):
            logging.getLogger("requests_emma").exception("unexpected error")
        message = f"unexpected {type(error).__name__} (a bug; --verbose shows the traceback)"
        status = Exit.INTERNAL
    return _fail(message, status)


def _auth_failure(error: EmmaAuthError, args: argparse.Namespace) -> tuple[str, Exit]:
    """What a failure to get a token says, and its exit status: 3 unless the URL could not
    be used (2) or emma could not be reached (4)."""
    if isinstance(error, CredentialsError):
        if error.status_code is not None or error.retry_after is None:
            return str(error), Exit.AUTH
        # A hold read from the token cache, in a shell user's words: an earlier run (or a
        # program sharing the cache) was refused with these very credentials, so this one did
        # not ask.
        return (
            "emma refused these credentials a moment ago (an earlier run with this client ID "
            "and secret, noted in the token cache), so this run did not ask again: fix "
            f"{credentials.CLIENT_ID_VAR} or {credentials.CLIENT_SECRET_VAR} (other credentials "
            f"are tried at once), or try these again in {math.ceil(error.retry_after):.0f} s"
        ), Exit.AUTH
    if isinstance(error, TokenRequestError) and isinstance(error.__cause__, ValueError):
        # requests' InvalidURL: never sent
        proxies = "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY"
        return f"a URL could not be used (check {proxies} and the base URL): {error}", Exit.USAGE
    if isinstance(error, TokenRequestError) and error.status_code is None and error.attempts:
        # No answer came (refused, unknown name, timed out). With no attempt at all, emma had
        # asked to wait, or another process holds the token cache's lock.
        return f"could not reach emma at {_host_of(args)}: {error}", Exit.UNREACHABLE
    return str(error), Exit.AUTH


def discard(stream: TextIO) -> None:
    """Point the stream's file at /dev/null: what it still buffers must not fail the exit."""
    # OSError, ValueError: not a file, or already closed: nothing to flush there.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _auth_from(args: argparse.Namespace) -> tuple[EmmaAuth, NotingCache | None]:
    """The auth for ``token``, ``get`` and ``check``, with the token cache unless
    ``--no-cache`` (``None`` as well when its directory cannot be used), and ``--timeout``
    as the deadline of the one renewal a run makes."""
    # Everything is checked before the secret is asked for, and the cache looked at last.
    base_url = getattr(args, "base_url", None)
    source = "--base-url" if base_url is not None else credentials.API_URL_VAR
    given = base_url if base_url is not None else os.environ.get(credentials.API_URL_VAR)
    try:
        checked = urls.base_url(base_url)
    except ValueError as error:
        raise CommandError(f"{source}: {without_value(str(error), given)}") from None
    client_id = getattr(args, "client_id", None) or os.environ.get(credentials.CLIENT_ID_VAR)
    if not client_id:
        raise CommandError(f"no client ID: pass --client-id or set {credentials.CLIENT_ID_VAR}")
    client_secret = _client_secret()
    cache = None if getattr(args, "no_cache", False) else open_cache()
    timeout = getattr(args, "timeout", None)
    retry = None if timeout is None else RetryPolicy(deadline=timeout)
    try:
        auth = EmmaAuth(client_id, client_secret, base_url=checked, token_cache=cache, retry=retry)
        return auth, cache
    except ValueError as error:
        raise CommandError(str(error)) from None


def _client_secret() -> str:
    secret = os.environ.get(credentials.CLIENT_SECRET_VAR)
    if secret:
        return secret
    if sys.stdin is None or not sys.stdin.isatty():
        raise CommandError(
            f"no client secret: set {credentials.CLIENT_SECRET_VAR} (or run in a terminal to be asked)"
        )
    try:
        secret = getpass.getpass("emma client secret: ")
    except (EOFError, KeyboardInterrupt) as stop:
        # Interrupted, getpass leaves its prompt line open: end it where getpass wrote it.
        try:
            with open("/dev/tty", "w") as tty:  # getpass prompts there when it can
                tty.write("\n")
        except OSError:
            sys.stderr.write("\n")
        if isinstance(stop, KeyboardInterrupt):
            raise
        raise CommandError("no client secret given: end of input (Ctrl-D) at the prompt") from None
    if not secret:
        raise CommandError("no client secret: an empty one was entered at the prompt")
    return secret


# The commands, in the order --help lists them; each one's docstring is its help.


@command("--json", "--timeout", gets_a_token=True)
def _token(args: argparse.Namespace) -> None:
    """print an access token

    Print an access token alone on one line, e.g. for
    `curl -H "Authorization: Bearer $(requests-emma token)"`.
    """
    auth, cache = _auth_from(args)
    token = auth.get_token()
    if not args.json:
        sys.stdout.write(token.access_token + "\n")
        return
    # Everything about the token but the tokens themselves.
    refresh_expires_at = token.refresh_expires_at
    metadata = {
        "token_type": token.token_type,
        "expires_at": round(token.expires_at, 3),
        "expires_at_utc": _utc(token.expires_at),
        "expires_in": int(token.expires_in()),
        "has_refresh_token": token.refresh_token is not None,
        "refresh_expires_at": None if refresh_expires_at is None else round(refresh_expires_at, 3),
        "refresh_expires_at_utc": None if refresh_expires_at is None else _utc(refresh_expires_at),
        "base_url": auth.base_url,
        "from_cache": cache is not None and cache.served_the_token,
    }
    sys.stdout.write(json.dumps(metadata, indent=2) + "\n")


@command("path", gets_a_token=True)
def _get(args: argparse.Namespace) -> None:
    """GET a path of the API and print the JSON answer

    An authenticated GET relative to the base URL; pretty JSON on stdout.
    """
    auth, _ = _auth_from(args)
    with EmmaSession(auth) as session:
        response = session.get(args.path, headers={"Accept": "application/json"})
    if not response.ok:
        code, message = _wire.parse_error(response.content)
        detail = ": ".join(part for part in (code, message) if part) or response.reason or ""
        raise CommandError(
            f"GET {args.path}: HTTP {response.status_code} {detail}".rstrip(), Exit.API_ERROR
        )
    text = _pretty_json(response, sys.stdout.encoding)
    if text is None:  # not JSON (or empty): the body as it came, byte for byte
        sys.stdout.flush()
        sys.stdout.buffer.write(response.content)
    else:
        sys.stdout.write(text + "\n")


@command("--port", "--token-lifetime")
def _serve(args: argparse.Namespace) -> None:
    """run a local fake emma in the foreground, for your own code and tools

    Run the embedded fake emma on 127.0.0.1 until Ctrl-C. First prints `export` lines (base
    URL, throwaway client ID and secret) on stdout, then one line per request served on
    stderr: method, path, status, never a token.
    """
    from .serve import run_serve  # the fake server is loaded only for demo and serve

    run_serve(args.port, args.token_lifetime, out=sys.stdout, log=sys.stderr)


@command()
def _demo(args: argparse.Namespace) -> None:
    """walk through the token lifecycle against a local fake emma

    Start a fake emma on 127.0.0.1 and show the token lifecycle: no credentials, no network.
    """
    from .demo import run_demo  # the fake server is loaded only for demo and serve

    run_demo(sys.stdout)


@command("--timeout", gets_a_token=True)
def _check(args: argparse.Namespace) -> None:
    """get a token (or reuse the cached one) and say how long it is valid

    Get a token, or reuse the one in the token cache, and print one line: how long it is
    valid and whether it came from the cache; never the token. The exit status says what
    failed (3: no token, 4: emma unreachable): a readiness or liveness probe.
    """
    auth, cache = _auth_from(args)
    token = auth.get_token()
    if cache is None:
        source = "newly issued, token cache not used"
    elif cache.served_the_token:
        source = "from the token cache"
    elif cache.failed_step is not None:  # the warning above says what failed, and why
        source = (
            f"newly issued, NOT saved in the token cache ({cache.failed_step} failed), so the "
            "next run asks emma again"
        )
    else:
        source = "newly issued, saved in the token cache"
    # Rounded down: a probe is never told the token lives longer than it does.
    sys.stdout.write(f"ok: token valid for {int(token.expires_in())} s, {source}\n")


def _pretty_json(response: requests.Response, encoding: str) -> str | None:
    """The body as indented JSON in characters ``encoding`` can take; None if it is not JSON.

    Non-ASCII characters stay as they are where stdout can show them, and become ``\\u``
    escapes (the same JSON) where it cannot (an ASCII terminal). A body labelled as something
    else than JSON, or one that does not survive the round trip (``1e400`` would print as
    ``Infinity``, which is not JSON), is not JSON here: it is written as it came.
    """
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return None
    try:
        data = response.json()
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
        text.encode(encoding)
    except UnicodeEncodeError:  # a ValueError too: caught first
        return json.dumps(data, indent=2, allow_nan=False)
    except ValueError:
        return None
    return text


def _api_at(error: requests.RequestException) -> str:
    """``the API at https://host:port``: where the failed request went, without path or query."""
    url = getattr(error.request, "url", None)
    origin = urls.origin(url) if isinstance(url, str) else None
    return "the API" if origin is None else f"the API at {urls.origin_text(origin)}"


def _host_of(args: argparse.Namespace) -> str:
    """``host:port`` of the base URL in use, for an error that names where emma was sought."""
    url = urls.base_url(getattr(args, "base_url", None))
    origin = urls.origin(url)
    return url if origin is None else urls.origin_text(origin).partition("://")[2]


def _fail(message: str, exit_code: Exit) -> Exit:
    if sys.stderr is not None:  # closed (`2>&-`): print() would write the error to stdout
        print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)  # on one line
    return exit_code


@contextlib.contextmanager
def logging_to(handler: logging.Handler, level: int) -> Iterator[None]:
    """The library's log records from ``level`` up go to ``handler`` as well, meanwhile.

    The logger is as it was afterwards: ``main()`` may run inside a larger program.
    """
    logger = logging.getLogger("requests_emma")
    previous_level = logger.level
    if not logger.isEnabledFor(level):
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _shown_by_default(record: logging.LogRecord) -> bool:
    # The token call logs each scheduled retry at WARNING as "... attempt N of M; retrying
    # in S s", and a token cache that failed a step as "token cache ... unavailable": the
    # command goes on, so no error line will say it. Other warnings repeat a failure that
    # is reported as the error line.
    message = record.getMessage()
    retry_or_cache = "retrying in" in message or message.startswith("token cache ")
    return record.levelno == logging.WARNING and retry_or_cache


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
