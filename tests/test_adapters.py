"""What every client adapter shares (``requests_emma/_adapter.py``): subclasses, unknown
options, the errors as each HTTP stack's, and the renewal's repr in tracebacks."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import httpx
import pytest

from requests_emma import CredentialsError, EmmaAuth, FileTokenCache
from requests_emma.aiohttp import EmmaAiohttpMiddleware
from requests_emma.httpx import EmmaHttpxAuth
from requests_emma.testing import FakeEmmaServer

ADAPTERS: list[type[Any]] = [EmmaAuth, EmmaHttpxAuth, EmmaAiohttpMiddleware]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda cls: cls.__name__)
def test_a_users_subclass_of_an_adapter_works(adapter: type[Any], server: FakeEmmaServer) -> None:
    """A subclass of any adapter, with no class keyword, is made and keeps its token calls."""
    subclass = type("Mine", (adapter,), {})
    auth = subclass(server.client_id, server.client_secret, base_url=server.base_url)
    assert repr(auth).startswith("Mine(client_id=")
    assert auth.base_url == server.base_url


@pytest.mark.parametrize("adapter", [EmmaHttpxAuth, EmmaAiohttpMiddleware])
def test_an_unknown_option_is_named_against_the_adapter(adapter: type[Any]) -> None:
    """A misspelt option is a TypeError naming the adapter the user called, not an internal
    class."""
    with pytest.raises(TypeError, match=rf"^{adapter.__name__}\(\) got .* 'sesion'"):
        adapter("id", "secret", sesion=None)


def _refused_by_httpx(server: FakeEmmaServer) -> CredentialsError:
    auth = EmmaHttpxAuth(server.client_id, "wrong secret", base_url=server.base_url)
    with pytest.raises(CredentialsError) as caught:
        auth.get_token()
    return caught.value


def _refused_by_aiohttp(server: FakeEmmaServer) -> CredentialsError:
    middleware = EmmaAiohttpMiddleware(server.client_id, "wrong secret", base_url=server.base_url)
    with pytest.raises(CredentialsError) as caught:
        asyncio.run(middleware.get_token())
    return caught.value


@pytest.mark.parametrize("refused", [_refused_by_httpx, _refused_by_aiohttp])
def test_an_error_as_the_stacks_pickles_whole(refused: Any, server: FakeEmmaServer) -> None:
    """An error raised through httpx or aiohttp (a class made at run time) pickles, and comes
    back of the same classes, with the same message and fields."""
    error = refused(server)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert copy.status_code == error.status_code == 400


def test_an_aiohttp_error_has_the_request_of_every_requests_error(server: FakeEmmaServer) -> None:
    """Like every requests.RequestException, an error raised through aiohttp has a
    ``request`` (none: it would carry the secret)."""
    assert _refused_by_aiohttp(server).request is None


def test_an_httpx_error_has_no_request(server: FakeEmmaServer) -> None:
    """An error raised through httpx says it has no request, as httpx's errors do."""
    with pytest.raises(RuntimeError, match="request"):
        _ = _refused_by_httpx(server).request  # type: ignore[attr-defined]
    assert isinstance(_refused_by_httpx(server), httpx.HTTPError)


def test_a_renewal_in_a_traceback_shows_no_cache_key(server: FakeEmmaServer, tmp_path: Any) -> None:
    """A failed renewal with a shared cache, rendered with its frames' locals, shows neither
    the secret nor the cache key (a hash of it)."""
    import traceback

    from requests_emma._caches.protocol import cache_key

    secret = "a wrong secret"
    cache = FileTokenCache(tmp_path)
    auth = EmmaAuth(server.client_id, secret, base_url=server.base_url, token_cache=cache)
    with pytest.raises(CredentialsError) as caught:
        auth.get_token()
    error = caught.value
    below_this_test = error.__traceback__.tb_next if error.__traceback__ else None
    shown = "".join(
        traceback.TracebackException(
            type(error), error, below_this_test, capture_locals=True
        ).format()
    )
    assert "plan = " in shown  # the locals are there
    assert cache_key(server.base_url, server.client_id, secret) not in shown
    assert secret not in shown
