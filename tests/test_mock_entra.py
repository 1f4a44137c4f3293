"""The mock Entra ID over real sockets: discovery, JWKS, code flow, faults, Graph, logout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_aiohttp import AiohttpClient
from yarl import URL

from proxy.mock_entra import (
    CONSUMERS_TENANT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_TENANT_ID,
    DELETE,
    OTHER_TENANT_ID,
    MockClient,
    MockEntra,
    MockUser,
    create_app,
    run_mock,
)
from proxy.mock_entra.keys import SigningKey, b64url, thumbprint_sha1, thumbprint_sha256
from proxy.mock_entra.redirects import redirect_uri_matches
from tests.conftest import EntraTestClient

Client = EntraTestClient  # the conftest's `client` fixture: the mock's app in process

CID = DEFAULT_CLIENT_ID
SECRET = "mock-secret"
REDIRECT = "http://127.0.0.1/callback/azuread"
SCOPE = "openid profile email offline_access User.Read"
ALICE = "alice@contoso.example"
DAVE = "dave@contoso.example"


def base_of(client: Client) -> str:
    return str(client.make_url("/")).rstrip("/")


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def authorize_params(challenge: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": CID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


async def get_code(
    client: Client,
    mock: MockEntra,
    *,
    user: str = ALICE,
    tenant: str = DEFAULT_TENANT_ID,
    **overrides: str | None,
) -> tuple[str, str]:
    """Sign `user` in through the auto_user path; returns (code, PKCE verifier)."""
    mock.auto_user = user
    verifier, challenge = pkce()
    resp = await client.get(
        f"/{tenant}/oauth2/v2.0/authorize",
        params=authorize_params(challenge, **overrides),
        allow_redirects=False,
    )
    assert resp.status == 302, await resp.text()
    return URL(resp.headers["Location"]).query["code"], verifier


async def redeem(
    client: Client,
    code: str,
    verifier: str,
    *,
    tenant: str = DEFAULT_TENANT_ID,
    **extra: str | None,
) -> aiohttp.ClientResponse:
    """A token request; an `extra` value of None drops that field."""
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "client_id": CID,
        "client_secret": SECRET,
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    form.update(extra)
    data = {name: value for name, value in form.items() if value is not None}
    return await client.post(f"/{tenant}/oauth2/v2.0/token", data=data)


async def tokens_for(client: Client, mock: MockEntra, **kwargs: str) -> dict[str, Any]:
    code, verifier = await get_code(client, mock, **kwargs)
    resp = await redeem(client, code, verifier, tenant=kwargs.get("tenant", DEFAULT_TENANT_ID))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def get_json(client: Client, path: str, status: int = 200, **kw: Any) -> Any:
    resp = await client.get(path, **kw)
    assert resp.status == status, await resp.text()
    return await resp.json()


def verify(token: str, jwks: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """What a relying party does: pick the JWKS key by kid, check RS256 and aud."""
    kid = jwt.get_unverified_header(token).get("kid")
    key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=kwargs.pop("audience", CID), **kwargs
    )
    return claims


def assert_token_error(body: dict[str, Any], error: str, code: int) -> None:
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "\r\nTrace ID: " in body["error_description"]
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= body.keys()


# --- discovery and JWKS -------------------------------------------------------------------


async def test_organizations_discovery_has_template_issuer_and_entra_shape(client: Client) -> None:
    base = base_of(client)
    resp = await client.get("/organizations/v2.0/.well-known/openid-configuration")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "max-age=86400, private"
    doc = await resp.json()
    assert next(iter(doc)) == "token_endpoint"
    assert doc["issuer"] == f"{base}/{{tenantid}}/v2.0"
    assert doc["authorization_endpoint"] == f"{base}/organizations/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{base}/organizations/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{base}/organizations/discovery/v2.0/keys"
    assert doc["end_session_endpoint"] == f"{base}/organizations/oauth2/v2.0/logout"
    assert doc["userinfo_endpoint"] == f"{base}/oidc/userinfo"
    assert doc["msgraph_host"] == URL(base).raw_authority
    assert doc["cloud_instance_name"] == "mock.local"
    assert doc["frontchannel_logout_supported"] is True
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "code_challenge_methods_supported" not in doc
    assert "kerberos_endpoint" not in doc


@pytest.mark.parametrize(
    ("segment", "issuer_tid", "endpoint_segment"),
    [
        ("common", "{tenantid}", "common"),
        ("consumers", CONSUMERS_TENANT_ID, "consumers"),
        (DEFAULT_TENANT_ID, DEFAULT_TENANT_ID, DEFAULT_TENANT_ID),
        ("contoso.example", DEFAULT_TENANT_ID, DEFAULT_TENANT_ID),
        (OTHER_TENANT_ID, OTHER_TENANT_ID, OTHER_TENANT_ID),
    ],
)
async def test_discovery_issuer_per_tenant_kind(
    client: Client, segment: str, issuer_tid: str, endpoint_segment: str
) -> None:
    base = base_of(client)
    doc = await get_json(client, f"/{segment}/v2.0/.well-known/openid-configuration")
    assert doc["issuer"] == f"{base}/{issuer_tid}/v2.0"
    assert doc["token_endpoint"] == f"{base}/{endpoint_segment}/oauth2/v2.0/token"


@pytest.mark.parametrize("segment", ["nope", "33333333-3333-4333-8333-333333333333", "x.example"])
async def test_unknown_tenant_is_400_aadsts90002(client: Client, segment: str) -> None:
    body = await get_json(client, f"/{segment}/v2.0/.well-known/openid-configuration", 400)
    assert_token_error(body, "invalid_tenant", 90002)
    await get_json(client, f"/{segment}/discovery/v2.0/keys", 400)


async def test_jwks_keys_have_entra_format(client: Client) -> None:
    base = base_of(client)
    jwks = await get_json(client, "/organizations/discovery/v2.0/keys")
    [key] = jwks["keys"]
    assert set(key) == {
        "kty",
        "use",
        "kid",
        "x5t",
        "n",
        "e",
        "x5c",
        "cloud_instance_name",
        "issuer",
    }
    cert = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    assert key["kid"] == key["x5t"] == b64url(cert.fingerprint(hashes.SHA1()))
    assert (key["kty"], key["use"], key["e"]) == ("RSA", "sig", "AQAB")
    cert_key = cert.public_key()
    assert isinstance(cert_key, rsa.RSAPublicKey)
    assert jwt.PyJWK.from_dict(key).key.public_numbers() == cert_key.public_numbers()
    assert key["issuer"] == f"{base}/{{tenantid}}/v2.0"
    assert key["cloud_instance_name"] == "mock.local"
    tenant_jwks = await get_json(client, f"/{DEFAULT_TENANT_ID}/discovery/v2.0/keys")
    assert tenant_jwks["keys"][0]["issuer"] == f"{base}/{DEFAULT_TENANT_ID}/v2.0"


async def test_discovery_and_jwks_faults(client: Client, mock: MockEntra) -> None:
    mock.faults.discovery_issuer = "https://evil.example/v2.0"
    doc = await get_json(client, "/organizations/v2.0/.well-known/openid-configuration")
    assert doc["issuer"] == "https://evil.example/v2.0"
    mock.faults.jwks_without_kid = True
    [key] = (await get_json(client, "/organizations/discovery/v2.0/keys"))["keys"]
    assert "kid" not in key and "x5t" not in key
    mock.faults.jwks_status = 503
    await get_json(client, "/organizations/discovery/v2.0/keys", 503)
    mock.faults.discovery_status = 500
    await get_json(client, "/organizations/v2.0/.well-known/openid-configuration", 500)


# --- authorization code flow --------------------------------------------------------------


async def test_code_flow_with_pkce_issues_verifiable_id_token(
    client: Client, mock: MockEntra
) -> None:
    mock.auto_user = ALICE
    verifier, challenge = pkce()
    resp = await client.get(
        f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize",
        params=authorize_params(challenge),
        allow_redirects=False,
    )
    assert resp.status == 302
    location = URL(resp.headers["Location"])
    assert str(location.with_query(None)) == REDIRECT
    assert list(location.query) == ["code", "state", "session_state"]
    assert location.query["state"] == "state-1"
    resp = await redeem(client, location.query["code"], verifier)
    assert resp.status == 200
    body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert {"access_token", "refresh_token", "id_token", "ext_expires_in", "scope"} <= body.keys()
    assert mock.issued == [body]
    assert mock.token_requests[-1]["client_secret"] == "********"

    header = jwt.get_unverified_header(body["id_token"])
    assert header == {"typ": "JWT", "alg": "RS256", "kid": header["kid"]}
    issuer = f"{base_of(client)}/{DEFAULT_TENANT_ID}/v2.0"
    claims = verify(body["id_token"], await get_json(client, "/common/discovery/v2.0/keys"))
    alice = mock.users[ALICE]
    assert claims["iss"] == issuer and claims["aud"] == CID
    assert (claims["oid"], claims["tid"]) == (alice.oid, alice.tid)
    assert claims["nonce"] == "nonce-1"
    assert claims["preferred_username"] == ALICE and claims["name"] == alice.name
    assert claims["email"] == ALICE and claims["roles"] == ["Admin"]
    assert claims["groups"] == alice.groups and claims["ver"] == "2.0"
    assert len(claims["sub"]) == 43 and claims["exp"] - claims["iat"] == 3600
    assert mock.sessions[claims["sid"]] == ALICE
    assert {"aio", "rh", "uti", "nbf"} <= claims.keys()


async def test_wrong_verifier_and_reused_code_are_invalid_grant(
    client: Client, mock: MockEntra
) -> None:
    code, _ = await get_code(client, mock)
    resp = await redeem(client, code, "x" * 50)
    assert resp.status == 400
    assert_token_error(await resp.json(), "invalid_grant", 501481)

    code, verifier = await get_code(client, mock)
    assert (await redeem(client, code, verifier)).status == 200
    resp = await redeem(client, code, verifier)
    assert resp.status == 400
    assert_token_error(await resp.json(), "invalid_grant", 54005)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"tenant": "organizations"}, 700005),
        ({"redirect_uri": "http://localhost/callback/azuread"}, 500112),
        ({"code_verifier": ""}, 501481),
    ],
)
async def test_code_is_bound_to_tenant_redirect_and_verifier(
    client: Client, mock: MockEntra, extra: dict[str, str], code: int
) -> None:
    auth_code, verifier = await get_code(client, mock)
    extra = dict(extra)
    resp = await redeem(client, auth_code, extra.pop("code_verifier", verifier), **extra)
    assert resp.status == 400
    assert_token_error(await resp.json(), "invalid_grant", code)


async def test_code_expires_after_ten_minutes(client: Client, mock: MockEntra) -> None:
    code, verifier = await get_code(client, mock)
    mock.clock = lambda: time.time() + 601
    resp = await redeem(client, code, verifier)
    assert_token_error(await resp.json(), "invalid_grant", 70008)


async def test_code_is_bound_to_client(aiohttp_client: AiohttpClient) -> None:
    other = MockClient("other-app", "other-secret", [REDIRECT])
    mock = MockEntra(clients=[MockClient(CID, SECRET, [REDIRECT]), other])
    client = await aiohttp_client(create_app(mock))
    code, verifier = await get_code(client, mock)
    resp = await redeem(client, code, verifier, client_id="other-app", client_secret="other-secret")
    assert_token_error(await resp.json(), "invalid_grant", 70000)


@pytest.mark.parametrize(("secret", "code"), [("wrong", 7000215), ("", 7000218)])
async def test_bad_client_secret_is_401_invalid_client(
    client: Client, mock: MockEntra, secret: str, code: int
) -> None:
    auth_code, verifier = await get_code(client, mock)
    resp = await redeem(client, auth_code, verifier, client_secret=secret)
    assert resp.status == 401
    assert_token_error(await resp.json(), "invalid_client", code)


async def test_basic_auth_with_form_urlencoded_credentials(aiohttp_client: AiohttpClient) -> None:
    secret = "s3cr:t+/&=é"
    mock = MockEntra(clients=[MockClient(CID, secret, [REDIRECT])])
    client = await aiohttp_client(create_app(mock))
    code, verifier = await get_code(client, mock)
    basic = {"Authorization": aiohttp.encode_basic_auth(quote_plus(CID), quote_plus(secret))}
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    form["code_verifier"] = verifier
    resp = await client.post(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", data=form, headers=basic)
    assert resp.status == 200, await resp.text()
    assert "client_secret" not in mock.token_requests[-1]

    bad = {"Authorization": aiohttp.encode_basic_auth(CID, "nope")}
    resp = await client.post(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", data=form, headers=bad)
    assert resp.status == 401


@pytest.mark.parametrize(
    ("form", "headers", "status", "error", "code"),
    [
        ({"grant_type": None}, {}, 400, "invalid_request", 900144),
        ({"grant_type": "password"}, {}, 400, "unsupported_grant_type", 70003),
        ({"code": None}, {}, 400, "invalid_request", 900144),
        ({"code": "0.Aforged"}, {}, 400, "invalid_grant", 9002313),
        ({"client_id": "unknown-app"}, {}, 400, "unauthorized_client", 700016),
        ({"client_id": None, "client_secret": None}, {"Authorization": "Basic !!"}, 401,
         "invalid_client", 7000215),
        ({"client_secret": None}, {"Authorization": "Basic b3RoZXI6eA=="}, 400,
         "invalid_request", 90023),
        ({"grant_type": "refresh_token"}, {}, 400, "invalid_request", 900144),
        ({"grant_type": "refresh_token", "refresh_token": "1.Aforged"}, {}, 400,
         "invalid_grant", 70008),
    ],
)  # fmt: skip
async def test_token_request_errors(
    client: Client,
    mock: MockEntra,
    form: dict[str, str | None],
    headers: dict[str, str],
    status: int,
    error: str,
    code: int,
) -> None:
    auth_code, verifier = await get_code(client, mock)
    fields: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "client_id": CID,
        "client_secret": SECRET,
        "code": auth_code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    fields |= form
    data = {name: value for name, value in fields.items() if value is not None}
    resp = await client.post(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", data=data, headers=headers)
    assert resp.status == status
    assert_token_error(await resp.json(), error, code)


async def test_token_request_on_unknown_tenant(client: Client) -> None:
    resp = await client.post("/nope/oauth2/v2.0/token", data={"grant_type": "refresh_token"})
    assert resp.status == 400
    assert_token_error(await resp.json(), "invalid_tenant", 90002)


# --- the sign-in page and authorize errors -------------------------------------------------


async def test_sign_in_page_lists_tenant_users_and_post_issues_code(
    client: Client, mock: MockEntra
) -> None:
    verifier, challenge = pkce()
    hostile_state = '"><script>alert(1)</script>'
    params = authorize_params(challenge, state=hostile_state)
    resp = await client.get(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize", params=params)
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert ALICE in page and "bob@contoso.example" in page and DAVE in page
    # Carol of fabrikam is listed: she is a B2B guest of contoso. Erin is not.
    assert "carol@fabrikam.example" in page and "erin@outlook.example" not in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page

    form = params | {"user": "bob@contoso.example"}
    resp = await client.post(
        f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize", data=form, allow_redirects=False
    )
    assert resp.status == 302
    query = URL(resp.headers["Location"]).query
    assert query["state"] == hostile_state
    body = await (await redeem(client, query["code"], verifier)).json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["preferred_username"] == "bob@contoso.example"
    assert "email" not in claims and "groups" not in claims and "roles" not in claims


@pytest.mark.parametrize(
    ("segment", "shown", "hidden"),
    [
        ("organizations", "carol@fabrikam.example", "erin@outlook.example"),
        ("consumers", "erin@outlook.example", ALICE),
        ("common", "erin@outlook.example", "nobody"),
    ],
)
async def test_sign_in_page_users_follow_the_tenant_segment(
    client: Client, segment: str, shown: str, hidden: str
) -> None:
    resp = await client.get(f"/{segment}/oauth2/v2.0/authorize", params=authorize_params("c" * 43))
    page = await resp.text()
    assert shown in page and hidden not in page


async def test_user_of_another_tenant_cannot_sign_in_on_a_guid_tenant(client: Client) -> None:
    # Alice is neither a member nor a guest of fabrikam.
    form = authorize_params("c" * 43) | {"user": ALICE}
    resp = await client.post(
        f"/{OTHER_TENANT_ID}/oauth2/v2.0/authorize", data=form, allow_redirects=False
    )
    assert resp.status == 400 and "Location" not in resp.headers
    assert "AADSTS50020" in await resp.text()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"redirect_uri": "https://evil.example/callback/azuread"}, 50011),
        ({"redirect_uri": "http://127.0.0.1/callback/other"}, 50011),
        ({"redirect_uri": "https://127.0.0.1/callback/azuread"}, 50011),
        ({"client_id": "unknown-app"}, 700016),
    ],
)
async def test_unknown_app_or_redirect_mismatch_shows_page_without_redirect(
    client: Client, mock: MockEntra, overrides: dict[str, str], code: int
) -> None:
    mock.auto_user = ALICE
    resp = await client.get(
        f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize",
        params=authorize_params("c" * 43, **overrides),
        allow_redirects=False,
    )
    assert resp.status == 400 and "Location" not in resp.headers
    assert f"AADSTS{code}" in await resp.text()


@pytest.mark.parametrize(
    "redirect",
    ["http://127.0.0.1:54321/callback/azuread", "http://localhost:8080/callback/azuread"],
)
async def test_loopback_redirect_port_is_ignored(
    client: Client, mock: MockEntra, redirect: str
) -> None:
    code, verifier = await get_code(client, mock, redirect_uri=redirect)
    resp = await redeem(client, code, verifier, redirect_uri=redirect)
    assert resp.status == 200


@pytest.mark.parametrize(
    ("registered", "candidate", "matches"),
    [
        ("https://app.example", "https://app.example/", True),
        ("https://app.example/cb", "https://app.example/CB", False),
        ("https://app.example:8443/cb", "https://app.example/cb", False),
        ("http://[::1]/cb", "http://[::1]:9999/cb", True),
        ("http://127.0.0.1/cb", "http://localhost/cb", False),
        ("https://app.example/cb", "https://app.example/cb?x=1", False),
        ("https://app.example/cb", "not a url", False),
    ],
)
def test_redirect_uri_matching_rules(registered: str, candidate: str, matches: bool) -> None:
    assert redirect_uri_matches(registered, candidate) is matches


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "profile email"}, "invalid_request"),
        ({"code_challenge_method": "S512"}, "invalid_request"),
        ({"prompt": "none"}, "login_required"),
    ],
)
async def test_request_errors_are_redirected_with_state(
    client: Client, overrides: dict[str, str], error: str
) -> None:
    resp = await client.get(
        f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize",
        params=authorize_params("c" * 43, **overrides),
        allow_redirects=False,
    )
    assert resp.status == 302
    query = URL(resp.headers["Location"]).query
    assert query["error"] == error and query["state"] == "state-1"
    assert "code" not in query


async def test_authorize_error_fault_uses_entra_description_format(
    client: Client, mock: MockEntra
) -> None:
    mock.auto_user = ALICE
    mock.faults.authorize_error = ("access_denied", "AADSTS50105: The user is not assigned.")
    resp = await client.get(
        f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize",
        params=authorize_params("c" * 43),
        allow_redirects=False,
    )
    location = URL(resp.headers["Location"])
    assert list(location.query) == ["error", "error_description", "error_uri", "state"]
    assert location.query["error"] == "access_denied"
    description = location.query["error_description"]
    assert description.startswith("AADSTS50105: The user is not assigned.\r\nTrace ID: ")
    assert "\r\nCorrelation ID: " in description and "\r\nTimestamp: " in description
    assert location.query["error_uri"].endswith("/error?code=50105")


@pytest.mark.parametrize(
    ("path", "params", "user", "code"),
    [
        (f"/{DEFAULT_TENANT_ID}", {"client_id": None}, None, 900144),
        ("/nope", {}, None, 90002),
        (f"/{DEFAULT_TENANT_ID}", {}, "nobody@contoso.example", 50034),
        (f"/{DEFAULT_TENANT_ID}", {}, "erin@outlook.example", 50020),
    ],
)
async def test_authorize_errors_shown_on_the_mock_page(
    client: Client,
    mock: MockEntra,
    path: str,
    params: dict[str, str | None],
    user: str | None,
    code: int,
) -> None:
    mock.auto_user = user
    resp = await client.get(
        f"{path}/oauth2/v2.0/authorize",
        params=authorize_params("c" * 43, **params),
        allow_redirects=False,
    )
    assert resp.status == 400 and "Location" not in resp.headers
    assert f"AADSTS{code}" in await resp.text()


async def test_missing_response_type_is_redirected(client: Client) -> None:
    resp = await client.get(
        f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize",
        params=authorize_params("c" * 43, response_type=None),
        allow_redirects=False,
    )
    query = URL(resp.headers["Location"]).query
    assert query["error"] == "invalid_request" and "AADSTS900144" in query["error_description"]


@pytest.mark.parametrize("mode", ["fragment", "form_post"])
async def test_response_modes(client: Client, mock: MockEntra, mode: str) -> None:
    mock.auto_user = ALICE
    resp = await client.get(
        f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize",
        params=authorize_params("c" * 43, response_mode=mode),
        allow_redirects=False,
    )
    if mode == "fragment":
        fragment = URL(resp.headers["Location"]).fragment
        assert fragment.startswith("code=") and "state=state-1" in fragment
    else:
        page = await resp.text()
        assert resp.status == 200 and f'action="{REDIRECT}"' in page and 'name="code"' in page


# --- signing faults and key rotation ------------------------------------------------------


@pytest.mark.parametrize("mode", ["rs256", "none", "bad_signature", "hs256_pubkey", "other_key"])
async def test_sign_faults_produce_what_they_say(
    client: Client, mock: MockEntra, mode: str
) -> None:
    mock.faults.sign = mode
    id_token = (await tokens_for(client, mock))["id_token"]
    jwks = await get_json(client, f"/{DEFAULT_TENANT_ID}/discovery/v2.0/keys")
    header = jwt.get_unverified_header(id_token)
    signing_input, _, signature = id_token.rpartition(".")
    if mode == "rs256":
        assert verify(id_token, jwks)["preferred_username"] == ALICE
        return
    if mode == "none":
        assert header["alg"] == "none" and signature == ""
    elif mode == "hs256_pubkey":
        assert header["alg"] == "HS256"
        public_key = jwt.PyJWK.from_dict(jwks["keys"][0]).key
        pem = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        assert signature == b64url(expected)
    else:
        assert header["alg"] == "RS256" and header["kid"] == jwks["keys"][0]["kid"]
    with pytest.raises(jwt.InvalidTokenError):
        verify(id_token, jwks)


async def test_claim_and_header_overrides_with_delete(client: Client, mock: MockEntra) -> None:
    mock.faults.id_token_claims = {"sub": DELETE, "aud": "someone-else", "nonce": "012345678"}
    mock.faults.id_token_header = {"kid": DELETE}
    id_token = (await tokens_for(client, mock))["id_token"]
    assert "kid" not in jwt.get_unverified_header(id_token)
    claims = jwt.decode(id_token, options={"verify_signature": False})
    assert "sub" not in claims
    assert (claims["aud"], claims["nonce"]) == ("someone-else", "012345678")


async def test_key_rotation_signs_with_new_key_and_drops_the_oldest(
    client: Client, mock: MockEntra
) -> None:
    jwks_path = "/organizations/discovery/v2.0/keys"
    first = jwt.get_unverified_header((await tokens_for(client, mock))["id_token"])["kid"]
    mock.rotate_keys()
    token = (await tokens_for(client, mock))["id_token"]
    second = jwt.get_unverified_header(token)["kid"]
    jwks = await get_json(client, jwks_path)
    assert second != first and [k["kid"] for k in jwks["keys"]] == [first, second]
    assert verify(token, jwks)["tid"] == DEFAULT_TENANT_ID
    mock.rotate_keys()
    kids = [k["kid"] for k in (await get_json(client, jwks_path))["keys"]]
    assert first not in kids and second in kids and len(kids) == 2


async def test_access_token_as_id_token_fault(client: Client, mock: MockEntra) -> None:
    mock.faults.access_token_as_id_token = True
    body = await tokens_for(client, mock)
    assert body["id_token"] == body["access_token"]
    assert "nonce" in jwt.get_unverified_header(body["access_token"])


async def test_token_error_and_delay_faults(client: Client, mock: MockEntra) -> None:
    code, verifier = await get_code(client, mock)
    mock.faults.token_error = (503, {"error": "temporarily_unavailable"})
    mock.faults.token_delay = 0.2
    started = time.monotonic()
    resp = await redeem(client, code, verifier)
    assert time.monotonic() - started >= 0.2
    assert resp.status == 503 and await resp.json() == {"error": "temporarily_unavailable"}


# --- groups overage and Graph ---------------------------------------------------------------


async def test_overage_user_gets_claim_sources_and_graph_returns_all_groups(
    client: Client, mock: MockEntra
) -> None:
    body = await tokens_for(client, mock, user=DAVE)
    dave = mock.users[DAVE]
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert "groups" not in claims and claims["_claim_names"] == {"groups": "src1"}
    endpoint = f"https://graph.windows.net/{dave.tid}/users/{dave.oid}/getMemberObjects"
    assert claims["_claim_sources"] == {"src1": {"endpoint": endpoint}}
    bearer = {"Authorization": f"Bearer {body['access_token']}"}

    resp = await client.post(
        "/v1.0/me/getMemberObjects", json={"securityEnabledOnly": False}, headers=bearer
    )
    assert resp.status == 200
    assert (await resp.json())["value"] == dave.groups and len(dave.groups) == 250

    for path in ("/v1.0/me/transitiveMemberOf", "/v1.0/me/memberOf"):
        assert await _all_pages(client, path, bearer) == dave.groups


async def _all_pages(client: Client, path: str, headers: dict[str, str]) -> list[str]:
    ids: list[str] = []
    url: str | None = str(client.make_url(path).with_query({"$select": "id", "$top": "100"}))
    pages = 0
    while url:
        assert url.startswith(base_of(client) + "/v1.0/")
        page = await get_json(client, str(URL(url).relative()), headers=headers)
        ids += [item["id"] for item in page["value"]]
        url = page.get("@odata.nextLink")
        pages += 1
    assert pages == 3
    return ids


async def test_graph_me_and_userinfo(client: Client, mock: MockEntra) -> None:
    body = await tokens_for(client, mock)
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    me = await get_json(client, "/v1.0/me", headers=bearer)
    alice = mock.users[ALICE]
    assert (me["id"], me["mail"], me["userPrincipalName"]) == (alice.oid, alice.email, ALICE)
    info = await get_json(client, "/oidc/userinfo", headers=bearer)
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert info["sub"] == id_claims["sub"] and info["email"] == ALICE
    mock.faults.userinfo_claims = {"sub": "someone-else", "email": DELETE}
    info = await get_json(client, "/oidc/userinfo", headers=bearer)
    assert info["sub"] == "someone-else" and "email" not in info


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not-a-jwt", "Basic abc"])
async def test_graph_refuses_missing_or_invalid_bearer(
    client: Client, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    body = await get_json(client, "/v1.0/me", 401, headers=headers)
    assert body["error"]["code"] == "InvalidAuthenticationToken"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1.0/me/getMemberObjects", "not json"),
        ("POST", "/v1.0/me/getMemberObjects", "[]"),
        ("POST", "/v1.0/me/getMemberObjects", "{}"),
        ("GET", "/v1.0/me/transitiveMemberOf?$top=0", ""),
        ("GET", "/v1.0/me/transitiveMemberOf?$top=many", ""),
        ("GET", "/v1.0/me/transitiveMemberOf?$skiptoken=Zm9vOjE=", ""),
        ("GET", "/v1.0/me/memberOf?$skiptoken=***", ""),
    ],
)
async def test_graph_rejects_bad_input(
    client: Client, mock: MockEntra, method: str, path: str, body: str
) -> None:
    token = (await tokens_for(client, mock, user=DAVE))["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    resp = await client.request(method, path, data=body, headers=headers)
    assert resp.status == 400
    assert "code" in (await resp.json())["error"]


async def test_graph_refuses_token_signed_by_another_key_and_status_fault(
    client: Client, mock: MockEntra
) -> None:
    token = (await tokens_for(client, mock))["access_token"]
    header, claims = (
        jwt.get_unverified_header(token),
        jwt.decode(token, options={"verify_signature": False}),
    )
    forged = jwt.encode(claims, SigningKey.generate().private_key, "RS256", headers=header)
    await get_json(client, "/v1.0/me", 401, headers={"Authorization": f"Bearer {forged}"})
    mock.faults.graph_status = 503
    await get_json(client, "/v1.0/me", 503, headers={"Authorization": f"Bearer {token}"})


# --- refresh tokens -------------------------------------------------------------------------


async def test_refresh_rotates_token_and_keeps_subject(client: Client, mock: MockEntra) -> None:
    first = await tokens_for(client, mock)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": CID,
        "client_secret": SECRET,
        "scope": "openid profile offline_access User.Read",
    }
    resp = await client.post(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", data=form)
    assert resp.status == 200, await resp.text()
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    jwks = await get_json(client, "/common/discovery/v2.0/keys")
    old, new = verify(first["id_token"], jwks), verify(second["id_token"], jwks)
    assert (new["sub"], new["oid"], new["tid"]) == (old["sub"], old["oid"], old["tid"])
    assert "nonce" not in new

    mock.revoke_refresh_tokens(ALICE)
    form["refresh_token"] = second["refresh_token"]
    resp = await client.post(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", data=form)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


async def test_no_refresh_token_without_offline_access(client: Client, mock: MockEntra) -> None:
    body = await tokens_for(client, mock, scope="openid profile")
    assert "refresh_token" not in body and "id_token" in body


async def test_client_info_when_requested(client: Client, mock: MockEntra) -> None:
    code, verifier = await get_code(client, mock)
    body = await (await redeem(client, code, verifier, client_info="1")).json()
    padded = body["client_info"] + "=" * (-len(body["client_info"]) % 4)
    info = json.loads(base64.urlsafe_b64decode(padded))
    assert info == {"uid": mock.users[ALICE].oid, "utid": DEFAULT_TENANT_ID}


# --- certificate client assertions ----------------------------------------------------------


def _assertion(
    signer: SigningKey,
    audience: str,
    *,
    alg: str = "PS256",
    sha1: bool = False,
    certificate_of: SigningKey | None = None,
    issuer: str = CID,
) -> str:
    """A client assertion as MSAL builds it (ENTRA.md §5)."""
    now = int(time.time())
    claims: dict[str, Any] = {"aud": audience, "iss": issuer, "sub": CID, "jti": "j-1"}
    claims |= {"iat": now, "nbf": now, "exp": now + 600}
    certificate = (certificate_of or signer).certificate
    header = (
        {"x5t": thumbprint_sha1(certificate)}
        if sha1
        else {"x5t#S256": thumbprint_sha256(certificate)}
    )
    return jwt.encode(claims, signer.private_key, algorithm=alg, headers=header)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("ps256_x5t_s256", 200),
        ("rs256_x5t_sha1", 200),
        ("wrong_audience", 401),
        ("unknown_certificate", 401),
        ("signed_by_another_key", 401),
        ("issuer_is_not_the_client", 401),
        ("hs256", 401),
    ],
)
async def test_certificate_client_assertion(
    aiohttp_client: AiohttpClient, case: str, status: int
) -> None:
    app_key, stranger = SigningKey.generate("app credential"), SigningKey.generate("stranger")
    pem = app_key.certificate.public_bytes(serialization.Encoding.PEM).decode()
    mock = MockEntra(clients=[MockClient(CID, "unused-secret", [REDIRECT], certificate_pem=pem)])
    client = await aiohttp_client(create_app(mock))
    token_url = f"{base_of(client)}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token"
    assertion = {
        "ps256_x5t_s256": lambda: _assertion(app_key, token_url),
        "rs256_x5t_sha1": lambda: _assertion(app_key, token_url, alg="RS256", sha1=True),
        "wrong_audience": lambda: _assertion(app_key, "https://elsewhere.example/token"),
        "unknown_certificate": lambda: _assertion(stranger, token_url),
        "signed_by_another_key": lambda: _assertion(stranger, token_url, certificate_of=app_key),
        "issuer_is_not_the_client": lambda: _assertion(app_key, token_url, issuer="someone"),
        "hs256": lambda: jwt.encode(
            {"aud": token_url, "iss": CID, "sub": CID, "exp": int(time.time()) + 600},
            secrets.token_bytes(64),
            algorithm="HS256",
        ),
    }[case]()
    code, verifier = await get_code(client, mock)
    resp = await redeem(
        client,
        code,
        verifier,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
        client_secret=None,
    )
    assert resp.status == status, await resp.text()
    if status == 401:
        assert (await resp.json())["error"] == "invalid_client"


# --- logout, index, run_mock -----------------------------------------------------------------


async def test_logout_redirects_to_registered_origin_and_ends_session(
    client: Client, mock: MockEntra
) -> None:
    id_token = (await tokens_for(client, mock))["id_token"]
    sid = jwt.decode(id_token, options={"verify_signature": False})["sid"]
    target = "http://127.0.0.1:4180/signed-out"
    resp = await client.get(
        "/organizations/oauth2/v2.0/logout",
        params={"post_logout_redirect_uri": target, "id_token_hint": id_token},
        allow_redirects=False,
    )
    assert resp.status == 302 and resp.headers["Location"] == target
    assert sid not in mock.sessions
    assert mock.logouts[-1]["sid"] == sid and mock.logouts[-1]["redirected"] == "true"

    resp = await client.get(
        "/organizations/oauth2/v2.0/logout",
        params={"post_logout_redirect_uri": "https://evil.example/"},
        allow_redirects=False,
    )
    assert resp.status == 200 and "You signed out" in await resp.text()
    assert mock.logouts[-1]["redirected"] == "false"


async def test_index_lists_tenants_and_users(client: Client) -> None:
    resp = await client.get("/")
    page = await resp.text()
    assert resp.status == 200 and ALICE in page and DEFAULT_TENANT_ID in page


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "::", "example.com"])
async def test_run_mock_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await run_mock(MockEntra(users=[]), host=host, port=0)


async def test_run_mock_serves_on_loopback() -> None:
    mock = MockEntra(users=[MockUser("u@x.example", "U", "oid-1", DEFAULT_TENANT_ID)])
    runner = await run_mock(mock, host="127.0.0.1", port=0)
    try:
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/{DEFAULT_TENANT_ID}/v2.0/.well-known/openid-configuration"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            doc = await resp.json()
        assert doc["issuer"] == f"http://{host}:{port}/{DEFAULT_TENANT_ID}/v2.0"
    finally:
        await runner.cleanup()
