"""Construction errors hold no secret in any frame: not in a local, not in what a local holds.

Sentry, ``pytest -l``, IPython's verbose mode and rich show every frame of a traceback with
the ``repr`` of its local variables. A configuration error raised while ``EmmaAuth``,
``EmmaSession`` or ``RedisTokenCache.from_url`` is being made must not show the client
secret or a Redis password there, and formatting it that way must work at all (it calls
``repr`` of a half-made ``self``).
"""

from __future__ import annotations

import traceback
import types
from collections.abc import Callable, Iterator

import pytest
import requests
from redis.exceptions import ConnectionError as RedisConnectionError

from requests_emma import CredentialsError, EmmaAuth, EmmaSession, RedisTokenCache
from requests_emma._core.secret import Secret

# Module constants, not locals: the frame that catches the error is in its traceback.
SECRET = "frame-secret-5b3e1c"
PASSWORD = "frame-password-8d21f7"
BASE_URL = "http://127.0.0.1:1"  # loopback, so plain http is allowed; nothing is sent
REDIS_URL = f"redis://user:{PASSWORD}@127.0.0.1:1/0"  # nothing listens on port 1


def raised(make: Callable[[], object]) -> BaseException:
    """The exception ``make()`` raises; its traceback starts in this frame."""
    try:
        make()
    except Exception as exc:  # noqa: BLE001 - whatever it is, it is checked
        return exc
    raise AssertionError("no error was raised")


def chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception chained to it, shown or suppressed."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        pending += (link.__cause__, link.__context__)


_OPAQUE = (
    str,
    bytes,
    int,
    float,
    bool,
    type(None),
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.FrameType,
    types.TracebackType,
)


def shown(value: object, path: str, depth: int, seen: set[int]) -> Iterator[tuple[str, str]]:
    """``(path, repr)`` of ``value`` and, a few levels down, of what it holds: the items of
    containers and the attributes of objects. A :class:`Secret` is shown as it reprs, the
    one object whose content is meant to stay inside it."""
    yield path, repr(value)
    if isinstance(value, (Secret, *_OPAQUE)) or depth == 0 or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            yield from shown(key, f"{path} key", depth - 1, seen)
            yield from shown(item, f"{path}[{key!r}]", depth - 1, seen)
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            yield from shown(item, f"{path}[{index}]", depth - 1, seen)
        return
    attributes = dict(getattr(value, "__dict__", {}))
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(value, name):
                attributes[name] = getattr(value, name)
    for name, item in attributes.items():
        yield from shown(item, f"{path}.{name}", depth - 1, seen)


def frames_showing(error: BaseException, text: str) -> list[str]:
    """Where ``text`` shows in the frames of ``error`` and of its chain, each frame's
    locals repr'd as Sentry does, and what they hold looked into."""
    found = []
    for link in chain(error):
        for frame, _ in traceback.walk_tb(link.__traceback__):
            for name, value in frame.f_locals.items():
                for path, text_shown in shown(value, name, 4, set()):
                    if text in text_shown:
                        found.append(f"{frame.f_code.co_name}(): {path}")
    return found


def with_locals(error: BaseException) -> str:
    """The error as ``pytest -l`` shows it: every frame with the repr of each local."""
    rendered = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(rendered.format())


def assert_hidden(error: BaseException, text: str) -> None:
    assert frames_showing(error, text) == []
    rendered = with_locals(error)
    assert "self = " in rendered or "cls = " in rendered  # the locals are there
    assert text not in rendered


