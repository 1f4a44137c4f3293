"""ID token validation (proxy/oidc/tokens.py) check by check, with a frozen clock.

The conformance modules (tests/conformance) judge the whole sign-in; these pin each check's
edge, where `make mutate` showed a check could be loosened without any flow test noticing
(docs/mutation.md): the clock leeway, the key-issuer and cloud bindings, audiences, nonce
types, and the tenant allow-list.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from proxy.config import CONSUMERS_TENANT_ID, AzureConfig
from proxy.errors import LoginRejected
from proxy.oidc.discovery import TEMPLATE, Metadata
from proxy.oidc.jwks import KeySet
from proxy.oidc.tokens import LEEWAY, session_mismatch, tenant_allowed, validate_id_token

NOW = float(int(time.time()))  # pyjwt checks exp/iat with its own clock too: stay near it
CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "11111111-2222-3333-4444-555555555555"
HOST = "https://login.microsoftonline.com"
ISSUER = f"{HOST}/{TENANT}/v2.0"
NONCE = "n-0S6_WzA2Mj"


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def keyset(key: rsa.RSAPrivateKey, *members: dict[str, str]) -> KeySet:
    public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return KeySet.parse({"keys": [{**public, "use": "sig", **m} for m in members]})


def metadata(issuer: str = f"{HOST}/{TEMPLATE}/v2.0", cloud: str = "microsoftonline.com"
             ) -> Metadata:
    return Metadata(issuer=issuer, authorization_endpoint=f"{HOST}/a", token_endpoint=f"{HOST}/t",
                    jwks_uri=f"{HOST}/k", end_session_endpoint=f"{HOST}/l",
                    cloud_instance_name=cloud, msgraph_host="graph.microsoft.com")


AZURE = AzureConfig(client_id=CLIENT, tenant_id="organizations", allowed_tenants=(TENANT,))
KEY = {"kid": "k1", "issuer": f"{HOST}/{TEMPLATE}/v2.0",
       "cloud_instance_name": "microsoftonline.com"}


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "aud": CLIENT, "iss": ISSUER, "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
        "sub": "sub-1", "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474", "tid": TENANT,
        "nonce": NONCE,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def check(signer: rsa.RSAPrivateKey, body: dict[str, Any], *, keys: KeySet | None = None,
          meta: Metadata | None = None, nonce: str | None = NONCE, now: float = NOW,
          kid: str | None = "k1") -> dict[str, Any]:
    token = jwt.encode(body, signer, algorithm="RS256",
                       headers={"kid": kid} if kid is not None else None)
    if kid is None:  # pyjwt adds no kid unless asked; say so for the reader
        assert "kid" not in jwt.get_unverified_header(token)
    return validate_id_token(token, keys=keys or keyset(signer, KEY), metadata=meta or metadata(),
                             azure=AZURE, nonce=nonce, now=now)


def refused(reason: str, signer: rsa.RSAPrivateKey, body: dict[str, Any], **kwargs: Any) -> None:
    with pytest.raises(LoginRejected) as info:
        check(signer, body, **kwargs)
    assert info.value.reason == reason


def test_a_valid_token_is_accepted_as_is(signer: rsa.RSAPrivateKey) -> None:
    assert check(signer, claims()) == claims()


# --- the clock: pyjwt's leeway and ours agree, to the second ------------------------------------

def test_expiry_leeway_is_exactly_leeway_seconds(signer: rsa.RSAPrivateKey) -> None:
    assert LEEWAY == 120
    exp = NOW + 600  # valid for pyjwt's clock; ours is moved so only our check decides
    assert check(signer, claims(exp=exp), now=exp + LEEWAY)["exp"] == exp
    refused("the token has expired", signer, claims(exp=exp), now=exp + LEEWAY + 1)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_future_iat_or_nbf_leeway_is_exactly_leeway_seconds(signer: rsa.RSAPrivateKey,
                                                            claim: str) -> None:
    at = NOW - 600  # in pyjwt's past; our clock is moved back to just before it
    body = claims(iat=at - 600, nbf=at - 600) | {claim: at}
    assert check(signer, body, now=at - LEEWAY)[claim] == at
    refused("the token is not valid yet (nbf or iat in the future)", signer, body,
            now=at - LEEWAY - 1)


def test_nbf_is_optional(signer: rsa.RSAPrivateKey) -> None:
    # OIDC Core does not require nbf (Entra sends it): without one, only iat/exp decide.
    assert "nbf" not in check(signer, claims(nbf=None))


def test_pyjwt_applies_the_same_leeway(signer: rsa.RSAPrivateKey) -> None:
    # With our clock at real time, pyjwt's own check is what refuses (and what accepts).
    now = time.time()
    assert check(signer, claims(exp=int(now) - LEEWAY + 30), now=now)
    refused("the token has expired", signer, claims(exp=int(now) - LEEWAY - 30), now=now)
    refused("the token is not valid yet (nbf or iat in the future)", signer,
            claims(iat=int(now) + LEEWAY + 30), now=now)


# --- tenant and issuer ----------------------------------------------------------------------

def test_a_tid_that_is_not_a_guid_is_refused_even_with_a_matching_iss(
        signer: rsa.RSAPrivateKey) -> None:
    # With the {tenantid} template, iss would "match" any tid: the GUID check is what stops it.
    for tid in ("contoso", "../x", TENANT + "0"):
        refused("the tid claim is missing or not a tenant GUID", signer,
                claims(tid=tid, iss=f"{HOST}/{tid}/v2.0"))
    refused("the tid claim is missing or not a tenant GUID", signer, claims(tid=7))


def test_an_issuer_not_of_the_tokens_tenant_is_refused(signer: rsa.RSAPrivateKey) -> None:
    for iss in (f"{HOST}/{OTHER}/v2.0", f"https://sts.windows.net/{TENANT}/", ISSUER + "/"):
        refused("the issuer (iss) does not match the tenant", signer, claims(iss=iss))


def test_a_key_of_another_tenant_is_refused(signer: rsa.RSAPrivateKey) -> None:
    other = keyset(signer, {**KEY, "issuer": f"{HOST}/{OTHER}/v2.0"})
    refused("the signing key belongs to another issuer", signer, claims(), keys=other)
    own = keyset(signer, {**KEY, "issuer": ISSUER})  # a tenant's own JWKS names it exactly
    assert check(signer, claims(), keys=own)["tid"] == TENANT


def test_a_key_without_issuer_or_cloud_binds_nothing(signer: rsa.RSAPrivateKey) -> None:
    # B2C and older JWKS carry no issuer/cloud on their keys: no binding to check, no refusal.
    assert check(signer, claims(), keys=keyset(signer, {"kid": "k1"}))["tid"] == TENANT
    assert check(signer, claims(), meta=metadata(cloud=""))["tid"] == TENANT


def test_a_key_of_another_cloud_is_refused(signer: rsa.RSAPrivateKey) -> None:
    refused("the signing key belongs to another cloud", signer, claims(),
            keys=keyset(signer, {**KEY, "cloud_instance_name": "microsoftonline.us"}))


def test_no_key_at_all_is_refused(signer: rsa.RSAPrivateKey) -> None:
    refused("no signing key matches", signer, claims(), keys=KeySet(()), kid=None)


def test_without_kid_every_key_is_tried(signer: rsa.RSAPrivateKey) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    both = KeySet(keyset(stranger, {**KEY, "kid": "s"}).keys + keyset(signer, KEY).keys)
    assert check(signer, claims(), keys=both, kid=None)["tid"] == TENANT
    refused("the signature does not verify", stranger, claims(),
            keys=keyset(signer, KEY), kid=None)


# --- audience, authorized party, nonce, subject -----------------------------------------------

def test_audience_lists(signer: rsa.RSAPrivateKey) -> None:
    assert check(signer, claims(aud=[CLIENT]))["aud"] == [CLIENT]  # one audience: no azp needed
    assert check(signer, claims(aud=[CLIENT, "other"], azp=CLIENT))["azp"] == CLIENT
    refused("several audiences (aud) but no authorized party (azp)", signer,
            claims(aud=[CLIENT, "other"]))
    refused("the authorized party (azp) is not this application", signer,
            claims(aud=[CLIENT, "other"], azp="other"))
    refused("the audience (aud) is not this application", signer, claims(aud="other"))


@pytest.mark.parametrize("value", [12345, ["n"], NONCE + "x", NONCE[:-1], ""])
def test_a_nonce_that_is_not_this_sign_ins_is_refused(signer: rsa.RSAPrivateKey,
                                                      value: Any) -> None:
    refused("the nonce does not match this sign-in", signer, claims(nonce=value))


def test_without_an_expected_nonce_none_is_checked(signer: rsa.RSAPrivateKey) -> None:
    # A refreshed ID token carries no nonce (OIDC Core §12.2): nothing to compare.
    assert "nonce" not in check(signer, claims(nonce=None), nonce=None)


@pytest.mark.parametrize(("claim", "value", "reason"), [
    ("sub", "", "the sub claim is missing"),
    ("oid", None, "the oid claim is missing (request the 'profile' scope)"),
    ("oid", "", "the oid claim is missing (request the 'profile' scope)"),
    ("oid", 7, "the oid claim is missing (request the 'profile' scope)"),
])
def test_subject_and_object_id_must_be_non_empty_strings(
        signer: rsa.RSAPrivateKey, claim: str, value: Any, reason: str) -> None:
    refused(reason, signer, claims(**{claim: value}))


@pytest.mark.parametrize(("claim", "reason"), [
    ("exp", "the exp claim is missing"), ("iat", "the iat claim is missing"),
    ("sub", "the sub claim is missing"), ("iss", "the iss claim is missing"),
])
def test_required_claims(signer: rsa.RSAPrivateKey, claim: str, reason: str) -> None:
    refused(reason, signer, claims(**{claim: None}))


def test_malformed_and_otherwise_invalid_tokens_say_so(signer: rsa.RSAPrivateKey) -> None:
    with pytest.raises(LoginRejected) as info:
        validate_id_token("not-a-jwt", keys=keyset(signer, KEY), metadata=metadata(),
                          azure=AZURE, nonce=NONCE, now=NOW)
    assert info.value.reason == "the token is not a well-formed JWT"
    refused("the token is invalid (InvalidSubjectError)", signer, claims(sub=7))


def test_a_long_algorithm_name_is_cut_in_the_reason(signer: rsa.RSAPrivateKey) -> None:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    token = f"{part({'alg': 'A' * 40, 'kid': 'k1'})}.{part(claims())}.c2ln"
    with pytest.raises(LoginRejected) as info:
        validate_id_token(token, keys=keyset(signer, KEY), metadata=metadata(), azure=AZURE,
                          nonce=NONCE, now=NOW)
    assert info.value.reason == f"signature algorithm {'A' * 20!r} is not allowed"


# --- tenants ----------------------------------------------------------------------------------

def test_tenant_allowed() -> None:
    single = AzureConfig(client_id=CLIENT, tenant_id=TENANT)
    assert tenant_allowed(single, TENANT)  # single-tenant: the issuer check already pins it
    multi = AzureConfig(client_id=CLIENT, tenant_id="organizations")
    assert not tenant_allowed(multi, TENANT)  # multi-tenant with no list: fail closed
    assert tenant_allowed(AzureConfig(client_id=CLIENT, tenant_id="common",
                                      allow_any_tenant=True), OTHER)
    listed = AzureConfig(client_id=CLIENT, tenant_id="organizations",
                         allowed_tenants=(TENANT.upper(),), allow_any_tenant=True)
    assert tenant_allowed(listed, TENANT) and tenant_allowed(listed, TENANT.upper())
    assert not tenant_allowed(listed, OTHER)  # a list wins over allow_any_tenant


# --- a stored session against today's configuration (admission, every request) -------------

def test_a_session_binds_client_issuer_and_tenant() -> None:
    single = AzureConfig(client_id=CLIENT, tenant_id=TENANT.upper())
    def iss(tid: str) -> str:
        return f"{HOST}/{tid}/v2.0"
    assert session_mismatch(single, CLIENT, iss(TENANT), TENANT) is None
    assert session_mismatch(single, CLIENT, iss(TENANT).upper(), TENANT.upper()) is None
    for aud in ("", "other", CLIENT + "x"):
        assert session_mismatch(single, aud, iss(TENANT), TENANT) == "made-for-another-client-id"
    for bad in ("", f"https://login.microsoftonline.us/{TENANT}/v2.0", iss(OTHER)):
        assert session_mismatch(single, CLIENT, bad, TENANT) == "made-by-another-issuer"
    assert session_mismatch(single, CLIENT, iss(OTHER), OTHER) == "made-for-another-tenant"
    consumers = AzureConfig(client_id=CLIENT, tenant_id="Consumers")
    msa = CONSUMERS_TENANT_ID.upper()
    assert session_mismatch(consumers, CLIENT, iss(msa), msa) is None
    assert session_mismatch(consumers, CLIENT, iss(TENANT), TENANT) == "made-for-another-tenant"
    # organizations: any tenant's session is one it would issue, if the allow-list has it
    assert session_mismatch(AZURE, CLIENT, iss(TENANT), TENANT) is None
    assert session_mismatch(AZURE, CLIENT, iss(OTHER), OTHER) == "tenant-not-allowed"
