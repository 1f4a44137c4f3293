"""Token-endpoint client authentication: secret in the body, HTTP Basic, a certificate
assertion (private_key_jwt), or a federated token as the assertion, as ENTRA.md §5 describes."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Collection, Mapping
from typing import Final
from urllib.parse import unquote_plus

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import EntraError, missing_parameter
from .federation import verify_federated
from .keys import thumbprint_sha1, thumbprint_sha256
from .state import MockEntra
from .users import MockClient

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS: Final = ("RS256", "PS256")


def _invalid_client(code: int, message: str) -> EntraError:
    return EntraError("invalid_client", code, message, status=401)


def authenticate_client(
    mock: MockEntra,
    authorization: str | None,
    fields: Mapping[str, str],
    token_urls: Collection[str],
) -> MockClient:
    """The authenticated client, or EntraError (invalid_client is 401)."""
    basic = _basic_credentials(authorization)
    if basic is not None and fields.get("client_id", basic[0]) != basic[0]:
        raise EntraError("invalid_request", 90023, "client_id differs from the Basic user.")
    if "client_assertion" in fields or "client_assertion_type" in fields:
        return _assertion_client(mock, fields, token_urls)
    client = _lookup(mock, basic[0] if basic else fields.get("client_id"))
    secret = basic[1] if basic else fields.get("client_secret")
    if not secret:
        raise _invalid_client(
            7000218,
            "The request body must contain the following parameter: "
            "'client_assertion' or 'client_secret'.",
        )
    if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise _invalid_client(
            7000215, "Invalid client secret provided. Ensure the secret being sent in the "
            "request is the client secret value, not the client secret ID, for a secret added "
            f"to app '{client.client_id}'.",
        )
    if client.secret_expired:
        raise _invalid_client(
            7000222, f"The provided client secret keys for app '{client.client_id}' are "
            "expired. Visit the Azure portal to create new keys for your app: "
            "https://aka.ms/NewClientSecret, or consider using certificate credentials for "
            "added security: https://aka.ms/certCreds.",
        )
    return client


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _invalid_client(7000215, "Malformed Basic authorization header.") from exc
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _invalid_client(7000215, "Malformed Basic authorization header.")
    return unquote_plus(client_id), unquote_plus(secret)


def _lookup(mock: MockEntra, client_id: str | None) -> MockClient:
    if not client_id:
        raise missing_parameter("client_id")
    client = mock.clients.get(client_id)
    if client is None:
        raise EntraError(
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory.",
        )
    return client


def _assertion_client(
    mock: MockEntra, fields: Mapping[str, str], token_urls: Collection[str]
) -> MockClient:
    if fields.get("client_assertion_type") != ASSERTION_TYPE:
        raise EntraError(
            "invalid_request", 90023, f"client_assertion_type must be '{ASSERTION_TYPE}'."
        )
    assertion = fields.get("client_assertion", "")
    try:
        header = jwt.get_unverified_header(assertion)
        issuer = str(jwt.decode(assertion, options={"verify_signature": False}).get("iss", ""))
    except jwt.InvalidTokenError as exc:
        raise _invalid_client(50027, "JWT token is invalid or malformed.") from exc
    client = _lookup(mock, fields.get("client_id") or issuer)
    mock.client_assertions.append(assertion)
    if issuer != client.client_id:
        # Another issuer's token: a federated credential (workload identity, managed identity).
        verify_federated(mock.external_issuers, client.federated_credentials, assertion,
                         mock.clock())
        return client
    if client.certificate_pem is None:
        raise _invalid_client(700027, "No certificate credential is registered for the app.")
    certificate = x509.load_pem_x509_certificate(client.certificate_pem.encode())
    _verify_assertion(assertion, header, certificate, client.client_id, token_urls)
    return client


def _verify_assertion(
    assertion: str,
    header: Mapping[str, object],
    certificate: x509.Certificate,
    client_id: str,
    token_urls: Collection[str],
) -> None:
    """Signature by the registered certificate, aud = token URL, iss = sub = client_id."""
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        raise _invalid_client(5002738, f"Unsupported client assertion algorithm '{alg}'.")
    if not (
        header.get("x5t#S256") == thumbprint_sha256(certificate)
        or header.get("x5t") == thumbprint_sha1(certificate)
    ):
        raise _invalid_client(700027, "The certificate thumbprint in the assertion is unknown.")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise _invalid_client(700027, "Only RSA certificates are supported.")
    try:
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=[str(alg)],
            audience=list(token_urls),
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _invalid_client(
            700024, "Client assertion is not within its valid time range."
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise _invalid_client(700027, f"Client assertion failed validation: {exc}.") from exc
    if claims["iss"] != client_id or claims["sub"] != client_id:
        raise _invalid_client(
            700021, "Client assertion application identifier doesn't match 'client_id'."
        )
