"""The authorization request URL, checked against authlib's prepare_grant_uri as the oracle."""

from __future__ import annotations

import dataclasses
import time
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from hypothesis import given
from hypothesis import strategies as st

from proxy.config_load import from_dict
from proxy.oidc.client import EntraClient, _query_value
from proxy.oidc.discovery import Metadata
from proxy.session.login_state import LoginState

ENDPOINTS = ["https://login.microsoftonline.com/contoso.example/oauth2/v2.0/authorize",
             "https://login.example/authorize?p=b2c_1_signin"]


def client(endpoint: str, **azure: str) -> EntraClient:
    config = from_dict({"server": {"public_url": "https://proxy.example"},
                        "azure": {"client_id": "00000000-0000-4000-8000-0000000000c1",
                                  "client_secret": "s",
                                  "tenant_id": "contoso.example", **azure},
                        "session": {"secret": "x" * 40},
                        "upstreams": [{"url": "http://127.0.0.1:1"}]}, {})
    # Never used: the metadata below is what discovery would have returned.
    entra = EntraClient(config, cast(aiohttp.ClientSession, None))
    entra._metadata = (time.monotonic(), Metadata(
        issuer="https://login.microsoftonline.com/t/v2.0", authorization_endpoint=endpoint,
        token_endpoint="", jwks_uri="", end_session_endpoint="", cloud_instance_name="",
        msgraph_host="graph.microsoft.com"))
    return entra


def oracle(entra: EntraClient, endpoint: str, login: LoginState, **extra: str) -> str:
    url: str = prepare_grant_uri(
        endpoint, entra.azure.client_id, "code", redirect_uri=entra.config.redirect_uri,
        scope=" ".join(entra.azure.scopes), state=login.state, response_mode="query",
        nonce=login.nonce, code_challenge=create_s256_code_challenge(login.verifier),
        code_challenge_method="S256", **extra)
    return url


def parts(url: str) -> tuple[str, list[tuple[str, str]]]:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}{split.path}", parse_qsl(split.query)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("azure,extra", [
    ({}, {}),
    ({"prompt": "select_account"}, {"prompt": "select_account"}),
    ({"domain_hint": "contoso.example"}, {"domain_hint": "contoso.example"}),
    # a value that must be escaped ('&' and '=' would otherwise add parameters)
    ({"domain_hint": "a b&state=evil=é/~"}, {"domain_hint": "a b&state=evil=é/~"}),
])
async def test_same_parameters_as_authlib(endpoint: str, azure: dict[str, str],
                                          extra: dict[str, str]) -> None:
    entra = client(endpoint, **azure)
    for _ in range(2):  # the second one comes from the cached fixed part
        login = LoginState.new("/a?b=c&d=é")
        ours = await entra.authorize_url(login)
        assert parts(ours) == parts(oracle(entra, endpoint, login, **extra))


async def test_a_prompt_for_this_sign_in_wins(endpoint: str = ENDPOINTS[0]) -> None:
    entra = client(endpoint, prompt="select_account")
    login = LoginState.new("/")
    ours = dict(parts(await entra.authorize_url(login, prompt="login"))[1])
    assert ours["prompt"] == "login"


async def test_a_new_endpoint_from_discovery_is_used(endpoint: str = ENDPOINTS[0]) -> None:
    entra = client(endpoint)
    assert (await entra.authorize_url(LoginState.new("/"))).startswith(endpoint + "?")
    moved = "https://login.microsoftonline.us/contoso.example/oauth2/v2.0/authorize"
    assert entra._metadata is not None
    stamp, metadata = entra._metadata
    entra._metadata = (stamp, dataclasses.replace(metadata, authorization_endpoint=moved))
    assert (await entra.authorize_url(LoginState.new("/"))).startswith(moved + "?")


@given(st.text(max_size=40))
def test_query_values_are_encoded_exactly_as_urlencode_does(value: str) -> None:
    assert _query_value(value) == urlencode({"k": value})[2:]
