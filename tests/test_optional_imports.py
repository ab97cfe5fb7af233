"""What importing the package loads: httpx and anyio (the ``[httpx]`` extra), aiohttp (the
``[aiohttp]`` extra) and respx only
once something that needs them is used, so ``import requests_emma`` stays close to ``import
requests`` and works without them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

OPTIONAL = ("httpx", "httpx2", "httpcore", "anyio", "trio", "respx", "aiohttp")

_PROBE = """
import importlib, json, sys
for name in sys.argv[2:]:
    module, _, attribute = name.partition(":")
    value = importlib.import_module(module)
    if attribute:
        getattr(value, attribute)
print(json.dumps(sorted(name for name in sys.argv[1].split(",") if name in sys.modules)))
"""


def loaded_after(*imports: str) -> list[str]:
    """The optional packages loaded in a fresh interpreter by ``imports`` (``module`` or
    ``module:attribute``)."""
    probe = [sys.executable, "-c", _PROBE, ",".join(OPTIONAL), *imports]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize(
    "module",
    ["requests_emma", "requests_emma.testing", "requests_emma.testing.pytest_plugin"],
)
def test_importing_the_package_loads_no_optional_dependency(module: str) -> None:
    """import requests_emma (and its test kit, and the pytest plugin every pytest run
    loads) loads neither httpx, httpx2, httpcore, anyio, trio, respx nor aiohttp."""
    assert loaded_after(module) == []


def test_the_httpx_transport_loads_httpx_and_anyio() -> None:
    """The probe sees what is loaded: the httpx transport brings httpx and anyio."""
    assert {"httpx", "anyio"} <= set(loaded_after("requests_emma._httpx.transport"))


def test_the_aiohttp_module_loads_aiohttp_and_anyio_but_not_httpx() -> None:
    """requests_emma.aiohttp brings aiohttp and anyio (the renewal's cancel scopes), and
    no httpx."""
    loaded = set(loaded_after("requests_emma.aiohttp"))
    assert {"aiohttp", "anyio"} <= loaded and "httpx" not in loaded


def test_the_respx_helper_loads_httpx_but_not_respx() -> None:
    """requests_emma.testing.add_respx_token_endpoints, once used, loads httpx; respx stays
    the user's to import."""
    loaded = loaded_after("requests_emma.testing:add_respx_token_endpoints")
    assert "httpx" in loaded and "respx" not in loaded


def test_the_httpx2_helper_loads_httpx2_only_when_used() -> None:
    """requests_emma.testing.httpx2_token_transport, once used, loads httpx2 (the test kit
    alone does not: see above)."""
    pytest.importorskip("httpx2", reason="httpx2 needs Python 3.11 or newer")
    assert "httpx2" in loaded_after("requests_emma.testing:httpx2_token_transport")


def test_emma_httpx_auth_is_importable_from_the_package_once_asked_for() -> None:
    """`from requests_emma import EmmaHttpxAuth` works, loading httpx only then; it is the
    class of requests_emma.httpx."""
    assert "httpx" in loaded_after("requests_emma:EmmaHttpxAuth")
    import requests_emma
    import requests_emma.httpx

    assert requests_emma.EmmaHttpxAuth is requests_emma.httpx.EmmaHttpxAuth
    assert requests_emma.EmmaHttpxAuth.__module__ == "requests_emma"
