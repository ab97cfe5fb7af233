"""The transport of an httpx client that a token call goes through, and nothing else of it.

A token call sent with ``client.send()`` would run what the client adds to every request:
its auth (an ``EmmaHttpxAuth`` set on the client would recurse into itself), its event hooks
(a request hook sees the body, and so the client secret), its headers, cookies and
redirects. A token call goes straight to the transport the client would pick for its URL
instead: that transport is where a user's proxies and TLS settings live, which is all a
client is given for. A loopback URL takes the client's default transport whatever proxies
are mounted, as a request sent with ``_requests/proxies.direct_proxies`` does: a proxy
elsewhere cannot reach this host's loopback, and plain http to it would hand the proxy the
client secret.

httpx has no public way to ask a client for the transport of a URL, so this is the one
module that reads its private ``_transport_for_url`` and ``_transport`` (the same from httpx
0.27, the oldest the ``[httpx]`` extra allows, to 0.29); ``tests/test_httpx_transport.py``
checks them on the httpx installed.
"""

from __future__ import annotations

from typing import Any

from .._core.urls import is_loopback


def transport_for(client: Any, url: Any) -> Any:
    """The transport ``client`` (sync or async, httpx or httpx2) sends ``url`` through; its
    default one for loopback."""
    if is_loopback(url.host):
        return client._transport
    return client._transport_for_url(url)
