"""The command line's interface: its arguments, its exit statuses, and usage errors.

A usage error never repeats an argument's value, since any of them may be a secret typed in
the wrong place: argparse's quoted values are replaced, unknown options are named without
their values, and other unexpected arguments are only counted. A mistyped subcommand close to
a real one is the exception: it is not a secret, and it is repeated with a suggestion.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import enum
import inspect
import math
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, NoReturn

from .. import __version__
from .._core import credentials, urls

PROG = "requests-emma"


class Exit(enum.IntEnum):
    """The exit statuses; ``main()``'s docstring, which ``--help`` shows, says what each means."""

    OK = 0
    API_ERROR = 1
    USAGE = 2
    AUTH = 3
    UNREACHABLE = 4
    INTERNAL = 70
    OUTPUT = 74  # sysexits' EX_IOERR
    INTERRUPTED = 130
    BROKEN_PIPE = 141


class CommandError(Exception):
    """An error to report on one line, with the exit status to use (by default: bad usage,
    such as bad arguments, which are reported without their values)."""

    def __init__(self, message: str, exit_code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # main() reports it on one line, like every other error, without argparse's usage
        # block, and without the values quoted in it: a mistyped command is named only when
        # it is close to a real one.
        mistyped = _INVALID_CHOICE.search(message)
        if mistyped is not None:
            raise CommandError(_unknown_command(mistyped[1][1:-1]))
        raise CommandError(_QUOTED.sub(_quoted_if_a_command, message))


def whole_number(lowest: int, highest: float, problem: str) -> Callable[[str], int]:
    """An argument type for plain digits from ``lowest`` to ``highest``; else ``problem``."""

    def parse(text: str) -> int:
        # An ArgumentTypeError's message is shown as it is: without the value.
        if not (text.isascii() and text.isdigit()) or not lowest <= int(text) <= highest:
            raise argparse.ArgumentTypeError(problem)
        return int(text)

    return parse


def positive_seconds(text: str) -> float:
    with contextlib.suppress(ValueError):  # not a number
        value = float(text)
        if 0 < value < math.inf:  # not NaN either
            return value
    raise argparse.ArgumentTypeError("must be a number of seconds greater than 0, such as 2.5")


#: The flags of the commands that get a token; they work before or after the command.
CONNECTION: dict[str, dict[str, Any]] = {
    "--base-url": {
        "metavar": "URL",
        "help": f"API base URL (default: ${credentials.API_URL_VAR} or {urls.DEFAULT_BASE_URL})",
    },
    "--client-id": {
        "metavar": "ID",
        "help": f"service app client ID (default: ${credentials.CLIENT_ID_VAR})",
    },
    "-v --verbose": {
        "action": "store_true",
        "help": "log token activity to stderr (never secrets)",
    },
    "--no-cache": {
        "action": "store_true",
        "help": "neither reuse nor save a token in the user's token cache (token, get, check)",
    },
}
#: The other commands' own arguments, by name; :func:`command` says which command takes which.
OPTIONS: dict[str, dict[str, Any]] = {
    "--json": {
        "action": "store_true",
        "help": "print the token's metadata (type, expiry times, whether it came from the "
        "cache) instead; no secrets",
    },
    "--timeout": {
        "type": positive_seconds,
        "metavar": "SECONDS",
        "help": "end the token work within SECONDS: the token cache's lock, every token call "
        "and the waits between retries (default: the token call's 30 s deadline)",
    },
    "path": {"metavar": "PATH", "help": "e.g. /v1/locations or v1/locations?name=London"},
    "--port": {
        "type": whole_number(0, 65535, "must be a port number from 0 to 65535 (0: a free one)"),
        "default": 0,
        "metavar": "N",
        "help": "the port on 127.0.0.1 to listen on (default: a free one)",
    },
    "--token-lifetime": {
        "type": whole_number(1, math.inf, "must be a whole number of seconds, at least 1"),
        "default": 300,
        "metavar": "S",
        "help": "lifetime of the access tokens it issues, in whole seconds (default: 300)",
    },
}
#: A command's function: it runs the command with the parsed arguments.
Run = Callable[[argparse.Namespace], None]
#: Each command's function, own ``OPTIONS``, and whether it gets a token (and so takes the
#: ``CONNECTION`` flags), in the order ``--help`` lists them (filled by :func:`command`).
COMMANDS: dict[str, tuple[Run, tuple[str, ...], bool]] = {}


def command(*options: str, gets_a_token: bool = False) -> Callable[[Run], Run]:
    """Make the function the command named after it (without its leading ``_``), taking
    these ``OPTIONS``, and the ``CONNECTION`` flags if it ``gets_a_token``.

    Its docstring is its help, as click and typer read it: the first paragraph is its line in
    the list of commands, the rest its description (argparse rewraps both).
    """

    def register(run: Run) -> Run:
        COMMANDS[run.__name__.lstrip("_")] = (run, options, gets_a_token)
        return run

    return register


def build_parser(about: str) -> argparse.ArgumentParser:
    """The parser; ``about`` is the program's help, as :func:`command` takes a command's: the
    first paragraph is the description, the rest follows the options as it is written."""
    description, _, epilog = inspect.cleandoc(about).partition("\n\n")
    # SUPPRESS keeps a connection flag given before the command from being reset by the
    # command's default, and the other way round.
    connection = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    for flags, options in CONNECTION.items():
        connection.add_argument(*flags.split(), **options)
    parser = _Parser(
        prog=PROG,
        parents=[connection],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=description,
        epilog=epilog,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (run, own_options, gets_a_token) in COMMANDS.items():
        summary, _, details = (run.__doc__ or "").partition("\n\n")
        parents = [connection] if gets_a_token else []
        subparser = commands.add_parser(name, parents=parents, help=summary, description=details)
        subparser.set_defaults(run=run, gets_a_token=gets_a_token)
        for flag in own_options:
            subparser.add_argument(flag, **OPTIONS[flag])
    return parser


#: A quoted value in argparse's messages (``invalid choice: 'x'``); any value may be a secret.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')
#: An option's name as shown in errors (without its ``=value``); anything else is not shown.
_OPTION_NAME = re.compile(r"-[A-Za-z]|--[A-Za-z][A-Za-z0-9_-]*")
_INVALID_CHOICE = re.compile(r"argument COMMAND: invalid choice: (" + _QUOTED.pattern + ")")


def parse(arguments: list[str], about: str) -> argparse.Namespace:
    """The parsed arguments, or a ``CommandError`` (bad usage) that shows no argument's value;
    ``about``: the program's help (see :func:`build_parser`)."""
    # Someone looking for a secret flag is told where the secret goes instead.
    options = arguments[: arguments.index("--")] if "--" in arguments else arguments
    if any(arg.startswith("-") and "secret" in arg.partition("=")[0].lower() for arg in options):
        raise CommandError(
            "there is no option for the client secret (options show in process lists and "
            f"shell history): set {credentials.CLIENT_SECRET_VAR}, or run in a terminal to be asked"
        )
    args, unrecognized = build_parser(about).parse_known_args(arguments)
    if unrecognized:
        raise CommandError(_unrecognized(unrecognized))
    if args.command == "get" and not args.path.strip():
        raise CommandError("get: PATH is empty; give a path such as /v1/locations")
    return args


def _unknown_command(given: str) -> str:
    """``unknown command 'gte'; did you mean 'get'?``: repeated only when it is close to one."""
    choices = ", ".join(COMMANDS)
    close = difflib.get_close_matches(given.lower(), COMMANDS, n=1, cutoff=0.6)
    if not close:
        return f"unknown command (value not shown); choose from {choices}"
    return f"unknown command {given!r}; did you mean {close[0]!r}? (choose from {choices})"


def _quoted_if_a_command(match: re.Match[str]) -> str:
    return match[0] if match[0][1:-1] in COMMANDS else "(value not shown)"


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


def without_value(message: str, given_url: str | None = None) -> str:
    """The message with every quoted value replaced, except the example of a good base URL
    and ``given_url`` shown as :func:`shown_url` shows it."""
    shown = {repr(urls.DEFAULT_BASE_URL): repr(urls.DEFAULT_BASE_URL)}
    if given_url is not None and shown_url(given_url) is not None:
        shown[repr(given_url)] = repr(shown_url(given_url))
    return _QUOTED.sub(lambda m: shown.get(m[0], "(value not shown)"), message)


def shown_url(text: str) -> str | None:
    """``text`` as an error may show it: an http(s) URL without its user info, its query and
    fragment cut to ``?...`` and ``#...``; ``None`` for anything else, which may be a secret
    typed in the wrong place."""
    try:
        parts = urllib.parse.urlsplit(text.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return url + ("?..." if parts.query else "") + ("#..." if parts.fragment else "")
