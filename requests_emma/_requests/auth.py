"""``EmmaAuth``: the token source (``_source/``) as a ``requests`` auth plugin.

A thin shell: the source holds the token and runs its renewals, the lifecycle decides, and
this module adds what is requests': the per-request path, the token endpoint over requests
(``transport.py``), the 401 hook and its resend (``replay.py``).

The per-request path
    Only requests to the base URL's scheme, host and port get the token: a prefix test for
    the spelling requests produces, the full parse for any other. A fresh token costs one
    clock reading compared with the source's published deadline, and the ready-made header.
    ``requests`` strips ``Authorization`` from a redirect to another host and does not call
    the auth again, so nothing here may re-add it: the hook checks the origin of the request
    that got the 401.

The 401 replay
    The source renews only if the rejected token is still the current one; otherwise
    another thread renewed it already. A body that cannot be sent again byte for byte (a
    generator, a forward-only stream) is never replayed: the 401 is returned, and the token
    is not sent again. A 403 never renews.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests
from requests.auth import AuthBase

from .._adapter import Adapter
from .._caches.protocol import TokenCache
from .._core.retry_policy import RetryPolicy
from .._core.token import Token

if TYPE_CHECKING:
    from .._source import TokenSource
    from .transport import TokenEndpoint

logger = logging.getLogger("requests_emma")


class EmmaAuth(Adapter, AuthBase):
    """Authenticates requests to the emma API with a self-renewing bearer token.

    Arguments left as ``None`` are read from ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET`` and
    ``EMMA_API_URL`` (default ``https://api.emma.ms/external``). Constructing it makes no
    network call; the first request fetches the token.

    ``refresh_margin``: renew this many seconds before expiry (``None``: a fifth of the
    token's lifetime, at most 60 s); the renewal runs in the background while the current
    token keeps serving. ``timeout``: for each token call, seconds or ``(connect, read)``.
    ``session``: the ``requests.Session`` for token calls (proxies, TLS). ``on_token``:
    called with every new :class:`Token`. ``retry``: how token calls are retried
    (:class:`RetryPolicy`). ``token_cache``: a shared :class:`TokenCache`
    (:class:`FileTokenCache`, :class:`RedisTokenCache`) through which the processes of a
    fleet share one token; without one, each ``EmmaAuth`` keeps its token in memory.
    """

    clients = (("session", requests.Session, "a requests.Session"),)
    clients_pickle = True

    def __init__(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        refresh_margin: float | None = None,
        timeout: float | tuple[float, float] = (3.05, 10.0),
        session: requests.Session | None = None,
        on_token: Callable[[Token], object] | None = None,
        retry: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
    ) -> None:
        # First: from here on no frame holds the secret in plain text, for a traceback of a
        # configuration error below (shown with its locals by pytest -l or Sentry) to show.
        from .._core.secret import secret_or_none  # here: the package imports lean

        secret = secret_or_none(client_secret)
        del client_secret
        # The token machinery loads at the first construction, not with the package.
        from .._source import TokenSource

        source = TokenSource(
            client_id,
            secret,
            base_url=base_url,
            refresh_margin=refresh_margin,
            timeout=timeout,
            on_token=on_token,
            retry=retry,
            token_cache=token_cache,
        )
        self._attach(source, {"session": session})

    def _attach(self, source: TokenSource, clients: dict[str, Any]) -> None:
        super()._attach(source, clients)
        from .._core.urls import origin_prefixes

        self._prefix = prefix = origin_prefixes(source.base_url)[0]
        # The least string greater than every one that starts with the prefix: so
        # ``prefix <= url < after_prefix`` is the prefix test, for about half the cost of
        # str.startswith, whose argument parsing outweighs comparing a few bytes.
        self._after_prefix = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        self._lifecycle = source.lifecycle  # the same object for the source's life
        self._hook = self._replay_after_401  # bound once, not on every request

    # -- requests' entry points -------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url
        if url is None or not (
            self._prefix <= url < self._after_prefix or self._is_own_origin(url)
        ):
            if logger.isEnabledFor(logging.DEBUG):
                # Only the origin is logged: a query string may carry the caller's secrets.
                logger.debug(
                    "no token for %s: not the API's origin (%s)", _origin_text(url), self.base_url
                )
            return request
        until, header = self._lifecycle.fresh
        if self._token_source.monotonic() >= until:
            header = self._token_source.usable(self._token_endpoint()).header
        request.headers["Authorization"] = header
        # Not register_hook(), which checks callability on every request.
        request.hooks["response"].append(self._hook)
        return request

    def get_token(self) -> Token:
        """A usable token: the current one, or a new one fetched (or renewed) now."""
        return self._token_source.usable(self._token_endpoint()).token

    def _is_own_origin(self, url: str) -> bool:
        from .._core.urls import origin  # not on the path of a request to the API's origin

        return origin(url) == self._token_source.origin

    def _token_endpoint(self) -> TokenEndpoint:
        """The token endpoint over requests, made at the first renewal that needs it."""
        from .transport import TokenEndpoint

        source = self._token_source
        return source.endpoint(
            self,
            "sync",
            lambda: TokenEndpoint(source.base_url, self._clients["session"], source.timeout),
        )

    # -- the 401 replay ---------------------------------------------------------------------

    def _replay_after_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            return response
        sent = response.request
        if sent.url is None or not self._is_own_origin(sent.url):
            return response  # a redirect took it elsewhere: never send our token there
        if getattr(response, "connection", None) is None:
            return response
        from .body_rewind import can_be_resent  # at the first 401, not with the package
        from .replay import resend

        source = self._token_source
        authorization = sent.headers.get("Authorization")
        if not can_be_resent(sent):
            source.cannot_replay(authorization)
            return response
        # Drain and close first: the connection goes back to the pool while we wait for the
        # renewal, and is not left open if the renewal fails.
        response.content  # noqa: B018
        response.close()
        header = source.renewed(authorization, self._token_endpoint())
        if header is None:
            return response
        logger.debug("API answered 401; replaying %s once with a renewed token", sent.method)
        return resend(response, header, source, **kwargs)


def _origin_text(url: str | None) -> str:
    from .._core import urls

    found = None if url is None else urls.origin(url)
    return "an unknown origin" if found is None else urls.origin_text(found)
