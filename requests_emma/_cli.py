"""The ``requests-emma`` command line: ``token``, ``get PATH``, ``serve`` and ``demo``.

Configuration comes from ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET`` and ``EMMA_API_URL``,
and the flags ``--base-url`` and ``--client-id``. The client secret is never a flag (flags
show in process lists and shell history): it comes from ``EMMA_CLIENT_SECRET``, or from a
prompt when stdin is a terminal.

Every error is one line on stderr, without a traceback or a secret, and the exit status
says what kind of error it was (see :data:`EXIT_CODES`). Usage errors never repeat an
argument's value, since any of them may be a secret typed in the wrong place (a mistyped
subcommand close to a real one is the exception: it is repeated with a suggestion).

At the default verbosity the token call's retries are shown on stderr, one line each, so a
struggling token endpoint is not a silent wait; ``-v`` shows all of the library's log.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import getpass
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from typing import NoReturn, TextIO

import requests

from . import __version__, _config, _wire
from ._auth import EmmaAuth
from ._errors import EmmaAuthError, TokenRequestError
from ._session import EmmaSession
from ._token import Token

PROG = "requests-emma"

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4
EXIT_INTERNAL = 70
EXIT_OUTPUT = 74  # sysexits' EX_IOERR
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: Exit status -> meaning, as ``--help`` shows it.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_API_ERROR: "the API answered with a non-2xx status (get)",
    EXIT_USAGE: "bad arguments or configuration (missing credentials, bad base URL)",
    EXIT_AUTH: "no token: credentials rejected, or the token endpoint failed",
    EXIT_UNREACHABLE: "emma could not be reached (connection failed, name unknown, timed out)",
    EXIT_INTERNAL: "an unexpected internal error",
    EXIT_OUTPUT: "the output could not be written (a full disk, say)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "stdout was closed early (piped into head, say); no message",
}


class CommandError(Exception):
    """An error to report on one line, with the exit status to use."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _UsageError(Exception):
    """Bad arguments: reported on one line, exit status 2, never with an argument's value."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # main() reports it on one line, like every other error, without argparse's usage block.
        raise _UsageError(message)


#: A quoted value in argparse's messages (``invalid choice: 'x'``); any value may be a secret.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')
#: An option's name as shown in errors (without its ``=value``); anything else is not shown.
_OPTION_NAME = re.compile(r"-[A-Za-z]|--[A-Za-z][A-Za-z0-9_-]*")
_COMMANDS = ("token", "get", "serve", "demo")
_INVALID_CHOICE = re.compile(r"argument COMMAND: invalid choice: (" + _QUOTED.pattern + ")")


def build_parser() -> argparse.ArgumentParser:
    # The connection flags work before or after the subcommand; SUPPRESS keeps a flag given
    # in one place from being reset by the other's default.
    connection = _Parser(add_help=False)
    connection.add_argument(
        "--base-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"API base URL (default: ${_config.API_URL_VAR} or {_config.DEFAULT_BASE_URL})",
    )
    connection.add_argument(
        "--client-id",
        metavar="ID",
        default=argparse.SUPPRESS,
        help=f"service app client ID (default: ${_config.CLIENT_ID_VAR})",
    )
    connection.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log token activity to stderr (never secrets)",
    )
    exit_codes = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    parser = _Parser(
        prog=PROG,
        parents=[connection],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tokens and quick calls for the emma API.",
        epilog=(
            f"The client secret comes from ${_config.CLIENT_SECRET_VAR}, or a prompt when "
            "stdin is a terminal;\nthere is no flag for it.\n\nexit status:\n" + exit_codes
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    token = commands.add_parser(
        "token",
        parents=[connection],
        help="print an access token",
        description="Print an access token alone on one line, e.g. for "
        '`curl -H "Authorization: Bearer $(requests-emma token)"`.',
    )
    token.add_argument(
        "--json",
        action="store_true",
        help="print the token's metadata (type, expiry times) instead; no secrets",
    )
    get = commands.add_parser(
        "get",
        parents=[connection],
        help="GET a path of the API and print the JSON answer",
        description="An authenticated GET relative to the base URL; pretty JSON on stdout.",
    )
    get.add_argument("path", metavar="PATH", help="e.g. /v1/locations or v1/locations?name=London")
    serve = commands.add_parser(
        "serve",
        help="run a local fake emma in the foreground, for your own code and tools",
        description="Run the embedded fake emma on 127.0.0.1 until Ctrl-C. First prints "
        "`export` lines (base URL, throwaway client ID and secret) on stdout, then one line "
        "per request served on stderr: method, path, status, never a token.",
    )
    serve.add_argument(
        "--port",
        type=port_number,
        default=0,
        metavar="N",
        help="the port on 127.0.0.1 to listen on (default: a free one)",
    )
    serve.add_argument(
        "--token-lifetime",
        type=whole_seconds,
        default=300,
        metavar="S",
        help="lifetime of the access tokens it issues, in whole seconds (default: 300)",
    )
    commands.add_parser(
        "demo",
        help="walk through the token lifecycle against a local fake emma",
        description="Start a fake emma on 127.0.0.1 and show the token lifecycle: no "
        "credentials, no network.",
    )
    return parser


def port_number(text: str) -> int:
    # An ArgumentTypeError's message is shown as it is: without the value.
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError("must be a port number from 0 to 65535 (0: a free one)")
    return int(text)


def whole_seconds(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of seconds, at least 1")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = _parse(sys.argv[1:] if argv is None else list(argv))
    except _UsageError as error:
        return _fail(f"{error} (see {PROG} --help)", EXIT_USAGE)
    # The demo shows the log in its tour; serve prints its own lines.
    logs = args.command not in ("demo", "serve")
    with _stderr_log(verbose=getattr(args, "verbose", False)) if logs else contextlib.nullcontext():
        return _report(args)


def _report(args: argparse.Namespace) -> int:
    """Run the command; report any failure on one line, returning its exit status."""
    try:
        return _run(args)
    except CommandError as error:
        return _fail(str(error), error.exit_code)
    except TokenRequestError as error:
        if error.status_code is None:  # no answer came: refused, unknown name, timed out
            return _fail(f"could not reach emma at {_host_of(args)}: {error}", EXIT_UNREACHABLE)
        return _fail(str(error), EXIT_AUTH)
    except EmmaAuthError as error:
        return _fail(str(error), EXIT_AUTH)
    except requests.ConnectionError as error:  # ConnectTimeout included
        reason = _os_reason(error) or ("timed out" if isinstance(error, requests.Timeout) else "")
        return _fail(
            f"could not connect to {_api_at(error)}" + (f" ({reason})" if reason else ""),
            EXIT_UNREACHABLE,
        )
    except requests.Timeout as error:
        return _fail(f"{_api_at(error)} did not answer in time", EXIT_UNREACHABLE)
    except requests.RequestException as error:
        return _fail(f"request failed: {error}", EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away: point stdout at /dev/null so the flush at exit stays quiet.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as error:  # the promise is one line, never a traceback
        if getattr(args, "verbose", False):
            logging.getLogger("requests_emma").exception("unexpected error")
        return _fail(
            f"unexpected {type(error).__name__} (a bug; --verbose shows the traceback)",
            EXIT_INTERNAL,
        )


def _run(args: argparse.Namespace) -> int:
    auth = None if args.command in ("demo", "serve") else _auth_from(args)
    try:
        if args.command == "demo":
            from ._demo import run_demo  # the fake server is loaded only for the demo

            status = run_demo(sys.stdout)
        elif args.command == "serve":
            from ._serve import ListenError, run_serve

            try:
                status = run_serve(args.port, args.token_lifetime, out=sys.stdout, log=sys.stderr)
            except ListenError as error:
                raise CommandError(str(error), EXIT_USAGE) from None
        elif args.command == "token":
            assert auth is not None
            status = _token(auth, as_json=args.json, out=sys.stdout)
        else:
            assert auth is not None
            status = _get(auth, args.path, out=sys.stdout)
        sys.stdout.flush()  # now, while a failure to write can still be reported
    except (requests.RequestException, BrokenPipeError):
        raise  # both are OSErrors too; handled by main()
    except OSError as error:  # writing stdout failed: a full disk, a quota, an I/O error
        _discard_stdout()
        raise CommandError(f"cannot write output: {error.strerror or error}", EXIT_OUTPUT) from None
    return status


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _parse(arguments: list[str]) -> argparse.Namespace:
    """The parsed arguments, or a ``_UsageError`` that shows no argument's value."""
    # Someone looking for a secret flag is told where the secret goes instead.
    options = arguments[: arguments.index("--")] if "--" in arguments else arguments
    if any(arg.startswith("-") and "secret" in arg.partition("=")[0].lower() for arg in options):
        raise _UsageError(
            "there is no option for the client secret (options show in process lists and "
            f"shell history): set {_config.CLIENT_SECRET_VAR}, or run in a terminal to be asked"
        )
    try:
        args, unrecognized = build_parser().parse_known_args(arguments)
    except _UsageError as error:
        mistyped = _INVALID_CHOICE.search(str(error))
        if mistyped is not None:
            raise _UsageError(_unknown_command(mistyped[1][1:-1])) from None
        raise _UsageError(_QUOTED.sub(_quoted_if_a_command, str(error))) from None
    if unrecognized:
        raise _UsageError(_unrecognized(unrecognized))
    if args.command == "get" and not args.path.strip():
        raise _UsageError("get: PATH is empty; give a path such as /v1/locations")
    return args


