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
    missing = []
    if not client_id:
        missing.append(f"client_id (or {CLIENT_ID_VAR})")
    if not (client_secret and client_secret.reveal()):
        missing.append(f"client_secret (or {CLIENT_SECRET_VAR})")
    if missing:
        raise CredentialsError(
            f"no emma client credentials: pass {' and '.join(missing)}; "
            "find them under Settings > Service Apps in your emma project"
        )
    assert client_id is not None and client_secret is not None
    # The ID is wrapped too, so that one table checks both, types first, then the text.
    checked = (("client_id", Secret(client_id)), ("client_secret", client_secret))
    for name, value in checked:
        if value.kind() is not str:
            raise CredentialsError(f"{name} must be a string, got {value.kind().__name__}")
    for name, value in checked:
        # A str fails to encode only for a lone surrogate (bytes decoded with
        # surrogateescape), which "ignore" drops: no exception, so none quotes the text.
        if value.reveal().encode("utf-8", "ignore").decode("utf-8") != value.reveal():
            # Never the value: it may be the secret.
            raise CredentialsError(
                f"{name} is not valid text (it has bytes that are not UTF-8); "
                "set it to the value emma shows under Settings > Service Apps"
            )
    return client_id, client_secret
