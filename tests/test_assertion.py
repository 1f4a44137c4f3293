"""The signed identity assertion: verified the way an upstream would, from the JWKS alone."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.assertion import (
    SIGNED_FIELDS,
    AssertionKeyError,
    AssertionSigner,
    thumbprint,
)
from proxy.identity import Identity

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://tools.example.com"
AUD = "http://127.0.0.1:8080"
OTHER_AUD = "http://127.0.0.1:9090"
LIFETIME = 300
ALICE = Identity(
    oid="00000000-0000-0000-66f3-3332eca7ea81",
    tid="9122040d-6c67-4c5b-b112-36a304b66dad",
    sub="AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
    name="Alice Example",
    preferred_username="alice@contoso.example",
    email="alice@contoso.example",
    groups=("6f1c2b6e-0000-4000-8000-000000000001", "6f1c2b6e-0000-4000-8000-000000000002"),
    roles=("Admin",),
    sid="00aa-session",
)
PEM = serialization.Encoding.PEM
PKCS8 = serialization.PrivateFormat.PKCS8
NO_ENCRYPTION = serialization.NoEncryption()


def verify(jwks: dict[str, Any], token: str, audience: str = AUD, **kw: Any) -> dict[str, Any]:
    """What an upstream does: only the published JWKS (as JSON) and the token."""
    keys = jwt.PyJWKSet.from_dict(json.loads(json.dumps(jwks)))
    key = keys[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=[key.algorithm_name], audience=audience, issuer=ISSUER,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]}, **kw,
    )
    return claims


def payload(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write_key(path: Path, key: Any, fmt: serialization.PrivateFormat = PKCS8,
              encryption: serialization.KeySerializationEncryption = NO_ENCRYPTION) -> Path:
    path.write_bytes(key.private_bytes(PEM, fmt, encryption))
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_file(rsa_key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_key(tmp_path_factory.mktemp("keys") / "assertion-rsa.pem", rsa_key)


@pytest.fixture
def es256() -> AssertionSigner:
    return AssertionSigner.generate(ISSUER)


@pytest.fixture
def rs256(rsa_key_file: Path) -> AssertionSigner:
    return AssertionSigner.from_file(ISSUER, str(rsa_key_file))


@pytest.fixture(params=["ES256", "RS256"])
def signer(request: pytest.FixtureRequest, es256: AssertionSigner,
           rs256: AssertionSigner) -> AssertionSigner:
    return es256 if request.param == "ES256" else rs256


# --- what an upstream sees --------------------------------------------------------------------


def test_assertion_verifies_from_the_jwks_alone(signer: AssertionSigner) -> None:
    before = int(time.time())
    claims = verify(signer.jwks(), signer.assertion(ALICE, AUD))
    times = {k: claims.pop(k) for k in ("iat", "nbf", "exp")}
    assert claims == {
        "iss": ISSUER,
        "aud": AUD,
        "sub": f"{ALICE.tid}/{ALICE.oid}",
        "oid": ALICE.oid,
        "tid": ALICE.tid,
        "email": "alice@contoso.example",
        "preferred_username": "alice@contoso.example",
        "name": "Alice Example",
        "groups": list(ALICE.groups),
        "roles": ["Admin"],
        "idtyp": "user",
    }
    assert before <= times["iat"] == times["nbf"] <= time.time()
    assert times["exp"] == times["iat"] + LIFETIME


def test_an_app_is_signed_as_an_app(signer: AssertionSigner) -> None:
    app = Identity(oid="5ee5e5e5-0000-4000-8000-000000000002", tid=ALICE.tid, roles=("Reader",),
                   idtyp="app")
    assert verify(signer.jwks(), signer.assertion(app, AUD))["idtyp"] == "app"
    # Cached per identity: the user's assertion is never handed to the app, nor back.
    assert verify(signer.jwks(), signer.assertion(ALICE, AUD))["idtyp"] == "user"


def test_header_names_the_algorithm_and_the_key(signer: AssertionSigner) -> None:
    header = jwt.get_unverified_header(signer.assertion(ALICE, AUD))
    assert header == {"alg": signer.algorithm, "kid": signer.kid, "typ": "JWT"}


def test_algorithm_follows_the_key(es256: AssertionSigner, rs256: AssertionSigner) -> None:
    assert (es256.algorithm, rs256.algorithm) == ("ES256", "RS256")


def test_missing_claims_are_empty_never_absent(es256: AssertionSigner) -> None:
    # Upstreams get one schema; `null` groups break libraries (Pomerium issue 5393).
    claims = verify(es256.jwks(), es256.assertion(Identity(oid="o-1", tid="t-1"), AUD))
    assert claims["sub"] == "t-1/o-1"
    assert {k: claims[k] for k in ("email", "preferred_username", "name", "groups", "roles")} \
        == {"email": "", "preferred_username": "", "name": "", "groups": [], "roles": []}


def test_jwks_publishes_one_public_signing_key(signer: AssertionSigner) -> None:
    (key,) = signer.jwks()["keys"]
    assert key["kid"] == signer.kid
    assert key["alg"] == signer.algorithm
    assert key["use"] == "sig"
    expected = {"kty", "crv", "x", "y"} if signer.algorithm == "ES256" else {"kty", "n", "e"}
    assert set(key) == expected | {"kid", "alg", "use"}  # no "d", "p", "q": nothing private


def test_jwks_is_a_fresh_document_each_time(es256: AssertionSigner) -> None:
    es256.jwks()["keys"][0]["kid"] = "tampered"
    assert es256.jwks()["keys"][0]["kid"] == es256.kid


# --- kid = RFC 7638 thumbprint ----------------------------------------------------------------


def rfc7638(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """An independent thumbprint, from the key's numbers rather than the module's JWK."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        n = key.public_numbers()
        x, y = (b64url(c.to_bytes(32, "big")) for c in (n.x, n.y))
        members = f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'
    else:
        r = key.public_numbers()
        e, m = (b64url(c.to_bytes((c.bit_length() + 7) // 8, "big")) for c in (r.e, r.n))
        members = f'{{"e":"{e}","kty":"RSA","n":"{m}"}}'
    return b64url(hashlib.sha256(members.encode()).digest())


def test_kid_is_the_rfc7638_thumbprint_of_the_published_key(signer: AssertionSigner) -> None:
    published = jwt.PyJWK(signer.jwks()["keys"][0]).key
    assert isinstance(published, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    assert signer.kid == rfc7638(published)


def test_kid_is_the_thumbprint_of_the_signing_key(rsa_key: rsa.RSAPrivateKey,
                                                  rs256: AssertionSigner) -> None:
    assert rs256.kid == rfc7638(rsa_key.public_key())


def test_thumbprint_matches_the_rfc7638_example() -> None:
    # RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1 and its thumbprint.
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
         "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
         "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWh"
         "AI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
    assert thumbprint({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}) \
        == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ec_coordinates_keep_their_leading_zeros() -> None:
    # One key in 256 has a coordinate below 2**248; RFC 7518 still wants 32 bytes.
    for _ in range(2000):
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        if min(numbers.x, numbers.y).bit_length() <= 248:
            break
    else:  # pragma: no cover - p < 2**-17
        pytest.fail("no short coordinate found")
    signer = AssertionSigner(ISSUER, key)
    jwk = signer.jwks()["keys"][0]
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32
    assert len(base64.urlsafe_b64decode(jwk["y"] + "=")) == 32
    assert signer.kid == rfc7638(key.public_key())
    assert verify(signer.jwks(), signer.assertion(ALICE, AUD))["oid"] == ALICE.oid


def test_replicas_sharing_a_key_file_sign_interchangeably(rsa_key_file: Path) -> None:
    one = AssertionSigner.from_file(ISSUER, str(rsa_key_file))
    two = AssertionSigner.from_file(ISSUER, str(rsa_key_file))
    assert one.kid == two.kid
    assert verify(one.jwks(), two.assertion(ALICE, AUD))["sub"] == ALICE.key


# --- what an upstream refuses -----------------------------------------------------------------


def test_wrong_audience_is_refused(signer: AssertionSigner) -> None:
    token = signer.assertion(ALICE, OTHER_AUD)
    with pytest.raises(jwt.InvalidAudienceError):
        verify(signer.jwks(), token)


def test_wrong_issuer_is_refused(signer: AssertionSigner) -> None:
    stranger = AssertionSigner(
        "https://evil.example.com", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(jwt.InvalidIssuerError):
        verify(stranger.jwks(), stranger.assertion(ALICE, AUD))


def test_expired_assertion_is_refused(signer: AssertionSigner) -> None:
    token = signer.assertion(ALICE, AUD, now=time.time() - LIFETIME - 1)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(signer.jwks(), token)


def test_assertion_from_the_future_is_refused(signer: AssertionSigner) -> None:
    token = signer.assertion(ALICE, AUD, now=time.time() + 120)
    with pytest.raises(jwt.ImmatureSignatureError):
        verify(signer.jwks(), token)


def test_small_clock_skew_passes_with_leeway(signer: AssertionSigner) -> None:
    token = signer.assertion(ALICE, AUD, now=time.time() + 10)
    assert verify(signer.jwks(), token, leeway=30)["sub"] == ALICE.key


def test_tampered_claims_are_refused(signer: AssertionSigner) -> None:
    header, body, signature = signer.assertion(ALICE, AUD).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["groups"].append("admins")
    forged = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    with pytest.raises(jwt.InvalidSignatureError):
        verify(signer.jwks(), forged)


def test_another_key_under_the_same_kid_is_refused(signer: AssertionSigner) -> None:
    claims = payload(signer.assertion(ALICE, AUD))
    other: Any = (ec.generate_private_key(ec.SECP256R1()) if signer.algorithm == "ES256"
                  else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    forged = jwt.encode(claims, other, algorithm=signer.algorithm, headers={"kid": signer.kid})
    with pytest.raises(jwt.InvalidSignatureError):
        verify(signer.jwks(), forged)


def test_a_key_not_in_the_jwks_is_refused(es256: AssertionSigner) -> None:
    stranger = AssertionSigner.generate(ISSUER)
    with pytest.raises(KeyError, match="no key for kid"):
        verify(es256.jwks(), stranger.assertion(ALICE, AUD))


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_algorithm_confusion_is_refused(signer: AssertionSigner, alg: str) -> None:
    claims = payload(signer.assertion(ALICE, AUD))
    header = {"alg": alg, "kid": signer.kid, "typ": "JWT"}
    signing_input = ".".join(b64url(json.dumps(part).encode()) for part in (header, claims))
    # HS256 keyed with the public JWK: the classic forgery when a verifier trusts `alg`.
    secret = json.dumps(signer.jwks()["keys"][0]).encode()
    mac = hmac.new(secret, signing_input.encode(), "sha256").digest() if alg == "HS256" else b""
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(signer.jwks(), f"{signing_input}.{b64url(mac)}")


# --- the cache --------------------------------------------------------------------------------


T0 = 1_800_000_000.0


def test_reused_while_more_than_half_the_lifetime_is_left(es256: AssertionSigner) -> None:
    first = es256.assertion(ALICE, AUD, now=T0)
    assert es256.assertion(ALICE, AUD, now=T0 + LIFETIME / 2 - 0.5) == first
    renewed = es256.assertion(ALICE, AUD, now=T0 + LIFETIME / 2)
    assert renewed != first
    assert payload(renewed)["iat"] == T0 + LIFETIME / 2
    assert es256.assertion(ALICE, AUD, now=T0 + LIFETIME / 2 + 1) == renewed


def test_expired_entries_are_never_served(es256: AssertionSigner) -> None:
    first = es256.assertion(ALICE, AUD, now=T0)
    late = es256.assertion(ALICE, AUD, now=T0 + LIFETIME + 3600)
    assert late != first
    assert payload(late)["exp"] == T0 + LIFETIME + 3600 + LIFETIME


def test_a_clock_that_went_back_gets_no_future_iat(es256: AssertionSigner) -> None:
    es256.assertion(ALICE, AUD, now=T0)
    assert payload(es256.assertion(ALICE, AUD, now=T0 - 10))["iat"] == T0 - 10


def test_equal_identities_share_an_assertion(es256: AssertionSigner) -> None:
    copy = Identity.from_claims(ALICE.to_dict())
    assert copy is not ALICE
    assert es256.assertion(copy, AUD, now=T0) == es256.assertion(ALICE, AUD, now=T0 + 1)


def test_fields_outside_the_token_do_not_split_the_cache(es256: AssertionSigner) -> None:
    # Same signed claims, same token; `extra` (a dict) must not break the cache key either.
    other = dataclasses.replace(ALICE, sub="other-pairwise-sub", sid="s2", extra={"k": "v"})
    assert es256.assertion(other, AUD, now=T0) == es256.assertion(ALICE, AUD, now=T0 + 1)


def changed(identity: Identity, name: str) -> Identity:
    value = getattr(identity, name)
    new: Any = (*value, "added") if isinstance(value, tuple) else value + "-changed"
    return dataclasses.replace(identity, **{name: new})


@pytest.mark.parametrize("name", SIGNED_FIELDS)
def test_any_changed_claim_gets_a_new_assertion(es256: AssertionSigner, name: str) -> None:
    # E.g. groups after a refresh: a stale assertion would keep a revoked group alive.
    es256.assertion(ALICE, AUD, now=T0)
    token = es256.assertion(changed(ALICE, name), AUD, now=T0 + 1)
    claims = payload(token)
    assert claims["iat"] == T0 + 1
    expected = getattr(changed(ALICE, name), name)
    assert claims[name] == (list(expected) if isinstance(expected, tuple) else expected)


def test_reordered_groups_are_a_different_identity(es256: AssertionSigner) -> None:
    flipped = dataclasses.replace(ALICE, groups=ALICE.groups[::-1])
    es256.assertion(ALICE, AUD, now=T0)
    assert payload(es256.assertion(flipped, AUD, now=T0 + 1))["groups"] == list(flipped.groups)


def test_audiences_never_share_an_assertion(es256: AssertionSigner) -> None:
    mine = es256.assertion(ALICE, AUD, now=T0)
    theirs = es256.assertion(ALICE, OTHER_AUD, now=T0)
    assert mine != theirs
    assert (payload(mine)["aud"], payload(theirs)["aud"]) == (AUD, OTHER_AUD)


def test_users_never_share_an_assertion(es256: AssertionSigner) -> None:
    bob = Identity(oid="bob-oid", tid=ALICE.tid, email="bob@contoso.example")
    assert payload(es256.assertion(bob, AUD, now=T0))["sub"] == f"{ALICE.tid}/bob-oid"
    assert payload(es256.assertion(ALICE, AUD, now=T0))["sub"] == ALICE.key


def test_same_oid_in_another_tenant_is_another_subject(es256: AssertionSigner) -> None:
    guest = dataclasses.replace(ALICE, tid="72f988bf-86f1-41af-91ab-2d7cd011db47")
    assert payload(es256.assertion(guest, AUD, now=T0))["sub"] \
        != payload(es256.assertion(ALICE, AUD, now=T0))["sub"]


def test_cache_is_bounded(rsa_key: rsa.RSAPrivateKey) -> None:
    small = AssertionSigner(ISSUER, rsa_key, cache_size=2)
    users = [Identity(oid=f"oid-{i}", tid="t") for i in range(3)]
    small.assertion(users[0], AUD, now=T0)
    small.assertion(users[1], AUD, now=T0 + 1)
    small.assertion(users[2], AUD, now=T0 + 1)  # evicts users[0]
    assert payload(small.assertion(users[0], AUD, now=T0 + 2))["iat"] == T0 + 2
    assert payload(small.assertion(users[2], AUD, now=T0 + 2))["iat"] == T0 + 1


def test_lifetime_is_configurable() -> None:
    short = AssertionSigner(ISSUER, ec.generate_private_key(ec.SECP256R1()), lifetime=60)
    first = short.assertion(ALICE, AUD, now=T0)
    assert payload(first)["exp"] == T0 + 60
    assert short.assertion(ALICE, AUD, now=T0 + 29) == first
    assert short.assertion(ALICE, AUD, now=T0 + 30) != first


_PROPERTY_KEY = ec.generate_private_key(ec.SECP256R1())


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.floats(min_value=0, max_value=400, allow_nan=False), max_size=12),
       users=st.lists(st.integers(min_value=0, max_value=2), min_size=12, max_size=12))
def test_every_assertion_has_more_than_half_its_life_left(steps: list[float],
                                                          users: list[int]) -> None:
    signer = AssertionSigner(ISSUER, _PROPERTY_KEY)
    identities = [Identity(oid=f"oid-{i}", tid="t", groups=(f"g{i}",)) for i in range(3)]
    now = T0
    for step, user in zip(steps, users, strict=False):
        now += step
        claims = payload(signer.assertion(identities[user], AUD, now=now))
        assert claims["iat"] <= now
        assert claims["exp"] - now > LIFETIME / 2
        assert claims["exp"] == claims["iat"] + LIFETIME
        assert claims["oid"] == identities[user].oid


# --- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize("issuer", ["https://tools.example.com", "https://tools.example.com/"])
def test_issuer_is_the_public_url_origin(issuer: str) -> None:
    assert AssertionSigner.generate(issuer).issuer == ISSUER


@pytest.mark.parametrize("issuer", ["", "tools.example.com", "https://tools.example.com/app",
                                    "https://tools.example.com/?x=1", "ftp://tools.example.com"])
def test_issuer_must_be_an_origin(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer must be an origin"):
        AssertionSigner.generate(issuer)


@pytest.mark.parametrize(("kw", "message"), [({"lifetime": 1}, "lifetime"),
                                              ({"cache_size": 0}, "cache_size")])
def test_bad_settings_are_refused(kw: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AssertionSigner(ISSUER, ec.generate_private_key(ec.SECP256R1()), **kw)


def test_an_audience_is_required(es256: AssertionSigner) -> None:
    with pytest.raises(ValueError, match="audience"):
        es256.assertion(ALICE, "")


@pytest.mark.parametrize("make_key", [
    lambda: ec.generate_private_key(ec.SECP384R1()),
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
    ed25519.Ed25519PrivateKey.generate,
])
def test_constructor_refuses_unsupported_keys(make_key: Callable[[], Any]) -> None:
    with pytest.raises(AssertionKeyError, match="assertion signing key"):
        AssertionSigner(ISSUER, make_key())


def test_repr_shows_no_key_material(rs256: AssertionSigner, rsa_key: rsa.RSAPrivateKey) -> None:
    text = repr(rs256)
    assert text == f"AssertionSigner('{ISSUER}', algorithm='RS256', kid='{rs256.kid}')"
    assert str(rsa_key.private_numbers().d)[:20] not in text


# --- from_file --------------------------------------------------------------------------------


@pytest.mark.parametrize(("make_key", "fmt", "algorithm"), [
    (lambda: ec.generate_private_key(ec.SECP256R1()), PKCS8, "ES256"),
    (lambda: ec.generate_private_key(ec.SECP256R1()),
     serialization.PrivateFormat.TraditionalOpenSSL, "ES256"),  # BEGIN EC PRIVATE KEY
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
     serialization.PrivateFormat.TraditionalOpenSSL, "RS256"),  # BEGIN RSA PRIVATE KEY
])
def test_from_file_reads_common_pem_forms(tmp_path: Path, make_key: Callable[[], Any],
                                          fmt: serialization.PrivateFormat,
                                          algorithm: str) -> None:
    key = make_key()
    signer = AssertionSigner.from_file(ISSUER, str(write_key(tmp_path / "k.pem", key, fmt)))
    assert signer.algorithm == algorithm
    assert signer.kid == rfc7638(key.public_key())
    assert verify(signer.jwks(), signer.assertion(ALICE, AUD))["sub"] == ALICE.key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_from_file_reads_the_key_the_docs_tell_you_to_generate(tmp_path: Path) -> None:
    commands = re.findall(r"^openssl genpkey .*$", (ROOT / DOC).read_text(), re.M)
    assert len(commands) == 2  # EC P-256 and RSA
    for command in commands:
        subprocess.run(command.split(), check=True, capture_output=True, cwd=tmp_path)
        key_file = tmp_path / command.split("-out ")[1]
        signer = AssertionSigner.from_file(ISSUER, str(key_file))
        assert verify(signer.jwks(), signer.assertion(ALICE, AUD))["sub"] == ALICE.key
        key_file.unlink()


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(PEM)


SECRET_LOOKING = (b"-----BEGIN PRIVATE KEY-----\n"
                  b"TUlJQ0V3SUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NBUDB3Z2dKNQ==\n")


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "cannot read the assertion key file"),
    ("directory", "cannot read the assertion key file"),
    ("empty", "holds no readable PEM private key"),
    ("garbage", "holds no readable PEM private key"),
    ("truncated", "holds no readable PEM private key"),
    ("certificate", "holds no readable PEM private key"),
    ("public key", "holds no readable PEM private key"),
    ("encrypted", "is encrypted"),
    ("P-384", "curve secp384r1; only P-256"),
    ("RSA 1024", "1024-bit RSA key; at least 2048 bits"),
    ("Ed25519", "of type Ed25519; use an EC P-256 key"),
])
def test_from_file_errors_name_the_file_and_never_the_key(tmp_path: Path, case: str,
                                                          message: str) -> None:
    path = tmp_path / "assertion-key.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(b"\x00\xffnot a key at all")
    elif case == "truncated":
        path.write_bytes(SECRET_LOOKING)
    elif case == "certificate":
        path.write_bytes(_certificate())
    elif case == "public key":
        path.write_bytes(ec_key.public_key().public_bytes(
            PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    elif case == "encrypted":
        write_key(path, ec_key, encryption=serialization.BestAvailableEncryption(b"hunter22"))
    elif case == "P-384":
        write_key(path, ec.generate_private_key(ec.SECP384R1()))
    elif case == "RSA 1024":
        write_key(path, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    elif case == "Ed25519":
        write_key(path, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(AssertionKeyError) as info:
        AssertionSigner.from_file(ISSUER, str(path))
    text = str(info.value)
    assert str(path) in text
    assert message in text
    # Nothing of the file's content, and no chained parser error that might quote it.
    assert "BEGIN" not in text and "TUlJQ0V3" not in text
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


# --- the documented verification snippet ------------------------------------------------------


DOC = "docs/upstream-verification.md"


@pytest.fixture
def jwks_server(es256: AssertionSigner) -> Iterator[str]:
    """`/oauth2/jwks` on a real socket, for pyjwt's own (blocking) PyJWKClient."""
    body = json.dumps(es256.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/oauth2/jwks" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_documented_snippet_verifies_the_assertion(es256: AssertionSigner,
                                                   jwks_server: str) -> None:
    text = (ROOT / DOC).read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S)
    assert snippet is not None
    code = snippet.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    namespace: dict[str, Any] = {}
    exec(compile(code, DOC, "exec"), namespace)
    route = AUD + "/app2"  # the documented route: upstream origin + route path
    assert (namespace["PROXY"], namespace["ME"]) == (ISSUER, route)
    # The snippet's client points at the documented host; aim it at the test server instead.
    namespace["jwks"] = jwt.PyJWKClient(f"{jwks_server}/oauth2/jwks")
    verified = namespace["verified_identity"]

    claims = verified({"X-Auth-Assertion": es256.assertion(ALICE, route)})
    assert (claims["sub"], claims["groups"]) == (ALICE.key, list(ALICE.groups))
    for headers in ({}, {"X-Auth-Assertion": es256.assertion(ALICE, OTHER_AUD)},
                    # another route on the same origin, and the bare origin
                    {"X-Auth-Assertion": es256.assertion(ALICE, AUD + "/app1")},
                    {"X-Auth-Assertion": es256.assertion(ALICE, AUD)},
                    {"X-Auth-Assertion": AssertionSigner.generate(ISSUER).assertion(ALICE,
                                                                                    route)}):
        with pytest.raises(jwt.PyJWTError):
            verified(headers)