def _unknown_command(given: str) -> str:
    """``unknown command 'gte'; did you mean 'get'?``: repeated only when it is close to one."""
    choices = ", ".join(_COMMANDS)
    close = difflib.get_close_matches(given.lower(), _COMMANDS, n=1, cutoff=0.6)
    if not close:
        return f"unknown command (value not shown); choose from {choices}"
    return f"unknown command {given!r}; did you mean {close[0]!r}? (choose from {choices})"


def _quoted_if_a_command(match: re.Match[str]) -> str:
    return match[0] if match[0][1:-1] in _COMMANDS else "(value not shown)"


def _unrecognized(arguments: list[str]) -> str:
    """``unknown option --foo; 1 unexpected argument ...``: option names only, no values."""
    names = [arg.partition("=")[0] for arg in arguments]
    options = [name for name in names if _OPTION_NAME.fullmatch(name)]
    others = len(arguments) - len(options)
    problems: list[str] = []
    if options:
        problems.append(f"unknown option{'s' if len(options) > 1 else ''} {', '.join(options)}")
    if others:
        plural = "s" if others > 1 else ""
        problems.append(f"{others} unexpected argument{plural} (not shown: it could be a secret)")
    return "; ".join(problems)


def _auth_from(args: argparse.Namespace) -> EmmaAuth:
    # Everything is checked before the secret is asked for.
    base_url = getattr(args, "base_url", None)
    source = "--base-url" if base_url is not None else _config.API_URL_VAR
    try:
        checked = _config.base_url(base_url)
    except ValueError as error:
        raise CommandError(f"{source}: {_without_value(str(error))}", EXIT_USAGE) from None
    client_id = getattr(args, "client_id", None) or os.environ.get(_config.CLIENT_ID_VAR)
    if not client_id:
        raise CommandError(
            f"no client ID: pass --client-id or set {_config.CLIENT_ID_VAR}", EXIT_USAGE
        )
    client_secret = _client_secret()
    try:
        return EmmaAuth(client_id, client_secret, base_url=checked)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None


