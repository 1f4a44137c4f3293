"""Bearer access tokens: v1/v2 issuers, Graph tokens, tenants, algorithms, header parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from proxy.authorize import Policy
from proxy.config import AccessPolicyConfig, ApiConfig, AzureConfig
from proxy.errors import IdPFailure, Unauthenticated
from proxy.identity import Identity
from proxy.oidc.bearer import (
    MAX_HEADER,
    BearerRejected,
    bearer_token,
    identity_claims,
    is_v1_token,
    validate_access_token,
)
from proxy.oidc.callers import caller_problem
from proxy.oidc.discovery import TEMPLATE, Metadata
from proxy.oidc.jwks import KeySet, UnknownKey
from proxy.oidc.tokens import LEEWAY
from proxy.oidc.v1 import parse_v1_metadata

NOW = 1_700_000_000.0
CLIENT = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
MSA_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
GRAPH = "00000003-0000-0000-c000-000000000000"
HOST = "https://login.microsoftonline.com"
V2_TEMPLATE = f"{HOST}/{TEMPLATE}/v2.0"
V1_GLOBAL = f"https://sts.windows.net/{TEMPLATE}/"  # the global cloud's v1 document issuer
DELETE = object()  # claim/header value meaning "leave this member out"


@dataclass(frozen=True)
class Keys:
    signer: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey  # not in the JWKS

    @property
    def public_pem(self) -> bytes:
        return self.signer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsa_keys() -> Keys:
    def new() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Keys(new(), new())


def jwk(key: rsa.RSAPrivateKey, kid: str, **extra: str) -> dict[str, Any]:
    doc: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**doc, "kid": kid, "use": "sig", **extra}


@pytest.fixture(scope="module")
def keys(rsa_keys: Keys) -> KeySet:
    # As Entra's common JWKS: tenant-independent keys, an MSA-only key, another cloud's key.
    return KeySet.parse({"keys": [
        jwk(rsa_keys.signer, "k1", issuer=V2_TEMPLATE, cloud_instance_name="microsoftonline.com"),
        jwk(rsa_keys.signer, "bare"),
        jwk(rsa_keys.signer, "msa", issuer=f"{HOST}/{MSA_TENANT}/v2.0",
            cloud_instance_name="microsoftonline.com"),
        jwk(rsa_keys.signer, "usgov", issuer="https://login.microsoftonline.us/{tenantid}/v2.0",
            cloud_instance_name="microsoftonline.us"),
        jwk(rsa_keys.signer, "v1key", issuer="https://sts.windows.net/{tenantid}/"),
    ]})


def metadata(issuer: str) -> Metadata:
    base = f"{HOST}/organizations"
    return Metadata(
        issuer=issuer, authorization_endpoint=f"{base}/oauth2/v2.0/authorize",
        token_endpoint=f"{base}/oauth2/v2.0/token", jwks_uri=f"{base}/discovery/v2.0/keys",
        end_session_endpoint=f"{base}/oauth2/v2.0/logout",
        cloud_instance_name="microsoftonline.com", msgraph_host="graph.microsoft.com",
    )


MULTI = metadata(V2_TEMPLATE)
SINGLE = metadata(f"{HOST}/{TENANT}/v2.0")
AZURE_MULTI = AzureConfig(client_id=CLIENT, tenant_id="organizations", allowed_tenants=(TENANT,))
AZURE_SINGLE = AzureConfig(client_id=CLIENT, tenant_id=TENANT)
AUDIENCES = (CLIENT, f"api://{CLIENT}")


def v2_claims(tid: str = TENANT) -> dict[str, Any]:
    return {
        "aud": CLIENT, "iss": f"{HOST}/{tid}/v2.0", "iat": NOW - 60, "nbf": NOW - 60,
        "exp": NOW + 3600, "azp": "c0ffee00-0000-0000-0000-000000000001", "name": "Abe Lincoln",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474", "preferred_username": "abeli@contoso.com",
        "scp": "access_as_user", "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
        "tid": tid, "ver": "2.0", "groups": ["g1"], "roles": ["Reader"],
    }


def v1_claims(tid: str = TENANT) -> dict[str, Any]:
    claims = v2_claims(tid)
    del claims["azp"], claims["preferred_username"]
    return {**claims, "aud": f"api://{CLIENT}", "iss": f"https://sts.windows.net/{tid}/",
            "ver": "1.0", "appid": "c0ffee00-0000-0000-0000-000000000001",
            "upn": "abeli@contoso.com", "unique_name": "abeli@contoso.com"}


def apply(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not DELETE}


def sign(rsa_keys: Keys, claims: dict[str, Any], *, kid: Any = "k1",
         key: rsa.RSAPrivateKey | None = None, algorithm: str = "RS256",
         **header: Any) -> str:
    headers = apply({"kid": kid}, header)
    return jwt.encode(claims, key or rsa_keys.signer, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None = None) -> str:
    """A JWT pyjwt refuses to build: alg none, or HS256 keyed with a public key."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def validate(token: str, keys: KeySet, *, meta: Metadata = MULTI,
             azure: AzureConfig = AZURE_MULTI, audiences: tuple[str, ...] = AUDIENCES,
             now: float | None = NOW, v1_issuer: str = V1_GLOBAL) -> dict[str, Any]:
    # As EntraClient.validate_bearer: a token claiming a v1 issuer is held to the v1 one.
    return validate_access_token(token, keys=keys, metadata=meta, azure=azure,
                                 audiences=audiences, now=now,
                                 v1_issuer=v1_issuer if is_v1_token(token) else None)


