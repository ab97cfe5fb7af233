"""requests-emma: call the emma multi-cloud API with plain ``requests``.

>>> import requests
>>> from requests_emma import EmmaAuth
>>> auth = EmmaAuth()  # EMMA_CLIENT_ID / EMMA_CLIENT_SECRET from the environment
>>> requests.get("https://api.emma.ms/external/v1/locations", auth=auth)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import typing

from ._caches.protocol import TokenCache
from ._core.retry_policy import RetryPolicy
from ._core.token import Token
from ._core.token_status import TokenStatus
from ._errors import CredentialsError, EmmaAuthError, TokenRequestError, TokenResponseError
from ._requests.auth import EmmaAuth

if typing.TYPE_CHECKING:
    from ._caches.file_cache import FileTokenCache
    from ._caches.redis_cache import RedisTokenCache
    from ._requests.session import EmmaSession

    __version__: str

__all__ = [
    "CredentialsError",
    "EmmaAuth",
    "EmmaAuthError",
    "EmmaSession",
    "FileTokenCache",
    "RedisTokenCache",
    "RetryPolicy",
    "Token",
    "TokenCache",
    "TokenRequestError",
    "TokenResponseError",
    "TokenStatus",
]

#: Public names loaded at first use, not with the package (PEP 562): ``import requests_emma``
#: stays close to ``import requests``, and a program that never uses a file cache never
#: imports filelock and platformdirs.
_LAZY = {
    "EmmaSession": "._requests.session",
    "FileTokenCache": "._caches.file_cache",
    "RedisTokenCache": "._caches.redis_cache",
}


def _public(value: typing.Any) -> typing.Any:
    # Tracebacks, reprs and the docs show the public path, not the private module.
    value.__module__ = __name__
    return value


for _name in __all__:
    if _name not in _LAZY:
        _public(globals()[_name])
del _name


def __getattr__(name: str) -> typing.Any:
    if name in _LAZY:
        import importlib

        value = _public(getattr(importlib.import_module(_LAZY[name], __name__), name))
    elif name == "__version__":
        import importlib.metadata

        try:
            value = importlib.metadata.version("requests-emma")
        except importlib.metadata.PackageNotFoundError:  # a source tree, not installed
            value = "0+unknown"
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


logging.getLogger("requests_emma").addHandler(logging.NullHandler())