def _without_value(message: str) -> str:
    """The message with every quoted value replaced, except the example of a good base URL."""
    example = repr(_config.DEFAULT_BASE_URL)
    return _QUOTED.sub(lambda m: m[0] if m[0] == example else "(value not shown)", message)


def _client_secret() -> str:
    secret = os.environ.get(_config.CLIENT_SECRET_VAR)
    if secret:
        return secret
    if sys.stdin is None or not sys.stdin.isatty():
        raise CommandError(
            f"no client secret: set {_config.CLIENT_SECRET_VAR} (or run in a terminal to be asked)",
            EXIT_USAGE,
        )
    try:
        secret = getpass.getpass("emma client secret: ")
    except EOFError:
        _end_prompt_line()
        raise CommandError(
            "no client secret given: end of input (Ctrl-D) at the prompt", EXIT_USAGE
        ) from None
    except KeyboardInterrupt:
        _end_prompt_line()
        raise
    if not secret:
        raise CommandError("no client secret: an empty one was entered at the prompt", EXIT_USAGE)
    return secret


def _end_prompt_line() -> None:
    """Interrupted, getpass leaves its prompt line open: end it where getpass wrote it."""
    try:
        with open("/dev/tty", "w") as tty:  # getpass prompts there when it can
            tty.write("\n")
    except OSError:
        sys.stderr.write("\n")