def rejected(token: str, keys: KeySet, expect: str, **kwargs: Any) -> BearerRejected:
    with pytest.raises(BearerRejected) as info:
        validate(token, keys, **kwargs)
    error = info.value
    assert error.reason == expect  # the exact sentence: it is the client's error_description
    assert token not in error.reason and token not in str(error) and token not in error.public
    return error


# --- accepted ---------------------------------------------------------------------------------

@pytest.mark.parametrize("meta,azure", [(MULTI, AZURE_MULTI), (SINGLE, AZURE_SINGLE)],
                         ids=["multi-tenant", "single-tenant"])
@pytest.mark.parametrize("make", [v2_claims, v1_claims], ids=["v2", "v1"])
def test_valid_tokens_are_accepted(rsa_keys: Keys, keys: KeySet, meta: Metadata,
                                   azure: AzureConfig, make: Any) -> None:
    claims = make()
    assert validate(sign(rsa_keys, claims), keys, meta=meta, azure=azure) == claims


def test_v1_token_signed_with_a_v2_tagged_key_is_accepted(rsa_keys: Keys, keys: KeySet) -> None:
    # Entra signs v1 tokens with the same keys, which carry v2 issuers: no false refusal.
    assert validate(sign(rsa_keys, v1_claims(), kid="k1"), keys)["ver"] == "1.0"
    # ...and a key tagged with the v1 issuer itself is also consistent (as IdentityModel).
    assert validate(sign(rsa_keys, v1_claims(), kid="v1key"), keys)["ver"] == "1.0"


def test_key_without_issuer_and_token_without_kid(rsa_keys: Keys, keys: KeySet) -> None:
    assert validate(sign(rsa_keys, v2_claims(), kid="bare"), keys)["tid"] == TENANT
    # No kid: every key is tried (as validate_id_token); the signature still has to verify.
    assert validate(sign(rsa_keys, v2_claims(), kid=DELETE), keys)["tid"] == TENANT
    # ... the keys that do not verify it are skipped, not the end of the search.
    second = KeySet.parse({"keys": [jwk(rsa_keys.stranger, "s1", issuer=V2_TEMPLATE),
                                    jwk(rsa_keys.signer, "k1", issuer=V2_TEMPLATE)]})
    assert validate(sign(rsa_keys, v2_claims(), kid=DELETE), second)["tid"] == TENANT


