"""Certificate client credentials: loading and checking PEM files, signing assertions, and
the mock Entra ID accepting them over real sockets."""

from __future__ import annotations

import base64
import datetime
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from yarl import URL

from proxy.mock_entra import DEFAULT_TENANT_ID, MockClient, MockEntra, create_app
from proxy.oidc.credentials import (
    ASSERTION_TYPE,
    CertificateCredential,
    CredentialError,
    client_auth_fields,
)

CLIENT_ID = "5f1b7c3e-0d6a-4b8e-9c2f-1a3d5e7f9b0c"
REDIRECT = "http://127.0.0.1/cb"
TOKEN_URL = f"https://login.microsoftonline.com/{DEFAULT_TENANT_ID}/oauth2/v2.0/token"
ALICE = "alice@contoso.example"
DAY = datetime.timedelta(days=1)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


# --- key material, made once per module: RSA generation is the slow part ----------------------


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(
    key: PrivateKey, *, not_before: datetime.timedelta = -DAY, not_after: datetime.timedelta = DAY
) -> x509.Certificate:
    """A self-signed certificate valid from now+not_before to now+not_after."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "azure-auth-proxy test")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + not_before)
        .not_valid_after(now + not_after)
        # EdDSA signs without a separate digest.
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(
    key: PrivateKey,
    *,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    password: bytes | None = None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def write(tmp_path: Path, name: str, *blocks: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(b"".join(blocks))
    return str(path)


def load_pair(tmp_path: Path, cert: x509.Certificate, key_data: bytes) -> CertificateCredential:
    return CertificateCredential.load(
        write(tmp_path, "app.crt", cert_pem(cert)), write(tmp_path, "app.key", key_data)
    )


def refused(tmp_path: Path, cert_data: bytes, key_data: bytes) -> str:
    """Load a pair that must be refused; returns the message."""
    cert_file = write(tmp_path, "app.crt", cert_data)
    key_file = write(tmp_path, "app.key", key_data)
    with pytest.raises(CredentialError) as exc_info:
        CertificateCredential.load(cert_file, key_file)
    return str(exc_info.value)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def public_key(credential: CertificateCredential) -> rsa.RSAPublicKey:
    key = x509.load_pem_x509_certificate(credential.certificate_pem).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def key_body_lines(key_data: bytes) -> list[str]:
    """The base64 lines of a PEM key: none of them may appear in an error message."""
    return [line for line in key_data.decode().splitlines() if line and "-----" not in line]


# --- loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_load_separate_files(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    cert = certificate(app_key)
    credential = load_pair(tmp_path, cert, key_pem(app_key, fmt=fmt))
    assert credential.certificate_pem == cert_pem(cert)
    assert credential.private_key.private_numbers() == app_key.private_numbers()
    assert credential.thumbprint_sha256 == b64url(hashlib.sha256(der(cert)).digest())
    assert credential.thumbprint_sha1 == b64url(hashlib.sha1(der(cert)).digest())
    assert "=" not in credential.thumbprint_sha256
    assert "private_key" not in repr(credential)


@pytest.mark.parametrize("key_first", [False, True])
def test_load_combined_file_given_twice(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, key_first: bool
) -> None:
    cert = certificate(app_key)
    blocks = [cert_pem(cert), key_pem(app_key)]
    path = write(tmp_path, "app.pem", *(reversed(blocks) if key_first else blocks))
    credential = CertificateCredential.load(path, path)
    assert credential.certificate_pem == cert_pem(cert)
    assert b"PRIVATE KEY" not in credential.certificate_pem


def test_chain_file_uses_the_leaf_certificate(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    leaf = certificate(app_key)
    cert_file = write(tmp_path, "chain.pem", cert_pem(leaf), cert_pem(certificate(other_key)))
    credential = CertificateCredential.load(cert_file, write(tmp_path, "k", key_pem(app_key)))
    assert credential.certificate_pem == cert_pem(leaf)


def test_mismatched_key_is_refused(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    message = refused(tmp_path, cert_pem(certificate(app_key)), key_pem(other_key))
    assert message == (
        f"the private key in {tmp_path / 'app.key'} does not match the certificate "
        f"in {tmp_path / 'app.crt'}"
    )


@pytest.mark.parametrize(
    ("not_before", "not_after", "problem", "date_shown"),
    [
        (-10 * DAY, -DAY, "has expired", "not_valid_after_utc"),
        (DAY, 10 * DAY, "is not valid yet", "not_valid_before_utc"),
    ],
)
def test_certificate_outside_its_validity_is_refused(
    tmp_path: Path,
    app_key: rsa.RSAPrivateKey,
    not_before: datetime.timedelta,
    not_after: datetime.timedelta,
    problem: str,
    date_shown: str,
) -> None:
    cert = certificate(app_key, not_before=not_before, not_after=not_after)
    message = refused(tmp_path, cert_pem(cert), key_pem(app_key))
    assert message.startswith(f"certificate {tmp_path / 'app.crt'} {problem} (valid from ")
    moment: datetime.datetime = getattr(cert, date_shown)
    assert moment.strftime("%Y-%m-%d %H:%M:%S UTC") in message


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "EC (secp256r1)"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ],
)
def test_non_rsa_certificate_is_refused(tmp_path: Path, key: PrivateKey, kind: str) -> None:
    message = refused(tmp_path, cert_pem(certificate(key)), key_pem(key))
    assert message == (
        f"certificate {tmp_path / 'app.crt'} holds a key of type {kind}; only RSA "
        "certificates are supported (the assertion is signed with PS256)"
    )


def test_ec_key_for_an_rsa_certificate_is_refused(
    tmp_path: Path, app_key: rsa.RSAPrivateKey
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    message = refused(tmp_path, cert_pem(certificate(app_key)), key_pem(key))
    assert message == (
        f"the private key in {tmp_path / 'app.key'} is of type EC (secp384r1); "
        "only RSA keys are supported"
    )


def test_short_rsa_key_is_refused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    message = refused(tmp_path, cert_pem(certificate(key)), key_pem(key))
    assert "has a 1024-bit RSA key; at least 2048 bits are required" in message


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_encrypted_key_is_refused_without_leaking_it(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    encrypted = key_pem(app_key, fmt=fmt, password=b"correct horse")
    message = refused(tmp_path, cert_pem(certificate(app_key)), encrypted)
    assert message.startswith(f"the private key in {tmp_path / 'app.key'} is encrypted; ")
    assert "unencrypted" in message
    assert not any(line in message for line in key_body_lines(encrypted))


def test_garbled_key_is_refused_without_leaking_it(
    tmp_path: Path, app_key: rsa.RSAPrivateKey
) -> None:
    lines = key_pem(app_key).splitlines(keepends=True)
    garbled = b"".join(lines[:3] + lines[4:])  # one base64 line gone: the DER no longer parses
    message = refused(tmp_path, cert_pem(certificate(app_key)), garbled)
    assert message == f"{tmp_path / 'app.key'} holds no readable PEM private key"
    assert not any(line in message for line in key_body_lines(garbled))


def test_certificate_file_without_a_key_given_twice_is_refused(
    tmp_path: Path, app_key: rsa.RSAPrivateKey
) -> None:
    path = write(tmp_path, "app.crt", cert_pem(certificate(app_key)))
    with pytest.raises(CredentialError, match="holds no readable PEM private key"):
        CertificateCredential.load(path, path)


def test_file_without_a_certificate_is_refused(tmp_path: Path, app_key: rsa.RSAPrivateKey) -> None:
    message = refused(tmp_path, key_pem(app_key), key_pem(app_key))
    assert message == f"{tmp_path / 'app.crt'} holds no readable PEM certificate"


@pytest.mark.parametrize("missing", ["certificate", "private key"])
def test_missing_file_is_named(tmp_path: Path, app_key: rsa.RSAPrivateKey, missing: str) -> None:
    cert_file = write(tmp_path, "app.crt", cert_pem(certificate(app_key)))
    key_file = write(tmp_path, "app.key", key_pem(app_key))
    absent = str(tmp_path / "nowhere.pem")
    args = (absent, key_file) if missing == "certificate" else (cert_file, absent)
    with pytest.raises(CredentialError) as exc_info:
        CertificateCredential.load(*args)
    assert str(exc_info.value).startswith(f"cannot read the {missing} file {absent}: ")


# --- assertions ---------------------------------------------------------------------------------


@pytest.fixture
def credential(tmp_path: Path, app_key: rsa.RSAPrivateKey) -> CertificateCredential:
    return load_pair(tmp_path, certificate(app_key), key_pem(app_key))


def test_assertion_verifies_with_the_certificate_key(
    credential: CertificateCredential,
) -> None:
    token = credential.assertion(CLIENT_ID, TOKEN_URL)
    cert = x509.load_pem_x509_certificate(credential.certificate_pem)
    claims = jwt.decode(
        token,
        public_key(credential),
        algorithms=["PS256"],
        audience=TOKEN_URL,
        issuer=CLIENT_ID,
        options={"require": ["aud", "iss", "sub", "jti", "nbf", "iat", "exp"]},
    )
    assert jwt.get_unverified_header(token) == {
        "alg": "PS256",
        "typ": "JWT",
        "x5t#S256": b64url(cert.fingerprint(hashes.SHA256())),
    }
    assert claims["sub"] == CLIENT_ID
    assert claims["nbf"] == claims["iat"] <= time.time()
    assert 0 < claims["exp"] - claims["iat"] <= 600


def test_assertion_claims_follow_the_given_clock(credential: CertificateCredential) -> None:
    token = credential.assertion(CLIENT_ID, TOKEN_URL, now=1_700_000_000.75)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "aud": TOKEN_URL,
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "jti": claims["jti"],
        "nbf": 1_700_000_000,
        "iat": 1_700_000_000,
        "exp": 1_700_000_300,
    }


def test_assertions_are_single_use(credential: CertificateCredential) -> None:
    tokens = [credential.assertion(CLIENT_ID, TOKEN_URL, now=0) for _ in range(20)]
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 20


def test_assertion_is_not_rs256(credential: CertificateCredential) -> None:
    token = credential.assertion(CLIENT_ID, TOKEN_URL)
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, public_key(credential), algorithms=["RS256"], audience=TOKEN_URL)


# --- client_auth_fields -------------------------------------------------------------------------


def test_secret_fields() -> None:
    assert client_auth_fields(CLIENT_ID, "s3cret", None, TOKEN_URL) == {
        "client_id": CLIENT_ID,
        "client_secret": "s3cret",
    }


@pytest.mark.parametrize("secret", [None, "s3cret"])
def test_certificate_fields_win_over_a_secret(
    credential: CertificateCredential, secret: str | None
) -> None:
    fields = client_auth_fields(CLIENT_ID, secret, credential, TOKEN_URL)
    assert fields.keys() == {"client_id", "client_assertion_type", "client_assertion"}
    assert fields["client_id"] == CLIENT_ID
    assert fields["client_assertion_type"] == ASSERTION_TYPE
    claims = jwt.decode(fields["client_assertion"], options={"verify_signature": False})
    assert claims["aud"] == TOKEN_URL
    assert claims["iss"] == claims["sub"] == CLIENT_ID


@pytest.mark.parametrize("secret", [None, ""])
def test_no_credential_at_all_is_a_value_error(secret: str | None) -> None:
    with pytest.raises(ValueError, match="client secret or a certificate credential"):
        client_auth_fields(CLIENT_ID, secret, None, TOKEN_URL)


# --- the mock Entra ID accepts the assertion (real sockets) -------------------------------------


async def authorization_code(
    http: aiohttp.ClientSession, mock: MockEntra, base: str
) -> tuple[str, str]:
    """Sign Alice in through the mock's auto_user path; returns (code, PKCE verifier)."""
    mock.auto_user = ALICE
    verifier = secrets.token_urlsafe(48)
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "openid profile email",
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    url = f"{base}/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize"
    async with http.get(url, params=params, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return URL(resp.headers["Location"]).query["code"], verifier


async def redeem_with(
    credential: CertificateCredential, registered: CertificateCredential
) -> tuple[int, dict[str, Any]]:
    """Register `registered` on the app, then redeem a code authenticating with `credential`."""
    mock = MockEntra()
    mock.clients[CLIENT_ID] = MockClient(
        client_id=CLIENT_ID,
        client_secret="",
        redirect_uris=[REDIRECT],
        certificate_pem=registered.certificate_pem.decode(),
    )
    async with (
        TestServer(create_app(mock), host="127.0.0.1") as server,
        aiohttp.ClientSession() as http,
    ):
        base = str(server.make_url("")).rstrip("/")
        code, verifier = await authorization_code(http, mock, base)
        token_url = f"{base}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token"
        form = client_auth_fields(CLIENT_ID, None, credential, token_url) | {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        }
        async with http.post(token_url, data=form) as resp:
            body: dict[str, Any] = await resp.json()
            return resp.status, body


async def test_mock_entra_accepts_the_certificate_assertion(
    credential: CertificateCredential,
) -> None:
    status, body = await redeem_with(credential, registered=credential)
    assert status == 200, body
    id_token = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_token["aud"] == CLIENT_ID
    assert id_token["preferred_username"] == ALICE


async def test_mock_entra_refuses_an_unregistered_certificate(
    tmp_path: Path, credential: CertificateCredential, other_key: rsa.RSAPrivateKey
) -> None:
    (tmp_path / "stranger").mkdir()
    stranger = load_pair(tmp_path / "stranger", certificate(other_key), key_pem(other_key))
    status, body = await redeem_with(stranger, registered=credential)
    assert status == 401, body
    assert body["error"] == "invalid_client"
    assert "id_token" not in body