def _token(auth: EmmaAuth, *, as_json: bool, out: TextIO) -> int:
    token = auth.get_token()
    if as_json:
        out.write(json.dumps(token_metadata(token, auth), indent=2) + "\n")
    else:
        out.write(token.access_token + "\n")
    return EXIT_OK


def token_metadata(token: Token, auth: EmmaAuth) -> dict[str, object]:
    """What ``token --json`` prints: everything about the token but the tokens themselves."""
    metadata: dict[str, object] = {
        "token_type": token.token_type,
        "expires_at": round(token.expires_at, 3),
        "expires_at_utc": _utc(token.expires_at),
        "expires_in": int(token.expires_in()),
        "has_refresh_token": token.refresh_token is not None,
        "refresh_expires_at": None,
        "refresh_expires_at_utc": None,
        "base_url": auth.base_url,
    }
    if token.refresh_expires_at is not None:
        metadata["refresh_expires_at"] = round(token.refresh_expires_at, 3)
        metadata["refresh_expires_at_utc"] = _utc(token.refresh_expires_at)
    return metadata


def _get(auth: EmmaAuth, path: str, *, out: TextIO) -> int:
    with EmmaSession(auth) as session:
        response = session.get(path, headers={"Accept": "application/json"})
    if not response.ok:
        code, message = _wire.parse_error(response.content)
        detail = ": ".join(part for part in (code, message) if part) or response.reason or ""
        raise CommandError(
            f"GET {path}: HTTP {response.status_code} {detail}".rstrip(), EXIT_API_ERROR
        )
    if not response.content:
        return EXIT_OK
    try:
        data = response.json()
    except ValueError:
        out.write(response.text if response.text.endswith("\n") else response.text + "\n")
    else:
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


def _api_at(error: requests.RequestException) -> str:
    """``the API at https://host:port``: where the failed request went, without path or query."""
    url = getattr(error.request, "url", None)
    origin = _config.origin(url) if isinstance(url, str) else None
    if origin is None:
        return "the API"
    scheme, host, port = origin
    return f"the API at {scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _fail(message: str, exit_code: int) -> int:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return exit_code


@contextlib.contextmanager
def _stderr_log(*, verbose: bool) -> Iterator[None]:
    """``-v``: every log record on stderr. Otherwise only the token call's retry lines, so a
    struggling endpoint is not a silent wait, and no failure is reported twice.

    The logger is as it was afterwards: ``main()`` may run inside a larger program.
    """
    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("requests_emma")
    previous_level = logger.level
    if verbose:
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(message)s"))
        logger.setLevel(logging.DEBUG)
    else:
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        handler.addFilter(_is_a_retry)
        if not logger.isEnabledFor(logging.WARNING):
            logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _is_a_retry(record: logging.LogRecord) -> bool:
    # The token call logs each scheduled retry at WARNING as "... attempt N of M; retrying
    # in S s"; other warnings repeat a failure that is reported as the error line.
    return record.levelno == logging.WARNING and "retrying in" in record.getMessage()


def _host_of(args: argparse.Namespace) -> str:
    """``host:port`` of the base URL in use, for an error that names where emma was sought."""
    url = _config.base_url(getattr(args, "base_url", None))
    origin = _config.origin(url)
    if origin is None:
        return url
    _, host, port = origin
    return f"{f'[{host}]' if ':' in host else host}:{port}"


def _os_reason(error: BaseException) -> str | None:
    """The operating system's words for a network failure ("Connection refused"), found
    down the chain of causes urllib3 and requests wrap it in."""
    pending: list[object] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        pending.extend((current.__cause__, current.__context__, getattr(current, "reason", None)))
        pending.extend(current.args)
    return None


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
