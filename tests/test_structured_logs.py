"""Structured logs and no version banner (issue 15 items 1 and 3).

`python -m proxy run` with `log_format = "json"` writes nothing but JSON objects on stderr:
the startup event, a config warning, access events with their own fields, a refused reload
(an error), and a crash with its traceback as a field. Text lines carry the same fields as
`key=value`, quoted so a value cannot pose as another field. `Server` names no version."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.logs import JsonFormatter, TextFormatter, fields
from proxy.mock_entra import MockEntra, create_app
from tests.conftest import ALICE, HTML, StackFactory, base_config, deep_merge, free_port, wait_ready
from tests.support.proxy_toml import to_toml
from tests.support.text_log import captured_text_log

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_SERVER = "upstream-httpd/9.9 (its own)"
ACCESS_FIELDS = {"time", "level", "logger", "event", "request_id", "method", "host", "path",
                 "status", "duration_ms", "bytes", "user", "tenant", "client", "user_agent",
                 "route", "upstream_status", "upstream_ms"}
AGENT = 'probe/1.0 (x="y" z=1) user=mallory status=200'


async def _own_server(request: web.Request) -> web.Response:
    return web.Response(text="hello", headers={"Server": UPSTREAM_SERVER})


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Server": UPSTREAM_SERVER})
    await response.prepare(request)  # chunked: relayed as a stream, not in one piece
    for _ in range(4):
        await response.write(b"y" * 50_000)
    await response.write_eof()
    return response


async def _plain(request: web.Request) -> web.Response:
    return web.Response(body=b"z" * 1234)


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/own-server", _own_server)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/{tail:.*}", _plain)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def idp() -> AsyncIterator[tuple[MockEntra, str]]:
    mock = MockEntra()
    server = TestServer(create_app(mock), host="127.0.0.1")
    await server.start_server(access_log=None)
    yield mock, str(server.make_url("")).rstrip("/")
    await server.close()


def _objects(text: str) -> list[dict[str, Any]]:
    """Every line as a JSON object; fails on the first line that is not one."""
    out = []
    for line in text.splitlines():
        value = json.loads(line)
        assert isinstance(value, dict), line
        out.append(value)
    return out


async def test_every_stderr_line_of_a_json_proxy_is_one_object(
        idp: tuple[MockEntra, str], upstream: str, tmp_path: Path) -> None:
    mock, idp_url = idp
    port = free_port()
    config = deep_merge(base_config(port, idp_url, upstream),
                        {"server": {"log_format": "json", "trusted_proxies": ["127.0.0.1/32"]}})
    # A group name on another route: a config warning at startup, alice's route unaffected.
    config["upstreams"].append({"path": "/admin", "url": upstream,
                                "access": {"groups": ["Admins"]}})
    path = tmp_path / "proxy.toml"
    path.write_text(to_toml(config))
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(path)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sink)
    proxy = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(proxy)
        mock.auto_user = ALICE
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as alice:
            async with alice.get(proxy + "/app?code=SECRET-QUERY-VALUE", headers=HTML) as r:
                assert r.status == 200 and len(await r.read()) == 1234
            headers = {"User-Agent": AGENT, "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
            async with alice.get(proxy + "/own-server", headers=headers) as r:
                assert r.status == 200
            async with alice.get(proxy + "/stream") as r:
                assert len(await r.read()) == 200_000
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(proxy + "/api", headers={"Accept": "application/json"}) as r:
                assert r.status == 401
        path.write_text("[server\n")  # a reload that is refused: an error event
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if "reload refused" in stderr.read_text():
                break
            await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
    log = stderr.read_text()
    events = _objects(log)
    assert events[0]["event"] == "started" and events[0]["listen"] == f"127.0.0.1:{port}"
    assert any(e["level"] == "warning" and "upstreams[1].access.groups" in e["event"]
               for e in events), log
    assert any(e["level"] == "error" and "reload refused" in e["event"] for e in events), log
    access = [e for e in events if e["event"] == "access"]
    assert all(set(e) == ACCESS_FIELDS for e in access), access
    assert "SECRET-QUERY-VALUE" not in log  # the path, never the query string
    app = next(e for e in access if e["path"] == "/app" and e["status"] == 200)
    assert app["user"] == ALICE and app["tenant"] and app["route"] == "/"
    assert app["upstream_status"] == 200 and app["upstream_ms"] >= 0 and app["bytes"] == 1234
    assert app["host"] == f"127.0.0.1:{port}" and app["method"] == "GET"
    own = next(e for e in access if e["path"] == "/own-server")
    # The peer is a trusted proxy: the client is the address it appended, not the first.
    assert own["client"] == "203.0.113.9" and own["user_agent"] == AGENT
    stream = next(e for e in access if e["path"] == "/stream")
    # Streamed: what was written, chunked framing included.
    assert 200_000 <= stream["bytes"] < 201_000 and stream["upstream_status"] == 200
    api = next(e for e in access if e["path"] == "/api")
    assert api["status"] == 401 and api["user"] is None and api["upstream_status"] is None
    assert api["client"] == "127.0.0.1"


def test_a_crash_is_one_json_object_with_the_traceback_as_a_field() -> None:
    code = ("from proxy import logs; logs.setup('json'); import warnings; "
            "warnings.warn('old thing', DeprecationWarning, stacklevel=1); "
            "raise RuntimeError('boom')")
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    events = _objects(result.stderr)
    assert [e["level"] for e in events] == ["warning", "critical"], result.stderr
    assert "old thing" in events[0]["event"]
    assert events[1]["event"] == "crashed"
    assert "RuntimeError: boom" in events[1]["traceback"]
    assert events[1]["traceback"].startswith("Traceback")


@pytest.fixture
def text_sink() -> Iterator[io.StringIO]:
    with captured_text_log("proxy.access") as sink:
        yield sink


def test_text_fields_cannot_be_forged() -> None:
    record = logging.LogRecord("proxy.access", logging.INFO, __file__, 1, "access", None, None)
    record.fields = fields(user_agent=AGENT, user=None, path="/a b\r\nx", status=200,
                           duration_ms=1.25, host='h"=')["fields"]
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line
    tail = line.split(" access ", 1)[1]
    assert tail == ('user_agent="probe/1.0 (x=\\"y\\" z=1) user=mallory status=200" user=- '
                    'path="/a b\\\\x0d\\\\x0ax" status=200 duration_ms=1.2 host="h\\"="')
    # the JSON form of the same record keeps the values as they are
    entry = json.loads(JsonFormatter().format(record))
    assert entry["user_agent"] == AGENT and entry["user"] is None and entry["path"] == "/a b\r\nx"


def test_a_field_cannot_replace_the_records_own_keys() -> None:
    record = logging.LogRecord("proxy", logging.INFO, __file__, 1, "real", None, None)
    record.fields = {"event": "fake", "level": "debug", "time": "then"}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["event"] == "real" and entry["level"] == "info" and entry["time"] != "then"


async def test_text_access_line_and_access_log_off(make_stack: StackFactory,
                                                   text_sink: io.StringIO) -> None:
    stack = await make_stack()
    async with stack.client.get(stack.url + "/healthz?token=QQQ",
                                headers={"User-Agent": AGENT}) as resp:
        assert resp.status == 200
    line = text_sink.getvalue()
    assert "proxy.access access request_id=" in line and "QQQ" not in line
    assert " method=GET " in line and " path=/healthz status=200 " in line
    assert ' user_agent="probe/1.0 (x=\\"y\\" z=1) user=mallory status=200" ' in line
    assert " user=- tenant=- client=127.0.0.1 " in line and " upstream_status=200 " in line
    quiet = await make_stack({"server": {"access_log": False}})
    before = text_sink.getvalue()
    async with quiet.client.get(quiet.url + "/healthz") as resp:
        assert resp.status == 200
    assert text_sink.getvalue() == before


async def test_server_header_has_no_version(make_stack: StackFactory) -> None:
    stack = await make_stack()
    for path in ("/ping", "/oauth2/sign_in", "/nope/../../x", "/app"):
        async with stack.client.get(stack.url + path, allow_redirects=False,
                                    headers={"Accept": "application/json"}) as resp:
            assert resp.headers.getall("Server") == ["azure-auth-proxy"], (path, resp.status)
    custom = await make_stack({"server": {"server_header": "gateway"}})
    async with custom.client.get(custom.url + "/ping") as resp:
        assert resp.headers["Server"] == "gateway"


async def test_an_upstreams_own_server_header_passes_unchanged(
        idp: tuple[MockEntra, str], upstream: str) -> None:
    from proxy.app import build_app
    from proxy.config_load import from_dict
    from tests.conftest import ProxyTestServer

    mock, idp_url = idp
    port = free_port()
    config = deep_merge(base_config(port, idp_url, upstream),
                        {"upstreams": [{"path": "/", "url": upstream,
                                        "public": ["^/own-server$", "^/stream$"]}]})
    server = ProxyTestServer(build_app(from_dict(config)), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as client:
            for path in ("/own-server", "/stream"):  # whole, and relayed as a stream
                async with client.get(f"http://127.0.0.1:{port}{path}") as resp:
                    await resp.read()
                    assert resp.headers.getall("Server") == [UPSTREAM_SERVER], path
    finally:
        await server.close()


def test_server_header_config_is_checked() -> None:
    result = subprocess.run([sys.executable, "-m", "proxy", "check-config"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "PROXY_SERVER_SERVER_HEADER": "a\tb",
                                 "PROXY_CONFIG": str(ROOT / "proxy.toml")})
    assert result.returncode == 1
    assert "server.server_header" in result.stderr