def test_list_audience_and_optional_claims(rsa_keys: Keys, keys: KeySet) -> None:
    claims = apply(v2_claims(), {"aud": ["other", CLIENT], "nbf": DELETE, "iat": DELETE,
                                 "ver": DELETE})
    assert validate(sign(rsa_keys, claims), keys)["aud"] == ["other", CLIENT]


def test_time_checks_allow_the_leeway(rsa_keys: Keys, keys: KeySet) -> None:
    claims = apply(v2_claims(), {"exp": NOW - LEEWAY, "nbf": NOW + LEEWAY, "iat": NOW + LEEWAY})
    assert validate(sign(rsa_keys, claims), keys)
    rejected(sign(rsa_keys, {**claims, "exp": NOW - LEEWAY - 1}), keys, "the token has expired")


def test_default_clock_is_now(rsa_keys: Keys, keys: KeySet) -> None:
    real = time.time()
    fresh = apply(v2_claims(), {"iat": real, "nbf": real, "exp": real + 600})
    assert validate(sign(rsa_keys, fresh), keys, now=None)
    rejected(sign(rsa_keys, v2_claims()), keys, "the token has expired", now=None)  # NOW is in 2023
    # pyjwt's own iat check (no leeway) is off: a token issued by a clock a little ahead passes.
    ahead = apply(fresh, {"iat": int(real) + LEEWAY // 2})
    assert validate(sign(rsa_keys, ahead), keys, now=None)


@pytest.mark.parametrize("azure", [
    AzureConfig(client_id=CLIENT, tenant_id="common", allow_any_tenant=True),
    AzureConfig(client_id=CLIENT, tenant_id="organizations", allowed_tenants=(TENANT.upper(),)),
], ids=["allow_any_tenant", "allowed_tenants-case-insensitive"])
def test_multi_tenant_modes_that_admit_the_tenant(rsa_keys: Keys, keys: KeySet,
                                                  azure: AzureConfig) -> None:
    assert validate(sign(rsa_keys, v2_claims()), keys, azure=azure)["tid"] == TENANT


# --- refused: claims --------------------------------------------------------------------------

BAD_ISS = "the issuer (iss) is not this authority for the token's tenant"
BAD_VER = "the token version (ver) does not match its issuer"
NOT_API = "the audience (aud) is not this API"
NOT_OURS = "the token's tenant (tid) is not this authority's tenant"
NOT_ALLOWED = "the token's tenant (tid) is not allowed here"


@pytest.mark.parametrize("changes,expect", [
    ({"aud": "api://someone-else"}, NOT_API),
    ({"aud": [f"api://{CLIENT}-x"]}, NOT_API),
    ({"aud": []}, "the audience (aud) is malformed"),
    ({"aud": [CLIENT, 7]}, "the audience (aud) is malformed"),
    ({"aud": GRAPH}, "the token is for Microsoft Graph, not for this API"),
    ({"aud": "https://graph.microsoft.com"}, "the token is for Microsoft Graph, not for this API"),
    ({"aud": "https://graph.microsoft.com/"}, "the token is for Microsoft Graph, not for this API"),
    ({"aud": [CLIENT, GRAPH]}, "the token is for Microsoft Graph, not for this API"),
    ({"exp": NOW - 3600}, "the token has expired"),
    ({"exp": DELETE}, "the exp claim is missing"),
    ({"exp": "tomorrow"}, "the exp claim is not a timestamp"),
    ({"exp": True}, "the exp claim is not a timestamp"),
    ({"exp": 10**400}, "the exp claim is not a timestamp"),
    ({"exp": float("nan")}, "the exp claim is not a timestamp"),  # json allows NaN; never expires
    ({"nbf": float("-inf")}, "the nbf claim is not a timestamp"),
    ({"nbf": NOW + 600}, "the token is not valid yet (nbf in the future)"),
    ({"iat": NOW + 86400}, "the token is not valid yet (iat in the future)"),
    ({"tid": DELETE}, "the tid claim is missing"),
    ({"tid": "contoso.onmicrosoft.com"}, "the tid claim is not a tenant GUID"),
    ({"tid": 42}, "the tid claim is not a tenant GUID"),
    ({"iss": f"{HOST}/{OTHER_TENANT}/v2.0"}, BAD_ISS),
    ({"iss": f"https://sts.windows.net/{OTHER_TENANT}/"}, BAD_ISS),
    ({"iss": f"https://login.evil.example/{TENANT}/v2.0"}, BAD_ISS),
    ({"iss": f"https://sts.windows.net/{TENANT}"}, BAD_ISS),  # no trailing slash
    ({"iss": f"{HOST}/{TENANT}/v2.0/"}, BAD_ISS),
    ({"iss": V2_TEMPLATE}, BAD_ISS),
    ({"iss": DELETE}, "the iss claim is missing"),
    ({"iss": f"https://sts.windows.net/{TENANT}/"}, BAD_VER),  # v1 iss, ver 2.0
    ({"ver": "1.0"}, BAD_VER),
    ({"oid": DELETE}, "the oid claim is missing"),
    ({"oid": ""}, "the oid claim is missing"),
    ({"nonce": "n-0S6_WzA2Mj"}, "this is not an access token (an ID token cannot call the API)"),
    ({"azp": DELETE}, "this is not an access token (an ID token cannot call the API)"),
    ({"aud": "https://graph.microsoft.com/X"}, NOT_API),
    ({"aud": ""}, NOT_API),
])
def test_claim_refusals(rsa_keys: Keys, keys: KeySet, changes: dict[str, Any],
                        expect: str) -> None:
    rejected(sign(rsa_keys, apply(v2_claims(), changes)), keys, expect)


def test_graph_audience_is_refused_even_if_configured(rsa_keys: Keys, keys: KeySet) -> None:
    token = sign(rsa_keys, apply(v2_claims(), {"aud": GRAPH}))
    rejected(token, keys, "the token is for Microsoft Graph, not for this API", audiences=(GRAPH, "https://graph.microsoft.com"))
    # A Graph audience in the config never widens what is accepted.
    uri = sign(rsa_keys, apply(v2_claims(), {"aud": f"api://{CLIENT}"}))
    rejected(uri, keys, NOT_API, audiences=(GRAPH,))


def test_the_client_id_is_implied_and_the_app_id_uri_is_configured(rsa_keys: Keys,
                                                                   keys: KeySet) -> None:
    # Entra: a v2 token's aud is always the GUID; a v1 token's is the GUID or the App ID URI.
    only_uri = (f"api://{CLIENT}",)
    assert validate(sign(rsa_keys, v2_claims()), keys, audiences=only_uri)["aud"] == CLIENT
    assert validate(sign(rsa_keys, apply(v1_claims(), {"aud": CLIENT})), keys,
                    audiences=only_uri)["ver"] == "1.0"
    assert validate(sign(rsa_keys, v1_claims()), keys, audiences=only_uri)["ver"] == "1.0"
    rejected(sign(rsa_keys, v1_claims()), keys, NOT_API, audiences=())
    other = replace(AZURE_MULTI, client_id="0f0f0f0f-0000-4000-8000-000000000000")
    rejected(sign(rsa_keys, v2_claims()), keys, NOT_API, audiences=only_uri,
             azure=other)
    # No client ID (check-config refuses that): nothing is implied, an empty aud matches none.
    blank = replace(AZURE_MULTI, client_id="")
    rejected(sign(rsa_keys, apply(v2_claims(), {"aud": ""})), keys, NOT_API, audiences=only_uri,
             azure=blank)


def test_the_v1_issuer_is_the_clouds_own(rsa_keys: Keys, keys: KeySet) -> None:
    china = "https://sts.chinacloudapi.cn/{tenantid}/"
    token = sign(rsa_keys, apply(v1_claims(), {"iss": f"https://sts.chinacloudapi.cn/{TENANT}/"}))
    assert validate(token, keys, v1_issuer=china)["ver"] == "1.0"
    # The global STS is not the issuer where the cloud's v1 document names another one.
    rejected(sign(rsa_keys, v1_claims()), keys, BAD_ISS, v1_issuer=china)
    rejected(token, keys, BAD_ISS)  # nor the other way round
    # A v1 token is never judged against the v2 issuer, nor a v2 token against the v1 one.
    with pytest.raises(BearerRejected, match="issuer"):
        validate_access_token(sign(rsa_keys, v2_claims()), keys=keys, metadata=MULTI,
                              azure=AZURE_MULTI, audiences=AUDIENCES, now=NOW,
                              v1_issuer=V1_GLOBAL)
    assert not is_v1_token("not.a.jwt") and is_v1_token(token)


def test_national_cloud_graph_audience_from_discovery(rsa_keys: Keys, keys: KeySet) -> None:
    meta = replace(MULTI, msgraph_host="graph.example.test")
    token = sign(rsa_keys, apply(v2_claims(), {"aud": "https://graph.example.test"}))
    rejected(token, keys, "the token is for Microsoft Graph, not for this API", meta=meta,
             audiences=(*AUDIENCES, "https://graph.example.test"))


def test_single_tenant_refuses_other_tenants(rsa_keys: Keys, keys: KeySet) -> None:
    # Consistent iss/tid from another tenant: only the configured tenant's issuer is ours.
    for claims in (v2_claims(OTHER_TENANT), v1_claims(OTHER_TENANT)):
        rejected(sign(rsa_keys, claims), keys, NOT_OURS,
                 meta=SINGLE, azure=AZURE_SINGLE)
    # A v1 token from our tenant passes only with our tid; a forged tid breaks the issuer.
    forged = apply(v1_claims(), {"tid": OTHER_TENANT})
    rejected(sign(rsa_keys, forged), keys, NOT_OURS, meta=SINGLE, azure=AZURE_SINGLE)


def test_tenant_allow_list(rsa_keys: Keys, keys: KeySet) -> None:
    other = sign(rsa_keys, v2_claims(OTHER_TENANT))
    rejected(other, keys, NOT_ALLOWED)
    closed = AzureConfig(client_id=CLIENT, tenant_id="organizations")
    rejected(sign(rsa_keys, v2_claims()), keys, NOT_ALLOWED, azure=closed)
    rejected(sign(rsa_keys, v1_claims()), keys, NOT_ALLOWED, azure=closed)
    pinned = replace(AZURE_SINGLE, allowed_tenants=(OTHER_TENANT,))
    rejected(sign(rsa_keys, v2_claims()), keys, NOT_ALLOWED, meta=SINGLE,
             azure=pinned)


# --- refused: keys and signatures -------------------------------------------------------------

@pytest.mark.parametrize("kid,expect", [
    ("msa", "the signing key belongs to another issuer"),
    ("usgov", "the signing key belongs to another issuer"),
    ("v1key", "the signing key belongs to another issuer"),  # a v1-tagged key cannot sign v2
])
def test_key_issuer_and_cloud(rsa_keys: Keys, keys: KeySet, kid: str, expect: str) -> None:
    rejected(sign(rsa_keys, v2_claims(), kid=kid), keys, expect)


def test_v1_token_with_a_key_of_another_tenant_is_refused(rsa_keys: Keys, keys: KeySet) -> None:
    rejected(sign(rsa_keys, v1_claims(), kid="msa"), keys,
             "the signing key belongs to another issuer")


def test_key_of_another_cloud_is_refused(rsa_keys: Keys, keys: KeySet) -> None:
    other_cloud = KeySet.parse({"keys": [
        jwk(rsa_keys.signer, "k1", issuer=V2_TEMPLATE, cloud_instance_name="microsoftonline.us"),
    ]})
    rejected(sign(rsa_keys, v2_claims()), other_cloud, "the signing key belongs to another cloud")


def test_graph_token_header_nonce_is_refused(rsa_keys: Keys, keys: KeySet) -> None:
    token = sign(rsa_keys, v2_claims(), nonce="AQABAAAAAABnfiG-mA6NTae7CdWW7QfdX")
    rejected(token, keys, "the token is for another API (header nonce)")


def test_alg_none_is_refused(rsa_keys: Keys, keys: KeySet) -> None:
    token = unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, v2_claims())
    rejected(token, keys, "signature algorithm 'none' is not allowed")


def test_hs256_keyed_with_the_public_key_is_refused(rsa_keys: Keys, keys: KeySet) -> None:
    token = unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, v2_claims(),
                     secret=rsa_keys.public_pem)
    rejected(token, keys, "signature algorithm 'HS256' is not allowed")


