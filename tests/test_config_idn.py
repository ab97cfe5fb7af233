"""Internationalised (IDN) base URLs: the host in the IDNA form requests sends, so the token
goes there; hosts that cannot be encoded are refused at construction."""

from __future__ import annotations

import urllib.parse

import pytest
import requests
import responses

from requests_emma import EmmaAuth, EmmaSession
from requests_emma.testing import add_token_endpoints

IDN_BASE = "https://bücher.example/external"
PUNYCODE_BASE = "https://xn--bcher-kva.example/external"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (IDN_BASE, PUNYCODE_BASE),
        ("https://BÜCHER.example:8443/External/", "https://xn--bcher-kva.example:8443/External"),
        (PUNYCODE_BASE, PUNYCODE_BASE),
        ("https://API.Emma.ms/External", "https://API.Emma.ms/External"),
    ],
)
def test_base_url_shows_the_host_as_requests_sends_it(given: str, expected: str) -> None:
    """A non-ASCII host becomes its punycode form, port and path kept; ASCII stays as given."""
    assert EmmaAuth("id", "secret", base_url=given).base_url == expected


def test_request_to_an_idn_base_url_gets_the_token() -> None:
    """A request prepared for the IDN base URL (sent with its punycode host) gets the token."""
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock, IDN_BASE)
        auth = EmmaAuth("id", "secret", base_url=IDN_BASE)
        prepared = requests.Request("GET", IDN_BASE + "/v1/locations").prepare()
        assert prepared.url == PUNYCODE_BASE + "/v1/locations"
        auth(prepared)
        assert prepared.headers["Authorization"] == f"Bearer {endpoints.access_tokens[0]}"


def test_session_on_an_idn_base_url_sends_the_token() -> None:
    """EmmaSession resolves relative URLs below the punycode host and sends the token there."""
    with responses.RequestsMock() as mock:
        endpoints = add_token_endpoints(mock, IDN_BASE)
        mock.get(PUNYCODE_BASE + "/v1/locations", json=[])
        with EmmaSession(EmmaAuth("id", "secret", base_url=IDN_BASE)) as emma:
            assert emma.get("v1/locations").status_code == 200
        sent = mock.calls[-1].request
        assert sent.headers["Authorization"] == f"Bearer {endpoints.access_tokens[0]}"


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("https://bü_cher.example/external", "xn--"),  # "_" is not allowed beside non-ASCII
        ("https://☃.example/external", "xn--"),  # a symbol, not a letter
        ("https://-bücher.example/external", "xn--"),  # a label may not start with "-"
        ("https://bü\uff03cher.example/external", "api.emma.ms"),  # fullwidth "#" is "#"
    ],
)
def test_host_that_cannot_be_encoded_is_refused(url: str, advice: str) -> None:
    """A host with no IDNA form is a ValueError naming base_url and saying what to give."""
    with pytest.raises(ValueError, match="base_url") as caught:
        EmmaAuth("id", "secret", base_url=url)
    assert advice in str(caught.value)


def _host_requests_sends(url: str) -> str | None:
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
    except requests.exceptions.InvalidURL:
        return None
    return urllib.parse.urlsplit(str(prepared.url)).hostname


@pytest.mark.parametrize(
    "host",
    [
        "bücher.example",
        "BÜCHER.Example",
        "straße.de",  # IDNA2008: ß is kept (xn--strae-oqa), not mapped to "ss"
        "İstanbul.tr",  # str.lower() first, as urllib3 does
        "bücher.example.",  # a trailing dot is kept
        "xn--bcher-kva.bücher.example",
        "bü%41cher.example",  # an escaped unreserved character is decoded before encoding
        "bücher%2Eexample.com",  # an escaped "." separates labels
        "bücher.ex%7emple",
        "bücher.ex%2fmple",  # a reserved character stays escaped, upper-cased
        "bücher.ex%20mple",
    ],
)
def test_idn_host_is_the_one_requests_prepares(host: str) -> None:
    """The base URL's host is exactly the host requests puts in a prepared request's URL."""
    url = f"https://{host}/external"
    expected = _host_requests_sends(url)
    if expected is None:  # refused by this version of requests: refused here too
        with pytest.raises(ValueError, match="not a valid internationalised domain name"):
            EmmaAuth("id", "secret", base_url=url)
        return
    assert urllib.parse.urlsplit(EmmaAuth("id", "secret", base_url=url).base_url).hostname == (
        expected
    )


@pytest.mark.parametrize(
    "host",
    [
        ".bücher.example",  # requests: "URL has an invalid label" for a leading "."
        "*.bücher.example",  # ... and for a leading "*"
        "bü%cher.example",  # a "%" that starts no escape
        "bücher.%00x",  # an escaped control character
        "ﬁ.example",  # a compatibility ligature: IDNA2008 without UTS #46 refuses it
        "a" * 64 + "ü.example",  # a label longer than 63 octets
    ],
)
def test_idn_host_requests_refuses_is_refused(host: str) -> None:
    """A non-ASCII host is refused at construction exactly when requests would refuse to
    send to it (which hosts those are moves with requests' version)."""
    url = f"https://{host}/external"
    if _host_requests_sends(url) is not None:
        assert EmmaAuth("id", "secret", base_url=url).base_url.startswith("https://")
        return
    with pytest.raises(ValueError, match="not a valid internationalised domain name"):
        EmmaAuth("id", "secret", base_url=url)
