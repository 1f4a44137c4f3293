"""Forwarding over real sockets: headers stripped and added, cookies, streaming, WebSockets."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from itsdangerous import TimestampSigner

from proxy.mock_entra import DEFAULT_CLIENT_ID, OTHER_TENANT_ID
from proxy.session.signing import SESSION_SALT, app_salt, serializer
from tests.conftest import ALICE, HTML, Stack, StackFactory, free_port

SPOOFS = [
    ("X-Forwarded-User", "admin@evil"),
    ("x-forwarded-user", "admin2@evil"),
    ("X_Forwarded_User", "admin3@evil"),
    ("X-FORWARDED-EMAIL", "admin@evil"),
    ("X-Forwarded-Groups", "all-the-groups"),
    ("x_forwarded_groups", "all-the-groups"),
    ("X-Forwarded-Roles", "SpoofedRole"),
    ("X-Forwarded-Object-Id", "00000000-0000-0000-0000-000000000000"),
    ("X-Forwarded-Tenant-Id", "evil"),
    ("X-Forwarded-Access-Token", "stolen"),
    ("X-Forwarded-Id-Token", "stolen"),
    ("X-Auth-Assertion", "forged"),
    ("X-MS-CLIENT-PRINCIPAL", "e30="),
    ("X-MS-CLIENT-PRINCIPAL-NAME", "admin@evil"),
    ("x_ms_client_principal_id", "evil"),
    ("X-MS-TOKEN-AAD-ID-TOKEN", "forged"),
    ("X-Auth-Request-User", "admin@evil"),
    ("X-Auth-Request-Email", "admin@evil"),
]


def header_map(body: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, values in body["headers"].items():
        out.setdefault(name.lower().replace("_", "-"), []).extend(values)
    return out


async def get_json(client: aiohttp.ClientSession, url: str, **kw: Any) -> dict[str, Any]:
    async with client.get(url, **kw) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def test_spoofed_identity_headers_never_reach_upstream(stack: Stack) -> None:
    await stack.login()
    headers = [*SPOOFS, ("X-Forwarded-User", "second-copy@evil")]
    async with stack.client.get(stack.url + "/echo", headers=headers) as resp:
        body = await resp.json()
    seen = header_map(body)
    assert seen["x-forwarded-user"] == [ALICE]
    assert seen["x-forwarded-tenant-id"] == ["11111111-1111-4111-8111-111111111111"]
    assert "Admin" not in seen.get("x-forwarded-groups", [""])[0].split(",")
    for name, value in SPOOFS:
        assert value not in seen.get(name.lower().replace("_", "-"), []), name
    for name in seen:
        assert not name.startswith(("x-ms-", "x-auth-request-")), name
    assert seen["x-auth-assertion"] != ["forged"]  # the proxy's own, signed one


async def test_spoofed_headers_stripped_on_public_routes_too(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/healthz", headers=SPOOFS) as resp:
        assert resp.status == 200
        seen = header_map(await resp.json())
    for name, _ in SPOOFS:
        assert name.lower().replace("_", "-") not in seen, name


async def test_only_proxy_cookies_are_removed_upstream(stack: Stack) -> None:
    await stack.login()
    body = await get_json(stack.client, stack.url + "/c", headers={"Cookie": "app=1; theme=dark"})
    cookie = ";".join(header_map(body)["cookie"])
    assert "app=1" in cookie and "theme=dark" in cookie
    assert "azp_session" not in cookie


async def test_forwarded_headers_and_hop_by_hop(stack: Stack) -> None:
    await stack.login()
    body = await get_json(stack.client, stack.url + "/h", headers={
        "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example",
        "Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5",
        "X-Request-Id": "client-chosen", "X-Custom": "kept"})
    seen = header_map(body)
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-host"] == [stack.url.removeprefix("http://")]
    assert seen["x-forwarded-proto"] == ["http"]
    assert "x-hop" not in seen and "keep-alive" not in seen
    assert seen["x-custom"] == ["kept"]
    assert seen["x-request-id"] != ["client-chosen"]


async def test_trusted_proxy_may_append_forwarded_for(make_stack: StackFactory) -> None:
    stack = await make_stack({"server": {"trusted_proxies": ["127.0.0.0/8"]}})
    await stack.login()
    body = await get_json(stack.client, stack.url + "/h", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Request-Id": "abc-123"})
    seen = header_map(body)
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-request-id"] == ["abc-123"]


def forge(secret: str, payload: dict[str, Any], age: float = 0.0,
          app: str = DEFAULT_CLIENT_ID) -> str:
    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age)

    s = serializer([secret], app_salt(SESSION_SALT, app))
    s.signer = OldSigner
    return s.dumps(payload)


IDENTITY = {"oid": "o", "tid": "11111111-1111-4111-8111-111111111111",
            "preferred_username": "mallory@contoso.example", "groups": [], "roles": []}


@pytest.mark.parametrize("cookie", [
    "garbage", "", "a.b.c", "eyJvaWQiOiJvIn0.AAAA.BBBB", "%00%ff" * 100, "x" * 3000,
])
async def test_garbage_cookies_are_not_a_session(stack: Stack, cookie: str) -> None:
    async with stack.client.get(stack.url + "/oauth2/userinfo",
                                headers={"Cookie": f"azp_session={cookie}"}) as resp:
        assert resp.status == 401


async def test_tampered_foreign_and_expired_cookies_are_refused(stack: Stack) -> None:
    await stack.login()
    good = next(c.value for c in stack.client.cookie_jar if c.key == "azp_session")
    payload, _, rest = good.partition(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + rest
    from tests.conftest import SECRET
    # The proxy's own shape: made for this client_id and issuer (the tenant's).
    tid = stack.config.azure.tenant_id
    iss = f"{stack.config.azure.cloud_instance.rstrip('/')}/{tid}/v2.0"
    own = {**IDENTITY, "tid": tid, "aud": stack.config.azure.client_id, "iss": iss}
    cases = {
        "tampered": tampered,
        "other secret": forge("another-secret-that-is-long-enough-0123456789", IDENTITY),
        "expired": forge(SECRET, own, age=8 * 3600 + 60),
        "another app's salt": forge(SECRET, own, age=60, app="another-client-id"),
        "another client_id": forge(SECRET, {**own, "aud": "another-client-id"}, age=60),
        "another issuer": forge(SECRET, {**own, "iss": iss.replace("/v2.0", "/v1")},
                                age=60),
        "no audience": forge(SECRET, {k: v for k, v in own.items() if k != "aud"}, age=60),
        "another tenant": forge(SECRET, {**own, "tid": OTHER_TENANT_ID, "iss": iss.replace(
            tid, OTHER_TENANT_ID)}, age=60),
        "truncated": good[:-5],
    }
    browser = stack.new_browser()
    async with browser:
        for name, value in cases.items():
            async with browser.get(stack.url + "/oauth2/userinfo",
                                   headers={"Cookie": f"azp_session={value}"}) as resp:
                assert resp.status == 401, name
        fresh = forge(SECRET, own, age=60)
        async with browser.get(stack.url + "/oauth2/userinfo",
                               headers={"Cookie": f"azp_session={fresh}"}) as resp:
            assert resp.status == 200  # the forger above had the real secret: proves the oracle


async def test_oversized_chunk_counts_cost_nothing(stack: Stack) -> None:
    cookies = "; ".join(f"azp_session_{i}=AAAA" for i in range(9)) + "; azp_session_99999999=x"
    async with stack.client.get(stack.url + "/oauth2/userinfo",
                                headers={"Cookie": cookies}) as resp:
        assert resp.status == 401


async def test_large_identity_is_chunked_and_read_back(stack: Stack) -> None:
    dave = stack.mock.users["dave@contoso.example"]
    dave.groups = dave.groups[:160]  # under the overage limit, over one cookie
    resp = await stack.login("dave@contoso.example")
    assert resp.status == 200
    names = sorted(c.key for c in stack.client.cookie_jar if c.key.startswith("azp_session"))
    assert names == ["azp_session_0", "azp_session_1"]
    async with stack.client.get(stack.url + "/oauth2/userinfo") as r:
        info = await r.json()
    assert len(info["groups"]) == 160
    body = await get_json(stack.client, stack.url + "/x")
    assert len(",".join(header_map(body)["x-forwarded-groups"]).split(",")) == 160


async def test_overage_identity_reaches_the_upstream_with_a_server_side_store(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"session": {"store": "memory"}})
    resp = await stack.login("dave@contoso.example")  # 250 groups: overage, then Graph
    assert resp.status == 200
    body = await get_json(stack.client, stack.url + "/x")
    # Over repeated lines of at most 4,096 bytes (test_header_limits.py)
    assert len(",".join(header_map(body)["x-forwarded-groups"]).split(",")) == 250


async def test_graph_down_fails_the_overage_login(stack: Stack) -> None:
    stack.mock.faults.graph_status = 503
    resp = await stack.login("dave@contoso.example")
    assert resp.status == 502
    assert not [c for c in stack.client.cookie_jar if c.key.startswith("azp_session")]


async def test_api_clients_get_401_json_and_browsers_a_redirect(stack: Stack) -> None:
    async with stack.client.post(stack.url + "/api", json={}) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["request_id"]
    async with stack.client.get(stack.url + "/page", headers=HTML,
                                allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"].startswith(stack.idp)


async def test_public_route_needs_no_login_but_lookalikes_do(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/healthz") as resp:
        assert resp.status == 200
    for path in ["/healthz/", "/healthz/../secret", "/x?/healthz", "/healthz%2f..%2fsecret",
                 "/healthz;/../secret", "/healthz%00", "/healthz%23"]:
        async with stack.client.get(stack.url + path, allow_redirects=False) as resp:
            assert resp.status == 401, path


async def test_upstream_refused_is_502_and_timeout_is_504(make_stack: StackFactory) -> None:
    stack = await make_stack({"upstreams": [
        {"path": "/", "url": f"http://127.0.0.1:{free_port()}"}]})
    await stack.login()
    async with stack.client.get(stack.url + "/") as resp:
        assert resp.status == 502
        assert (await resp.json())["request_id"]
    slow = await make_stack({"upstreams": [
        {"path": "/", "url": stack.upstream, "timeout": "1s"}]})
    await slow.login()
    async with slow.client.get(slow.url + "/slow?s=3") as resp:
        assert resp.status == 504


async def test_server_sent_events_flush_as_they_arrive(stack: Stack) -> None:
    await stack.login()
    async with stack.client.get(stack.url + "/events") as resp:
        started = time.monotonic()
        first = await resp.content.readline()
        assert first == b"data: 0\n"
        assert time.monotonic() - started < 0.3  # the whole stream takes 0.6 s
        rest = await resp.read()
    assert rest.count(b"data:") == 2


async def test_websocket_echo_through_the_proxy(stack: Stack) -> None:
    await stack.login()
    async with stack.client.ws_connect(stack.url.replace("http", "ws") + "/ws",
                                       protocols=("chat",)) as ws:
        assert ws.protocol == "chat"
        await ws.send_str("hello")
        assert (await ws.receive_str(timeout=5)) == "echo:hello"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive_bytes(timeout=5)) == b"\x00\x01"


async def test_websocket_without_session_is_refused(stack: Stack) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await stack.client.ws_connect(stack.url.replace("http", "ws") + "/ws")
    assert info.value.status == 401


async def test_methods_bodies_and_statuses_pass_through(stack: Stack) -> None:
    await stack.login()
    async with stack.client.put(stack.url + "/thing?q=1", data=b"abc") as resp:
        body = await resp.json()
    assert body["method"] == "PUT" and body["raw_path"] == "/thing?q=1"
    assert body["body_size"] == 3
    async with stack.client.head(stack.url + "/download/10") as resp:
        assert resp.status == 200


async def test_concurrent_requests_share_one_session(stack: Stack) -> None:
    await stack.login()
    results = await asyncio.gather(*[get_json(stack.client, stack.url + f"/{i}")
                                     for i in range(50)])
    assert all(header_map(r)["x-forwarded-user"] == [ALICE] for r in results)
    assert json.dumps(results).count(ALICE) == 100  # user and email headers


async def test_missing_claim_sends_no_header(stack: Stack) -> None:
    await stack.login("bob@contoso.example")  # no email, no groups
    seen = header_map(await get_json(stack.client, stack.url + "/x"))
    assert seen["x-forwarded-user"] == ["bob@contoso.example"]
    assert "x-forwarded-email" not in seen and "x-forwarded-groups" not in seen