@pytest.mark.parametrize("algorithm", ["RS512", "PS256"])
def test_other_asymmetric_algs_are_refused(rsa_keys: Keys, keys: KeySet, algorithm: str) -> None:
    rejected(sign(rsa_keys, v2_claims(), algorithm=algorithm), keys,
             f"signature algorithm {algorithm!r} is not allowed")


def test_odd_alg_is_not_echoed(rsa_keys: Keys, keys: KeySet) -> None:
    token = unsigned({"alg": "<script>", "kid": "k1"}, v2_claims())
    refusal = rejected(token, keys, "signature algorithm 'unknown' is not allowed")
    assert "<script>" not in refusal.reason


def test_bad_signature_is_refused(rsa_keys: Keys, keys: KeySet) -> None:
    rejected(sign(rsa_keys, v2_claims(), key=rsa_keys.stranger), keys,
             "the signature does not verify")
    header, payload, signature = sign(rsa_keys, v2_claims()).split(".")
    tampered = b64(json.dumps({**v2_claims(), "roles": ["Admin"]}).encode())
    rejected(f"{header}.{tampered}.{signature}", keys, "the signature does not verify")
    rejected(sign(rsa_keys, v2_claims(), key=rsa_keys.stranger, kid=DELETE), keys,
             "the signature does not verify")


