"""The AADSTS table (proxy/oidc/aadsts.py): codes read from Entra's texts, fixes filled in
from our configuration only."""

from __future__ import annotations

import pytest

from proxy.config_load import from_dict
from proxy.oidc import aadsts

CONFIG = from_dict({
    "server": {"public_url": "https://tools.example.com"},
    "azure": {"client_id": "11111111-2222-3333-4444-555555555555", "client_secret": "s",
              "tenant_id": "contoso.example"},
    "session": {"secret": "x" * 32}, "upstreams": [{"url": "http://127.0.0.1:9"}],
})

# The codes issue 14 names, each with a fix.
SETUP_CODES = [50011, 700016, 7000215, 7000222, 50020, 65001, 50105, 53003, 90002,
               700211, 700212, 700213, 700024]


@pytest.mark.parametrize("code", SETUP_CODES)
def test_every_setup_code_has_a_one_line_fix(code: int) -> None:
    found = aadsts.hint(code, CONFIG)
    assert found is not None and found.code == code
    assert "\n" not in found.admin and "{" not in found.admin
    page = aadsts.page_text(found)
    assert page and "\n" not in page
    said = found.admin if found.config else found.user
    assert page.lower() == said.lower() + "."


def test_redirect_uri_hint_names_the_uri_the_proxy_sends() -> None:
    found = aadsts.hint(50011, CONFIG)
    assert found is not None and found.config
    assert "register https://tools.example.com/callback/azuread as a Web redirect URI" in (
        found.admin)


@pytest.mark.parametrize("code", [50020, 50105, 53003])
def test_user_problems_show_the_user_a_sentence_not_the_admins_fix(code: int) -> None:
    found = aadsts.hint(code, CONFIG)
    assert found is not None and not found.config
    assert aadsts.page_text(found) != "" and found.admin not in aadsts.page_text(found)


@pytest.mark.parametrize(("text", "code"), [
    ("AADSTS50105: The signed in user is not assigned.\r\nTrace ID: x", 50105),
    ("  AADSTS7000215: Invalid client secret provided.", 7000215),
    ("Error AADSTS50105: not at the start", None),
    ("AADSTS50105x: glued", None),
    ("AADSTS123: too short", None),
    ("", None),
])
def test_code_in_reads_only_a_leading_code(text: str, code: int | None) -> None:
    assert aadsts.code_in(text) == code


def test_code_of_a_token_error_prefers_error_codes() -> None:
    assert aadsts.code_of({"error_codes": [7000222], "error_description": "AADSTS1: x"}) == 7000222
    assert aadsts.code_of({"error_description": "AADSTS90002: Tenant not found."}) == 90002
    assert aadsts.code_of({"error_codes": ["7000215"]}) is None
    assert aadsts.code_of(["AADSTS50011"]) is None


def test_unknown_codes_give_no_hint_and_no_page_text() -> None:
    assert aadsts.hint(12345, CONFIG) is None and aadsts.hint(None, CONFIG) is None
    assert aadsts.page_text(None) == ""


def test_first_line_drops_entras_trailer() -> None:
    assert aadsts.first_line("AADSTS1234: a\r\nTrace ID: t\r\nCorrelation ID: c") == (
        "AADSTS1234: a")
    assert len(aadsts.first_line("x" * 1000)) == 200
