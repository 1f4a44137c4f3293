"""Workload identity federation: the federated token Azure Workload Identity projects into
the pod (AZURE_FEDERATED_TOKEN_FILE) is the client assertion.

Kubernetes rotates the file (the token lives about an hour and is replaced at 80 % of its
life), so it is read afresh for every token request, never cached. The token is a secret:
no message here quotes it, only the file's name and the token's expiry time.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import jwt

from ..errors import CredentialUnavailable
from .credentials import ASSERTION_TYPE, CredentialError

MAX_TOKEN_BYTES: Final = 16 * 1024  # service-account tokens are about 1 KiB


@dataclass(frozen=True, slots=True)
class WorkloadIdentityCredential:
    token_file: str
    kind: str = "workload_identity"

    def read(self, now: float | None = None) -> str:
        """The current federated token; CredentialUnavailable naming why there is none."""
        try:
            with open(self.token_file, "rb") as handle:
                data = handle.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise CredentialUnavailable(
                "its federated token file cannot be read",
                f"cannot read azure.federated_token_file {self.token_file}: "
                f"{exc.strerror or type(exc).__name__}") from None
        if len(data) > MAX_TOKEN_BYTES:
            raise CredentialUnavailable(
                "its federated token file is too large",
                f"azure.federated_token_file {self.token_file} is larger than "
                f"{MAX_TOKEN_BYTES} bytes: not a service-account token")
        token = data.decode("ascii", errors="replace").strip()
        claims = _claims(token)
        if claims is None:
            raise CredentialUnavailable(
                "its federated token is not a JWT",
                f"azure.federated_token_file {self.token_file} holds no JWT")
        expires = claims.get("exp")
        moment = time.time() if now is None else now
        if isinstance(expires, int | float) and not isinstance(expires, bool) \
                and expires <= moment:
            # Entra would refuse it (AADSTS700024); saying so here names the file.
            raise CredentialUnavailable(
                "its federated token has expired",
                f"the federated token in {self.token_file} expired at {_when(expires)} "
                f"({int(moment - expires)} s ago): is the projected service account token "
                "still being rotated?")
        return token

    async def fields(self, http: aiohttp.ClientSession, client_id: str,
                     token_url: str) -> dict[str, str]:
        return {"client_id": client_id, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.read()}

    async def probe(self, http: aiohttp.ClientSession) -> None:
        self.read()

    def check_files(self) -> None:
        """A missing or unreadable file (not an expired token: Kubernetes replaces it)."""
        try:
            with open(self.token_file, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise CredentialError(
                f"cannot read {self.token_file}: {exc.strerror or type(exc).__name__}"
            ) from None


def _claims(token: str) -> dict[str, Any] | None:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    return claims if isinstance(claims, dict) else None


def _when(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