def test_unknown_kid_propagates_for_a_refetch(rsa_keys: Keys, keys: KeySet) -> None:
    token = sign(rsa_keys, v2_claims(), kid="rotated-in")
    with pytest.raises(UnknownKey) as info:
        validate(token, keys)
    assert token not in str(info.value)


@pytest.mark.parametrize("token,expect", [
    ("not-a-jwt", "the token is not a well-formed JWT"),
    ("a.b.c", "the token is not a well-formed JWT"),
    (unsigned({"alg": "RS256", "kid": ["k1"]}, {}), "the token header is malformed"),
])
def test_malformed_tokens(keys: KeySet, token: str, expect: str) -> None:
    rejected(token, keys, expect)


def test_payload_that_is_not_an_object(rsa_keys: Keys, keys: KeySet) -> None:
    token = jwt.api_jws.encode(b"[1, 2]", rsa_keys.signer, algorithm="RS256",
                               headers={"kid": "k1"})
    rejected(token, keys, "the token is invalid (DecodeError)")


def test_rejection_is_a_401_for_api_clients() -> None:
    error = BearerRejected("the token has expired")
    assert isinstance(error, Unauthenticated) and error.status == 401
    assert error.public == "The bearer token was rejected: the token has expired."
    assert error.context == {"reason": "the token has expired"}  # what the refusal log shows
    assert error.challenge == ('Bearer realm="azure-auth-proxy", error="invalid_token", '
                               'error_description="the token has expired"')
    quoted = BearerRejected('the "x" claim')  # a quote would end the challenge's string
    assert quoted.challenge.endswith('error_description="the x claim"')