AUTH_ERRORS: dict[str, Callable[[], object]] = {
    "no client id": lambda: EmmaAuth(None, SECRET, base_url=BASE_URL),
    "client id not a string": lambda: EmmaAuth(3, SECRET, base_url=BASE_URL),  # type: ignore[arg-type]
    "base_url": lambda: EmmaAuth("id", SECRET, base_url="http://example.com"),
    "refresh_margin": lambda: EmmaAuth("id", SECRET, base_url=BASE_URL, refresh_margin=-1),
    "timeout": lambda: EmmaAuth("id", SECRET, base_url=BASE_URL, timeout=0),
    "session": lambda: EmmaAuth("id", SECRET, base_url=BASE_URL, session="s"),  # type: ignore[arg-type]
    "on_token": lambda: EmmaAuth("id", SECRET, base_url=BASE_URL, on_token=3),  # type: ignore[arg-type]
    "retry": lambda: EmmaAuth("id", SECRET, base_url=BASE_URL, retry="r"),  # type: ignore[arg-type]
    "token_cache": lambda: EmmaAuth("id", SECRET, base_url=BASE_URL, token_cache=object()),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", AUTH_ERRORS)
def test_emma_auth_errors_hold_no_secret_in_any_frame(case: str) -> None:
    """A bad EmmaAuth option, with the secret passed, leaves the secret in no frame."""
    error = raised(AUTH_ERRORS[case])
    assert isinstance(error, ValueError | CredentialsError)
    assert_hidden(error, SECRET)


@pytest.mark.parametrize("make", [EmmaAuth, EmmaSession])
def test_no_client_id_with_the_secret_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[], object]
) -> None:
    """EMMA_CLIENT_SECRET set, no client id: the CredentialsError's frames hold no secret."""
    monkeypatch.setenv("EMMA_CLIENT_SECRET", SECRET)
    error = raised(make)
    assert isinstance(error, CredentialsError)
    assert "EMMA_CLIENT_ID" in str(error)
    assert_hidden(error, SECRET)


SESSION_ERRORS: dict[str, Callable[[], object]] = {
    "timeout": lambda: EmmaSession(EmmaAuth("id", SECRET, base_url=BASE_URL), timeout=-1),
    "retries": lambda: EmmaSession(EmmaAuth("id", SECRET, base_url=BASE_URL), retries="x"),  # type: ignore[arg-type]
    "base_url": lambda: EmmaSession(
        EmmaAuth("id", SECRET, base_url=BASE_URL), base_url="http://127.0.0.2:1"
    ),
}


@pytest.mark.parametrize("case", SESSION_ERRORS)
def test_emma_session_errors_hold_no_secret_in_any_frame(case: str) -> None:
    """A bad EmmaSession option, with an auth holding the secret, leaves it in no frame."""
    error = raised(SESSION_ERRORS[case])
    assert isinstance(error, ValueError)
    assert_hidden(error, SECRET)


def test_emma_session_base_url_error_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """EmmaSession() whose EmmaAuth from the environment refuses the base URL: no secret."""
    monkeypatch.setenv("EMMA_CLIENT_ID", "id")
    monkeypatch.setenv("EMMA_CLIENT_SECRET", SECRET)
    error = raised(lambda: EmmaSession(base_url="http://example.com"))
    assert isinstance(error, ValueError)
    assert_hidden(error, SECRET)


REDIS_ERRORS: dict[str, Callable[[], object]] = {
    "bad port": lambda: RedisTokenCache.from_url(f"redis://user:{PASSWORD}@127.0.0.1:x/0"),
    "bad scheme": lambda: RedisTokenCache.from_url(f"http://user:{PASSWORD}@127.0.0.1/0"),
    "socket_timeout": lambda: RedisTokenCache.from_url(REDIS_URL, socket_timeout=-1),
    "lock_timeout": lambda: RedisTokenCache.from_url(REDIS_URL, lock_timeout=0),
    "blocking_timeout": lambda: RedisTokenCache.from_url(REDIS_URL, blocking_timeout=0),
    "prefix": lambda: RedisTokenCache.from_url(REDIS_URL, prefix=3),  # type: ignore[arg-type]
    "redis option": lambda: RedisTokenCache.from_url(REDIS_URL, max_connections="x"),
    "connecting": lambda: RedisTokenCache.from_url(REDIS_URL, single_connection_client=True),
}


@pytest.mark.parametrize("case", REDIS_ERRORS)
def test_redis_from_url_errors_hold_no_password_in_any_frame(case: str) -> None:
    """A from_url error (bad URL, bad option, an error from redis-py) shows no password."""
    error = raised(REDIS_ERRORS[case])
    assert isinstance(error, ValueError | RedisConnectionError)
    assert PASSWORD not in str(error)
    assert_hidden(error, PASSWORD)


def test_a_redis_option_error_says_it_is_the_option() -> None:
    """An option redis-py refuses is named as such, not taken for a bad URL."""
    with pytest.raises(ValueError, match="max_connections") as caught:
        RedisTokenCache.from_url(REDIS_URL, max_connections="x")
    assert "not a Redis URL" not in str(caught.value)


