"""How the proxy proves to Entra's token endpoint that it is the app: `[azure]
client_credential`, one of

* "secret": `client_secret` in the form body;
* "certificate": a PS256 assertion signed with the app's certificate (credentials.py);
* "workload_identity": the Kubernetes-projected federated token, read afresh per request
  (federated.py);
* "managed_identity": a token for api://AzureADTokenExchange from the platform's managed
  identity endpoint, cached until shortly before it expires (managed_identity.py).

Unset, it is "certificate" when `client_certificate_file` is set, else "secret" (the
behaviour before the key existed). Every credential gives the token request's form fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from ..config import AzureConfig
from .credentials import ASSERTION_TYPE, CertificateCredential
from .federated import WorkloadIdentityCredential
from .managed_identity import ManagedIdentityCredential


class ClientCredential(Protocol):
    @property
    def kind(self) -> str: ...

    async def fields(self, http: aiohttp.ClientSession, client_id: str,
                     token_url: str) -> dict[str, str]:
        """Form fields that authenticate the app; CredentialUnavailable if they cannot be made."""
        ...

    async def probe(self, http: aiohttp.ClientSession) -> None:
        """For /ready: CredentialUnavailable when a sign-in would fail for want of it."""
        ...

    def check_files(self) -> None:
        """For check-config and start-up: CredentialError naming an unusable file."""
        ...


def credential_kind(azure: AzureConfig) -> str:
    """The configured credential, or the one the other keys imply."""
    if azure.client_credential:
        return azure.client_credential
    return "certificate" if azure.client_certificate_file else "secret"


def assertion_fields(client_id: str, assertion: str) -> dict[str, str]:
    """RFC 7523 §2.2 client authentication with a JWT."""
    return {"client_id": client_id, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}


@dataclass(frozen=True, slots=True)
class SecretCredential:
    secret: str = field(repr=False)
    kind: str = "secret"

    async def fields(self, http: aiohttp.ClientSession, client_id: str,
                     token_url: str) -> dict[str, str]:
        return {"client_id": client_id, "client_secret": self.secret}

    async def probe(self, http: aiohttp.ClientSession) -> None:
        return None

    def check_files(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class CertificateClientCredential:
    certificate: CertificateCredential
    kind: str = "certificate"

    async def fields(self, http: aiohttp.ClientSession, client_id: str,
                     token_url: str) -> dict[str, str]:
        # A fresh single-use assertion for every request.
        return assertion_fields(client_id, self.certificate.assertion(client_id, token_url))

    async def probe(self, http: aiohttp.ClientSession) -> None:
        return None

    def check_files(self) -> None:
        return None  # loaded (and checked) when built


def build_credential(azure: AzureConfig) -> ClientCredential:
    """The configured credential; CredentialError for an unusable certificate. Reads no
    federated token and calls no endpoint: those happen per token request."""
    kind = credential_kind(azure)
    if kind == "certificate":
        return CertificateClientCredential(CertificateCredential.load(
            azure.client_certificate_file, azure.client_private_key_file))
    if kind == "workload_identity":
        return WorkloadIdentityCredential(azure.federated_token_file)
    if kind == "managed_identity":
        return ManagedIdentityCredential(
            azure.imds_url, client_id=azure.managed_identity_client_id,
            identity_header=azure.identity_header.reveal(), timeout=azure.timeout)
    return SecretCredential(azure.client_secret.reveal())