# --- Authorization header ---------------------------------------------------------------------

@pytest.mark.parametrize("header,expected", [
    ("Bearer abc.def.ghi", "abc.def.ghi"),
    ("bearer abc.def.ghi", "abc.def.ghi"),
    ("BEARER abc-_~+/=", "abc-_~+/="),
    ("Bearer  two-spaces", "two-spaces"),  # RFC 6750: 1*SP
    (None, None),
    ("", None),
    ("Bearer", None),
    ("Bearer ", None),
    ("Bearer a b", None),
    ("Bearer a\tb", None),
    ("Bearer\tabc", None),
    ("Bearer abc ", None),
    (" Bearer abc", None),
    ("Bearer abc\r\n", None),
    ("Bearer a=b", None),
    ("Bearer a,b", None),
    ("Basic dXNlcjpwYXNz", None),
    ("Bearerabc", None),
    ("Token abc", None),
])
def test_bearer_token_parsing(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


def test_bearer_token_length_cap() -> None:
    fits = "Bearer " + "a" * (MAX_HEADER - len("Bearer "))
    assert bearer_token(fits) == fits.removeprefix("Bearer ")
    assert bearer_token(fits + "a") is None


# --- identity ---------------------------------------------------------------------------------

def test_identity_from_a_v2_token(rsa_keys: Keys, keys: KeySet) -> None:
    mapped = identity_claims(validate(sign(rsa_keys, v2_claims()), keys))
    assert mapped["scp"] == "access_as_user" and mapped["idtyp"] == "user"
    assert mapped["azp"] == "c0ffee00-0000-0000-0000-000000000001"
    identity = Identity.from_claims(mapped)
    assert identity.key == f"{TENANT}/690222be-ff1a-4d56-abd1-7e4f7d38e474"
    assert identity.preferred_username == "abeli@contoso.com" and identity.name == "Abe Lincoln"
    assert identity.groups == ("g1",) and identity.roles == ("Reader",)


def test_identity_from_a_v1_token_uses_upn() -> None:
    mapped = identity_claims(apply(v1_claims(), {"upn": DELETE}))
    assert mapped["preferred_username"] == "abeli@contoso.com"  # unique_name
    assert identity_claims(apply(v1_claims(), {"unique_name": "x"}))["preferred_username"] == (
        "abeli@contoso.com")
    assert mapped["azp"] == "c0ffee00-0000-0000-0000-000000000001"
    assert "upn" not in mapped and "unique_name" not in mapped and "appid" not in mapped


def test_identity_from_an_app_only_token() -> None:
    sp = "5ee5e5e5-0000-0000-0000-000000000002"  # the calling app's service principal
    app = {"aud": CLIENT, "iss": f"{HOST}/{TENANT}/v2.0", "tid": TENANT, "exp": NOW,
           "oid": sp, "sub": sp, "azp": "c0ffee00-0000-0000-0000-000000000003",
           "roles": ["Jobs.Run"], "ver": "2.0"}
    mapped = identity_claims(app)
    assert mapped["idtyp"] == "app"
    identity = Identity.from_claims(mapped)
    assert identity.oid == app["oid"] and identity.roles == ("Jobs.Run",)
    assert identity.user == app["oid"] and identity.email == "" and identity.groups == ()
    assert identity_claims({**app, "idtyp": "app", "scp": "x"})["idtyp"] == "app"
    assert "azp" not in identity_claims(apply(app, {"azp": DELETE}))
    assert identity.is_app and identity.to_dict()["idtyp"] == "app"
    # A user token always has scp: without one, an "idtyp": "user" claim makes no user.
    assert identity_claims({**app, "idtyp": "user"})["idtyp"] == "app"
    assert identity_claims({**app, "scp": " "})["idtyp"] == "app"
    user = Identity.from_claims(identity_claims(v2_claims()))
    assert not user.is_app and "idtyp" not in user.to_dict()


CALLER = "c0ffee00-0000-0000-0000-000000000001"


@pytest.mark.parametrize("api,claims,problem", [
    (ApiConfig(), v2_claims(), "allowed clients"),
    (ApiConfig(allowed_client_ids=(CALLER.upper(),)), v2_claims(), None),
    (ApiConfig(allowed_client_ids=(CALLER,)), v1_claims(), None),  # v1 names it appid
    (ApiConfig(allowed_client_ids=(CALLER,)), apply(v2_claims(), {"azp": DELETE}),
     "allowed clients"),
    (ApiConfig(allowed_client_ids=("c0ffee00-0000-0000-0000-000000000009",)), v2_claims(),
     "allowed clients"),
    (ApiConfig(allowed_client_ids=(CALLER,), required_scopes=("Items.Read", "access_as_user")),
     v2_claims(), None),
    (ApiConfig(allowed_client_ids=(CALLER,), required_scopes=("Items.Read",)), v2_claims(),
     "required scopes"),
    # An app's roles never stand in for a user's scope, nor a user's scope for an app's role.
    (ApiConfig(allowed_client_ids=(CALLER,), required_scopes=("Reader",)), v2_claims(),
     "required scopes"),
    (ApiConfig(allowed_client_ids=(CALLER,), required_app_roles=("Reader",)),
     apply(v2_claims(), {"scp": DELETE}), None),
    (ApiConfig(allowed_client_ids=(CALLER,), required_app_roles=("Jobs.Run",)),
     apply(v2_claims(), {"scp": DELETE}), "required app roles"),
    (ApiConfig(allowed_client_ids=(CALLER,), required_app_roles=("access_as_user",)),
     apply(v2_claims(), {"scp": DELETE, "roles": "access_as_user"}), "required app roles"),
])
def test_which_callers_count(api: ApiConfig, claims: dict[str, Any],
                             problem: str | None) -> None:
    found = caller_problem(claims, api)
    assert found == problem if problem is None else problem in (found or "")


def test_apps_pass_a_policy_only_where_allowed() -> None:
    app = Identity(oid="sp", tid=TENANT, roles=("Reader",), idtyp="app")
    assert not Policy().decide(app).allowed  # no rule still means "users", never apps
    refusal = Policy(roles=frozenset({"Reader"})).decide(app)
    assert (refusal.allowed, refusal.reason) == (False, "app-only tokens (no user) are not "
                                                        "allowed here")
    assert Policy.from_config(AccessPolicyConfig(allow_apps=True)).decide(app).allowed
    assert not Policy(roles=frozenset({"Admin"}), allow_apps=True).decide(app).allowed
    assert Policy().decide(replace(app, idtyp="user")).allowed


def test_identity_keeps_overage_markers() -> None:
    claims = {**v2_claims(), "_claim_names": {"groups": "src1"},
              "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/x"}}}
    del claims["groups"]
    mapped = identity_claims(claims)
    assert mapped["_claim_names"] == {"groups": "src1"} and "groups" not in mapped


