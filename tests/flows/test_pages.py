"""The proxy's own pages: themable, accessible, escaped; JSON for API clients."""

from __future__ import annotations

from proxy.mock_entra import DEFAULT_TENANT_ID
from tests.conftest import HTML, StackFactory


async def test_ui_theme_and_sign_in_interstitial(make_stack: StackFactory) -> None:
    stack = await make_stack({"ui": {
        "title": "Contoso <Tools>", "logo_url": "https://cdn.example/logo.png",
        "footer": "Help: <it@contoso.example>", "skip_provider_button": False}})
    async with stack.client.get(stack.url + "/reports?q=1", headers=HTML,
                                allow_redirects=False) as resp:
        assert resp.status == 401
        page = await resp.text()
    assert '<html lang="en">' in page and "<main>" in page and "<h1>Sign in</h1>" in page
    assert "Contoso &lt;Tools&gt;" in page and "<Tools>" not in page
    assert "Help: &lt;it@contoso.example&gt;" in page
    assert 'src="https://cdn.example/logo.png"' in page
    assert 'href="/oauth2/start?rd=%2Freports%3Fq%3D1"' in page
    stack.mock.auto_user = "alice@contoso.example"
    async with stack.client.get(stack.url + "/oauth2/start?rd=%2Freports%3Fq%3D1") as resp:
        assert resp.status == 200 and str(resp.url).endswith("/reports?q=1")


async def test_denied_page_names_the_user_and_offers_a_way_out(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"access": {"roles": ["Auditor"]}})
    resp = await stack.login("bob@contoso.example", path="/secret")
    assert resp.status == 403
    page = await resp.text()
    assert "bob@contoso.example" in page and "Request ID" in page
    assert 'href="/oauth2/sign_out"' in page
    assert "/oauth2/start?prompt=select_account&amp;rd=%2Fsecret" in page
    async with stack.client.get(stack.url + "/oauth2/start?prompt=select_account&rd=/secret",
                                allow_redirects=False) as resp:
        assert "prompt=select_account" in resp.headers["Location"]
    async with stack.client.get(stack.url + "/oauth2/start?prompt=consent",
                                allow_redirects=False) as resp:
        assert "prompt=" not in resp.headers["Location"]  # only the account picker


async def test_a_refused_tenants_switch_account_link_returns_where_the_user_was_going(
        make_stack: StackFactory) -> None:
    """After a tenant refusal on the callback, "Switch account" must not carry the callback
    URL (its spent code lands the next account on a 400): it returns to the original page."""
    stack = await make_stack({"azure": {"tenant_id": "organizations",
                                        "allowed_tenants": [DEFAULT_TENANT_ID]}})
    resp = await stack.login("carol@fabrikam.example", path="/reports?q=1")
    assert resp.status == 403 and resp.url.path.startswith("/callback/")
    page = await resp.text()
    assert "/oauth2/start?prompt=select_account&amp;rd=%2Freports%3Fq%3D1" in page
    assert "callback" not in page.split("Switch account")[0].rsplit("href=", 1)[-1]
    # ... and following it with another account gets there.
    stack.mock.auto_user = "alice@contoso.example"
    async with stack.client.get(stack.url + "/oauth2/start?prompt=select_account&rd="
                                "%2Freports%3Fq%3D1", headers=HTML) as resp:
        assert resp.status == 200 and str(resp.url).endswith("/reports?q=1")


async def test_errors_are_pages_for_browsers_and_json_for_scripts(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"upstreams": [{"path": "/app", "url": "http://127.0.0.1:9"}]})
    async with stack.client.get(stack.url + "/nowhere", headers=HTML) as resp:
        assert resp.status == 404 and "<h1>Not found</h1>" in await resp.text()
    async with stack.client.get(stack.url + "/nowhere") as resp:
        body = await resp.json()
        assert resp.status == 404 and body["error"] == "not_found" and body["request_id"]
        assert resp.headers["X-Request-Id"] == body["request_id"]


async def test_other_hosts_sign_in_on_the_public_host_and_return(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"server": {"allowed_redirect_hosts": ["grafana.example.test"]},
                              "upstreams": [{"path": "/", "url": "http://127.0.0.1:9"},
                                            {"path": "/", "host": "grafana.example.test",
                                             "url": "http://127.0.0.1:9"}]})
    async with stack.client.get(stack.url + "/d/1?x=2", headers={
            **HTML, "Host": "grafana.example.test"}, allow_redirects=False) as resp:
        location = resp.headers["Location"]
    assert location == (stack.url + "/oauth2/start?rd="
                        "http%3A%2F%2Fgrafana.example.test%2Fd%2F1%3Fx%3D2")
    stack.mock.auto_user = "alice@contoso.example"
    async with stack.client.get(location, allow_redirects=False) as resp:
        authorize = resp.headers["Location"]
    async with stack.client.get(authorize, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    async with stack.client.get(callback, allow_redirects=False) as resp:
        assert resp.headers["Location"] == "http://grafana.example.test/d/1?x=2"


async def test_cookie_domain_must_cover_the_public_host(make_stack: StackFactory) -> None:
    import pytest

    from proxy.errors import ConfigError

    with pytest.raises(ConfigError, match="session.cookie_domain"):
        await make_stack({"session": {"cookie_domain": "example.org"}})
