"""Easy Auth compatibility: the principal header and /.auth/me against App Service's formats."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from proxy import easy_auth
from proxy.easy_auth import auth_me, principal, principal_headers, user_claims
from proxy.identity import Identity
from proxy.session.store import Tokens

# A decoded X-MS-CLIENT-PRINCIPAL captured from a real App Service (Entra ID v2 sign-in), with
# the headers that came with it. Source: github.com/JanneMattila/some-questions-and-some-answers,
# q&a/app_service_and_authentication.md ("App Service Authentication Headers"), June 2021.
DOCUMENTED_PRINCIPAL: dict[str, Any] = {
    "auth_typ": "aad",
    "claims": [
        {"typ": "aud", "val": "fe42b4d1-fed9-41f2-b923-e0508a570e89"},
        {"typ": "iss",
         "val": "https://login.microsoftonline.com/884b819a-cecd-470b-ac1b-c746cafa6d7c/v2.0"},
        {"typ": "iat", "val": "1623162657"},
        {"typ": "nbf", "val": "1623162657"},
        {"typ": "exp", "val": "1623166557"},
        {"typ": "aio", "val": "AWQAm/8TAAAAjbik0mvEvN93HX3y1kRcrmBvxCCE8wP5dDYS1/Hmjbgxq6d6YcQr0z4"
                              "NOGjvk2EYkrg8fwGnsNZXn/U8LPNImeuJ7OXnr5QJevoHGGBLqNk++CYojE71z4K69"
                              "YEJGuTX"},
        {"typ": "c_hash", "val": "g9aFiYD2j7duJWKoU5Uqpw"},
        {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
         "val": "john.doe@contoso.com"},
        {"typ": "name", "val": "John Doe"},
        {"typ": "nonce", "val": "9b6140e205694202b1e7b8f144315539_20210608144053"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
         "val": "d44dfc56-9d5a-4940-90b7-efe774408c30"},
        {"typ": "preferred_username", "val": "johndoe@contoso.com"},
        {"typ": "rh", "val": "0.ARoAv4j5cvGGr0GRqy180BHbR7yZIkRzh9pptY2C97hyC1oaALE."},
        {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
         "val": "rR6NQYg3olb7a8ym7A1PNUnOMQBY9eLwgqTtq6y2g9E"},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid",
         "val": "884b819a-cecd-470b-ac1b-c746cafa6d7c"},
        {"typ": "uti", "val": "qEX96JcvnkeKZx4HqoXqAA"},
        {"typ": "ver", "val": "2.0"},
    ],
    "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
}
DOCUMENTED_HEADERS = {
    "X-MS-CLIENT-PRINCIPAL-NAME": "john.doe@contoso.com",
    "X-MS-CLIENT-PRINCIPAL-ID": "d44dfc56-9d5a-4940-90b7-efe774408c30",
    "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    "X-MS-TOKEN-AAD-EXPIRES-ON": "2021-06-08T15:35:58.9638246Z",
}
# Claims App Service derives from the raw token (aud, iss, nonce...); a session keeps only
# the identity, so these are the documented claims the proxy does not reproduce.
TOKEN_ONLY = {"aud", "iss", "iat", "nbf", "exp", "aio", "c_hash", "nonce", "rh", "uti", "ver"}

# Multi-valued claims as App Service sends them: one {typ, val} per value.
# Groups: yaegashi, "Microsoft Entra ID と Azure App Service による..." (Speaker Deck slide 29,
# a decoded X-Ms-Client-Principal). Roles: kirkone/KK.AspNetCore.EasyAuthAuthentication PR #57.
DOCUMENTED_GROUPS = [
    {"typ": "groups", "val": "f08bbbea-b793-4a36-a5fc-136c18d8aa8f"},
    {"typ": "groups", "val": "14a87ffa-0801-49bf-a515-3d259a2a9f8f"},
]
DOCUMENTED_ROLES = [
    {"typ": "roles", "val": "Test_Reader"},
    {"typ": "roles", "val": "Test_Admin"},
    {"typ": "roles", "val": "Test_Expert"},
]

JOHN = Identity(
    oid="d44dfc56-9d5a-4940-90b7-efe774408c30",
    tid="884b819a-cecd-470b-ac1b-c746cafa6d7c",
    sub="rR6NQYg3olb7a8ym7A1PNUnOMQBY9eLwgqTtq6y2g9E",
    name="John Doe",
    preferred_username="johndoe@contoso.com",
    email="john.doe@contoso.com",
)
# 2021-06-08T15:35:58.963824Z, the documented expiry to the microsecond.
TOKENS = Tokens("at.jwt.sig", "refresh-secret", "id.jwt.sig", 1623166558.963824)


def decode(headers: list[tuple[str, str]]) -> dict[str, Any]:
    value = dict(headers)["X-MS-CLIENT-PRINCIPAL"]
    decoded: dict[str, Any] = json.loads(base64.b64decode(value, validate=True).decode("utf-8"))
    return decoded


class ClaimsIdentity:
    """What .NET builds from the header (the docs' ClaimsPrincipalParser): Name and IsInRole."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.claims = [(c["typ"], c["val"]) for c in data["claims"]]
        self.name_type, self.role_type = data["name_typ"], data["role_typ"]

    @property
    def name(self) -> str | None:
        return next((v for t, v in self.claims if t == self.name_type), None)

    def is_in_role(self, role: str) -> bool:
        return (self.role_type, role) in self.claims


def test_principal_matches_the_documented_app_service_principal_field_by_field() -> None:
    ours = decode(principal_headers(JOHN, None, with_tokens=False))
    assert ours == principal(JOHN)
    assert list(ours) == list(DOCUMENTED_PRINCIPAL)  # auth_typ, claims, name_typ, role_typ
    assert ours["auth_typ"] == DOCUMENTED_PRINCIPAL["auth_typ"]
    assert ours["name_typ"] == DOCUMENTED_PRINCIPAL["name_typ"]
    documented = [c for c in DOCUMENTED_PRINCIPAL["claims"] if c["typ"] not in TOKEN_ONLY]
    assert ours["claims"] == documented  # same typs, same values, same order
    # The one deliberate difference: App Service names a role typ that no role claim carries.
    assert DOCUMENTED_PRINCIPAL["role_typ"] != "roles" and ours["role_typ"] == "roles"


def test_plain_headers_match_the_documented_capture() -> None:
    headers = dict(principal_headers(JOHN, TOKENS, with_tokens=True))
    for name, value in DOCUMENTED_HEADERS.items():
        if name != "X-MS-TOKEN-AAD-EXPIRES-ON":
            assert headers[name] == value
    assert headers["X-MS-TOKEN-AAD-EXPIRES-ON"] == "2021-06-08T15:35:58.9638240Z"
    shape = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"
    assert re.fullmatch(shape, DOCUMENTED_HEADERS["X-MS-TOKEN-AAD-EXPIRES-ON"])


def test_header_is_standard_base64_of_compact_json() -> None:
    value = dict(principal_headers(JOHN, None, with_tokens=False))["X-MS-CLIENT-PRINCIPAL"]
    raw = base64.b64decode(value, validate=True)
    assert base64.b64encode(raw).decode() == value  # padded, standard alphabet
    assert raw.startswith(b'{"auth_typ":"aad","claims":[{"typ":')
    assert b": " not in raw and b", " not in raw


def test_groups_and_roles_become_one_claim_per_value() -> None:
    who = Identity(oid="o", tid="t", groups=tuple(g["val"] for g in DOCUMENTED_GROUPS),
                   roles=tuple(r["val"] for r in DOCUMENTED_ROLES))
    claims = user_claims(who)
    assert [c for c in claims if c["typ"] == "groups"] == DOCUMENTED_GROUPS
    assert [c for c in claims if c["typ"] == "roles"] == DOCUMENTED_ROLES


def test_role_typ_names_the_role_claims_so_is_in_role_works() -> None:
    who = Identity(oid="o", tid="t", email="a@b.c", roles=("Admin", "Reader"), groups=("Admin2",))
    identity = ClaimsIdentity(decode(principal_headers(who, None, with_tokens=False)))
    assert identity.is_in_role("Admin") and identity.is_in_role("Reader")
    assert not identity.is_in_role("Admin2") and not identity.is_in_role("admin")


@pytest.mark.parametrize(("who", "typ", "name"), [
    (JOHN, easy_auth.EMAIL_TYP, "john.doe@contoso.com"),
    (Identity(oid="o-1", tid="t", preferred_username="upn@x.test"), "preferred_username",
     "upn@x.test"),
    (Identity(oid="o-1", tid="t", name="Only A Display Name"), easy_auth.OBJECTID_TYP, "o-1"),
])
def test_name_typ_names_the_claim_in_principal_name(who: Identity, typ: str, name: str) -> None:
    headers = principal_headers(who, None, with_tokens=False)
    data = decode(headers)
    assert data["name_typ"] == typ
    assert ClaimsIdentity(data).name == name == dict(headers)["X-MS-CLIENT-PRINCIPAL-NAME"]
    assert auth_me(who, None, with_tokens=False)[0]["user_id"] == name


def test_no_email_means_no_email_claim_and_no_empty_values() -> None:
    who = Identity(oid="o", tid="t", preferred_username="u@x.test", name="", groups=("", "g"))
    claims = user_claims(who)
    assert all(c["val"] for c in claims)
    assert easy_auth.EMAIL_TYP not in {c["typ"] for c in claims}
    assert {c["typ"] for c in claims} == {
        "groups", easy_auth.OBJECTID_TYP, "preferred_username", easy_auth.TENANTID_TYP,
    }


def test_claims_are_strings_and_extra_claims_keep_their_names() -> None:
    who = Identity(oid="o", tid="t", sid="s-1", extra={"upn": "u@x.test", "acct": "0"})
    claims = user_claims(who)
    assert all(isinstance(c["typ"], str) and isinstance(c["val"], str) for c in claims)
    assert {"typ": "upn", "val": "u@x.test"} in claims
    assert "sid" not in {c["typ"] for c in claims} and "s-1" not in {c["val"] for c in claims}
    assert [c["typ"] for c in claims][:1] == ["acct"]  # name order, as Entra writes claims


def test_tokens_absent_unless_enabled_and_present() -> None:
    off = dict(principal_headers(JOHN, TOKENS, with_tokens=False))
    no_tokens = dict(principal_headers(JOHN, None, with_tokens=True))
    for headers in (off, no_tokens):
        assert not [h for h in headers if h.startswith("X-MS-TOKEN-")]
        assert set(headers) == {"X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME",
                                "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-IDP"}
    on = dict(principal_headers(JOHN, TOKENS, with_tokens=True))
    assert on["X-MS-TOKEN-AAD-ID-TOKEN"] == "id.jwt.sig"
    assert on["X-MS-TOKEN-AAD-ACCESS-TOKEN"] == "at.jwt.sig"
    assert "refresh-secret" not in json.dumps([on, auth_me(JOHN, TOKENS, with_tokens=True)])


def test_empty_or_unknown_token_parts_are_left_out() -> None:
    partial = Tokens(access_token="", refresh_token="", id_token="id.jwt", expires_at=0.0)
    headers = dict(principal_headers(JOHN, partial, with_tokens=True))
    assert headers["X-MS-TOKEN-AAD-ID-TOKEN"] == "id.jwt"
    assert "X-MS-TOKEN-AAD-ACCESS-TOKEN" not in headers
    assert "X-MS-TOKEN-AAD-EXPIRES-ON" not in headers
    assert auth_me(JOHN, partial, with_tokens=True)[0]["id_token"] == "id.jwt"
    assert "expires_on" not in auth_me(JOHN, partial, with_tokens=True)[0]


@pytest.mark.parametrize("at", [float("nan"), float("inf"), -1.0, 0.0, 1e300])
def test_unrepresentable_expiry_is_empty(at: float) -> None:
    assert easy_auth.expires_on(Tokens("a", "r", "i", at)) == ""


def test_auth_me_shape() -> None:
    # Shape of real /.auth/me answers: Azure/jpazpaas "App Service 認証の概要と仕組みについて"
    # (2023: access_token, expires_on "2023-04-27T08:52:52.5858318Z", id_token, provider_name,
    # user_claims) and a 2021 capture without an access token (id_token, provider_name,
    # user_claims, user_id).
    body = auth_me(JOHN, TOKENS, with_tokens=True)
    assert isinstance(body, list) and len(body) == 1
    assert list(body[0]) == ["access_token", "expires_on", "id_token", "provider_name",
                             "user_claims", "user_id"]
    assert body[0]["provider_name"] == "aad"
    assert body[0]["user_claims"] == principal(JOHN)["claims"]
    assert body[0]["user_id"] == "john.doe@contoso.com"
    assert body[0]["expires_on"] == "2021-06-08T15:35:58.9638240Z"
    assert json.loads(json.dumps(body)) == body
    for tokens, enabled in ((TOKENS, False), (None, True)):
        assert list(auth_me(JOHN, tokens, with_tokens=enabled)[0]) == [
            "provider_name", "user_claims", "user_id"]


HOSTILE = "Eve\r\nX-MS-CLIENT-PRINCIPAL-ID: admin\n\x00\x7f\u2028\u0085"


@pytest.mark.parametrize("who", [
    Identity(oid="o", tid="t", name=HOSTILE, email=HOSTILE, preferred_username=HOSTILE),
    Identity(oid=HOSTILE, tid=HOSTILE, sub=HOSTILE, name=HOSTILE, groups=(HOSTILE,),
             roles=(HOSTILE,), extra={"x": HOSTILE}),
])
def test_no_header_value_can_break_a_line(who: Identity) -> None:
    evil = Tokens(HOSTILE, HOSTILE, HOSTILE, 1.0e9)
    headers = principal_headers(who, evil, with_tokens=True)
    for _, value in headers:
        assert re.fullmatch(r"[\x20-\x7e]+", value)
    data = decode(headers)
    assert HOSTILE in {c["val"] for c in data["claims"]}  # the data survives, escaped
    names = [n for n, _ in headers]
    assert names.count("X-MS-CLIENT-PRINCIPAL-ID") <= 1
    assert "X-MS-TOKEN-AAD-ID-TOKEN" not in names and "X-MS-TOKEN-AAD-ACCESS-TOKEN" not in names


def test_non_ascii_names_survive_in_the_principal_and_never_in_a_plain_header() -> None:
    who = Identity(oid="o-2", tid="t", name="Jörg Müller 山田", email="jörg@exämple.de",
                   preferred_username="joerg@example.de")
    headers = principal_headers(who, None, with_tokens=False)
    for _, value in headers:
        value.encode("ascii")
    raw = base64.b64decode(dict(headers)["X-MS-CLIENT-PRINCIPAL"])
    assert raw.isascii()  # \u escapes: ASCII, UTF-8 and latin-1 decoders agree
    for codec in ("ascii", "utf-8", "latin-1"):
        data = json.loads(raw.decode(codec))
        assert {"typ": "name", "val": "Jörg Müller 山田"} in data["claims"]
        assert ClaimsIdentity(data).name == "jörg@exämple.de"
    assert dict(headers)["X-MS-CLIENT-PRINCIPAL-NAME"] == "joerg@example.de"


def test_principal_idp_and_provider() -> None:
    assert easy_auth.PROVIDER == "aad"
    headers = dict(principal_headers(Identity(oid="", tid=""), None, with_tokens=False))
    assert headers["X-MS-CLIENT-PRINCIPAL-IDP"] == "aad"
    assert "X-MS-CLIENT-PRINCIPAL-ID" not in headers
    assert "X-MS-CLIENT-PRINCIPAL-NAME" not in headers
    assert decode(list(headers.items()))["claims"] == []


def test_endpoint_names_match_app_service() -> None:
    assert (easy_auth.ME_PATH, easy_auth.LOGIN_PATH, easy_auth.LOGOUT_PATH) == (
        "/.auth/me", "/.auth/login/aad", "/.auth/logout")
    assert easy_auth.LOGIN_REDIRECT_PARAM == "post_login_redirect_uri"
    assert easy_auth.LOGOUT_REDIRECT_PARAM == "post_logout_redirect_uri"
    assert easy_auth.LOGOUT_DONE_PATH == "/.auth/logout/done"