def half_made_self(error: BaseException, function: str) -> object:
    """``self`` of the frame of ``function`` in the traceback of ``error``."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_name == function:
            return frame.f_locals["self"]
    raise AssertionError(f"no {function} frame")


@pytest.mark.parametrize("cls", [EmmaAuth, EmmaSession])
def test_repr_of_an_instance_never_initialised(cls: type) -> None:
    """repr works on an instance whose __init__ never ran, and names the class."""
    text = repr(object.__new__(cls))
    assert text.startswith(f"{cls.__name__}(")


def test_repr_of_an_auth_whose_init_raised_halfway() -> None:
    """repr of an EmmaAuth whose __init__ raised, and of its token source's half-made self,
    shows what was set, and no secret."""
    error = raised(lambda: EmmaAuth("the-id", SECRET, base_url="http://example.com"))
    shown = [
        repr(frame.f_locals["self"])
        for frame, _ in traceback.walk_tb(error.__traceback__)
        if frame.f_code.co_name == "__init__"
    ]
    assert shown == ["EmmaAuth(<not fully constructed>)", "TokenSource(client_id='the-id')"]


HTTPX_AUTH_ERRORS: dict[str, Callable[[type], object]] = {
    "no client id": lambda cls: cls(None, SECRET, base_url=BASE_URL),
    "base_url": lambda cls: cls("id", SECRET, base_url="http://example.com"),
    "client": lambda cls: cls("id", SECRET, base_url=BASE_URL, client="c"),
    "async_client": lambda cls: cls("id", SECRET, base_url=BASE_URL, async_client="c"),
    "retry": lambda cls: cls("id", SECRET, base_url=BASE_URL, retry="r"),
}


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
@pytest.mark.parametrize("case", HTTPX_AUTH_ERRORS)
def test_httpx_auth_errors_hold_no_secret_in_any_frame(module: str, case: str) -> None:
    """A bad EmmaHttpxAuth (EmmaHttpx2Auth) option, with the secret passed, leaves the
    secret in no frame."""
    import importlib

    pytest.importorskip(module)  # httpx2 needs Python 3.11 or newer
    adapter = importlib.import_module(f"requests_emma.{module}")
    cls = adapter.EmmaHttpxAuth if module == "httpx" else adapter.EmmaHttpx2Auth
    error = raised(lambda: HTTPX_AUTH_ERRORS[case](cls))
    assert isinstance(error, ValueError | CredentialsError)
    assert_hidden(error, SECRET)


def test_repr_of_a_session_whose_init_raised_halfway() -> None:
    """repr of an EmmaSession whose __init__ raised works."""
    error = raised(lambda: EmmaSession(EmmaAuth("id", SECRET, base_url=BASE_URL), timeout=-1))
    assert repr(half_made_self(error, "__init__")).startswith("EmmaSession(")


def test_emma_auth_options_are_keyword_only() -> None:
    """A third positional argument to EmmaAuth is Python's TypeError, which shows no value
    given (the secret among them); two positional arguments and keyword options are taken."""
    auth = EmmaAuth("id", SECRET, base_url=BASE_URL, timeout=5)
    assert repr(auth) == f"EmmaAuth(client_id='id', base_url='{BASE_URL}')"
    error = raised(lambda: EmmaAuth("id", SECRET, BASE_URL))  # type: ignore[misc]
    assert isinstance(error, TypeError)
    assert "positional arguments but 4 were given" in str(error)
    assert SECRET not in str(error) and BASE_URL not in str(error)


def test_emma_session_options_are_keyword_only() -> None:
    """A second positional argument to EmmaSession is Python's TypeError; the auth as
    positional argument and keyword options are taken."""
    auth = EmmaAuth("id", SECRET, base_url=BASE_URL)
    with EmmaSession(auth, base_url=BASE_URL + "/v1", timeout=5) as session:
        assert isinstance(session, requests.Session) and session.auth is auth
        assert repr(session) == f"EmmaSession(base_url='{BASE_URL}/v1')"
    error = raised(lambda: EmmaSession(None, BASE_URL))  # type: ignore[misc]
    assert isinstance(error, TypeError)
    assert "positional arguments but 3 were given" in str(error)
    assert BASE_URL not in str(error)
