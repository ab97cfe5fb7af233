"""The client credentials: from the arguments or else the environment, checked.

The environment variables are named here, once, for ``EmmaAuth``, the command line and the
test server's ``serve`` to share: ``EMMA_CLIENT_ID``, ``EMMA_CLIENT_SECRET`` and
``EMMA_API_URL`` (read by :func:`~requests_emma._core.urls.base_url`).
"""

from __future__ import annotations

import os

from .._errors import CredentialsError
from .secret import Secret, secret_or_none

CLIENT_ID_VAR = "EMMA_CLIENT_ID"
CLIENT_SECRET_VAR = "EMMA_CLIENT_SECRET"
API_URL_VAR = "EMMA_API_URL"


def credentials(client_id: str | None, client_secret: Secret | None) -> tuple[str, Secret]:
    """The client ID and secret, from the arguments or else the environment.

    The secret arrives wrapped and the environment's is wrapped as it is read, so no frame
    here holds it in plain text for a traceback of the errors below to show.
    """
    if client_id is None:
        client_id = os.environ.get(CLIENT_ID_VAR) or None
    if client_secret is None:
        client_secret = secret_or_none(os.environ.get(CLIENT_SECRET_VAR) or None)
    missing = [
        f"{argument} (or {variable})"
        for argument, variable, given in (
            ("client_id", CLIENT_ID_VAR, bool(client_id)),
            ("client_secret", CLIENT_SECRET_VAR, bool(client_secret and client_secret.reveal())),
        )
        if not given
    ]
    if missing:
        raise CredentialsError(
            f"no emma client credentials: pass {' and '.join(missing)}; "
            "find them under Settings > Service Apps in your emma project"
        )
    assert client_id is not None and client_secret is not None
    for name, kind in (("client_id", type(client_id)), ("client_secret", client_secret.kind())):
        if kind is not str:
            raise CredentialsError(f"{name} must be a string, got {kind.__name__}")
    for name, is_text in (
        ("client_id", _is_utf8(client_id)),
        ("client_secret", _is_utf8(client_secret.reveal())),
    ):
        if not is_text:
            # Never the value: it may be the secret.
            raise CredentialsError(
                f"{name} is not valid text (it has bytes that are not UTF-8); "
                "set it to the value emma shows under Settings > Service Apps"
            )
    return client_id, client_secret


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Answered outside this handler: the error quotes the text, and would ride along
        # as the __context__ of an exception raised here.
        return False
    return True
