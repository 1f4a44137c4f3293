"""Prometheus metrics on their own listener, with bounded labels."""

from __future__ import annotations

from tests.conftest import ALICE, StackFactory, free_port


async def test_metrics_count_requests_logins_and_never_label_raw_paths(
        make_stack: StackFactory) -> None:
    port = free_port()
    stack = await make_stack({"server": {"metrics_listen": f"127.0.0.1:{port}"}})
    await stack.login(ALICE)
    for path in ("/random-path-123", "/x?secret=1"):
        async with stack.client.get(stack.url + path) as resp:
            assert resp.status == 200
    async with stack.client.get(stack.url + "/oauth2/userinfo") as resp:
        assert resp.status == 200
    async with stack.client.get(stack.url + "/metrics") as resp:
        assert (await resp.json())["path"] == "/metrics"  # the public port has no /metrics
    async with stack.client.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert 'azp_requests_total{route="/",status="200"}' in text
    assert 'azp_requests_total{route="/oauth2/userinfo",status="200"}' in text
    assert 'azp_logins_total{reason="",result="started"} 1.0' in text
    assert 'azp_logins_total{reason="",result="completed"} 1.0' in text
    assert 'azp_jwks_refreshes_total{result="ok"} 1.0' in text
    assert "azp_request_duration_seconds_bucket" in text
    assert "random-path" not in text and "secret" not in text and "GET" not in text


async def test_failed_logins_and_upstream_errors_are_counted(make_stack: StackFactory) -> None:
    port = free_port()
    stack = await make_stack({"server": {"metrics_listen": f"127.0.0.1:{port}"},
                              "upstreams": [{"path": "/", "url": f"http://127.0.0.1:{free_port()}"}]})
    stack.mock.faults.id_token_claims = {"aud": "someone-else"}
    await stack.login(ALICE)
    async with stack.client.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    assert 'azp_logins_total{reason="LoginRejected",result="failed"} 1.0' in text
    stack.mock.faults.id_token_claims = {}
    await stack.login(ALICE)
    async with stack.client.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    assert 'azp_upstream_errors_total{kind="unreachable",route="/"}' in text


def test_grafana_dashboard_uses_only_metrics_the_proxy_exports() -> None:
    import json
    import re
    from pathlib import Path

    from proxy.metrics import Metrics

    path = Path(__file__).resolve().parents[2] / "deploy/grafana/azure-auth-proxy.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(azp_[a-z_]+)", e)}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = {family.name + suffix for family in Metrics().registry.collect()
                for suffix in suffixes.get(family.type, ("",))}
    assert used and used <= exported, used - exported