# --- the v1 document (oidc/v1.py) ---------------------------------------------------------------

V1_DOC = {"issuer": V1_GLOBAL, "jwks_uri": f"{HOST}/common/discovery/keys"}


@pytest.mark.parametrize("azure,doc,problem", [
    (AZURE_MULTI, V1_DOC, None),
    (AZURE_SINGLE, {**V1_DOC, "issuer": f"https://sts.windows.net/{TENANT}/"}, None),
    (replace(AZURE_MULTI, cloud_instance="https://login.chinacloudapi.cn/"),
     {"issuer": "https://sts.chinacloudapi.cn/{tenantid}/",
      "jwks_uri": "https://login.chinacloudapi.cn/common/discovery/keys"}, None),
    (AZURE_MULTI, {"issuer": V1_GLOBAL}, "lacks"),
    (AZURE_MULTI, [], "lacks"),
    (AZURE_MULTI, {**V1_DOC, "issuer": "https://sts.windows.net/contoso.com/"}, "not https"),
    (AZURE_MULTI, {**V1_DOC, "issuer": f"http://sts.windows.net/{TENANT}/"}, "not https"),
    (AZURE_MULTI, {**V1_DOC, "issuer": f"https://sts.windows.net/{TENANT}/x/"}, "not https"),
    (AZURE_SINGLE, {**V1_DOC, "issuer": f"https://sts.windows.net/{OTHER_TENANT}/"},
     "another tenant"),
    (AZURE_MULTI, {**V1_DOC, "jwks_uri": "https://keys.example.com/common/discovery/keys"},
     "jwks_uri"),
])
def test_the_v1_document_must_be_the_clouds(azure: AzureConfig, doc: Any,
                                            problem: str | None) -> None:
    if problem is None:
        assert parse_v1_metadata(azure, doc).issuer == doc["issuer"]
        return
    with pytest.raises(IdPFailure, match=problem):
        parse_v1_metadata(azure, doc)
