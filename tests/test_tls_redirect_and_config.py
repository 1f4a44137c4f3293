"""server.http_redirect_listen (308 to https, never an open redirect) over real sockets, and
the TLS keys' check-config lines (one line naming the key, from a real subprocess)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.config_load import from_dict
from proxy.http_redirect import redirect_app
from tests.conftest import ProxyTestServer, base_config, deep_merge
from tests.support.proxy_toml import write_proxy_toml
from tests.support.server_pki import TestCa, key_pem

PUBLIC = "https://proxy.example.com:8443"
Ask = Callable[[bytes], Awaitable[bytes]]


@pytest.fixture
async def ask() -> AsyncIterator[Ask]:
    """Raw HTTP/1.1 to a redirect listener for the public URL above, with an upstream
    served under its own host name and one under a wildcard."""
    config = from_dict(deep_merge(base_config(8443, "http://127.0.0.1:9", "http://x:1"), {
        "server": {"public_url": PUBLIC, "tls_cert_file": "unused.pem",
                   "tls_key_file": "unused.key"},
        "session": {"secure": True},
        "upstreams": [{"url": "http://127.0.0.1:9", "host": "app.example.com"},
                      {"url": "http://127.0.0.1:9", "host": "*.apps.example.com"}]}))
    server = ProxyTestServer(redirect_app(config), host="127.0.0.1")
    await server.start_server()

    async def send(head: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head + b"\r\n\r\n")
        answer = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        return answer

    yield send
    await server.close()


def location(answer: bytes) -> str:
    assert answer.split(b" ", 2)[1] == b"308", answer[:40]
    for line in answer.decode().split("\r\n"):
        if line.lower().startswith("location:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Location")


@pytest.mark.parametrize(("head", "expected"), [
    (b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: proxy.example.com",
     "https://proxy.example.com:8443/a/b?x=1&y=2"),
    (b"POST /form HTTP/1.1\r\nHost: PROXY.example.com.:80\r\nContent-Length: 0",
     "https://proxy.example.com:8443/form"),
    (b"GET /x HTTP/1.1\r\nHost: app.example.com:8080", "https://app.example.com:8443/x"),
    (b"GET /x HTTP/1.1\r\nHost: one.apps.example.com", "https://one.apps.example.com:8443/x"),
])
async def test_served_hosts_are_sent_to_https(ask: Ask, head: bytes, expected: str) -> None:
    assert location(await ask(head)) == expected


@pytest.mark.parametrize("head", [
    b"GET /x HTTP/1.1\r\nHost: evil.example",  # a stranger's host
    b"GET /x HTTP/1.1\r\nHost: apps.example.com",  # the wildcard's parent is not under it
    b"GET /x HTTP/1.1\r\nHost: app.example.com.evil.example",
    b"GET /x HTTP/1.1\r\nHost: evil.example@app.example.com",  # malformed: userinfo
    b"GET /x HTTP/1.0",  # none at all
    b"GET http://evil.example/x HTTP/1.1\r\nHost: evil.example",  # absolute form
])
async def test_a_hostile_host_never_leaves_the_public_host(ask: Ask, head: bytes) -> None:
    assert location(await ask(head)) == "https://proxy.example.com:8443/x"


async def test_path_tricks_stay_on_the_host_and_ping_answers(ask: Ask) -> None:
    # `//evil.example` after the authority is a path on proxy.example.com, not a host.
    assert location(await ask(b"GET //evil.example/x HTTP/1.1\r\nHost: evil.example")) == \
        "https://proxy.example.com:8443//evil.example/x"
    # Two Host headers: the parser refuses the request; nothing is redirected anywhere.
    answer = await ask(b"GET /x HTTP/1.1\r\nHost: app.example.com\r\nHost: evil.example")
    assert answer.startswith(b"HTTP/1.0 400 ") and b"Location" not in answer
    answer = await ask(b"GET /ping HTTP/1.1\r\nHost: evil.example")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nServer: azure-auth-proxy\r\n" in answer


# check-config: the TLS keys, one line each, naming the key.

def check_config(tmp_path: Path, server: dict[str, Any],
                 session: dict[str, Any] | None = None) -> list[str]:
    config = write_proxy_toml(tmp_path / "proxy.toml", 4180, "http://127.0.0.1:9",
                              "http://127.0.0.1:10", {
                                  "server": {"public_url": "https://127.0.0.1:4180", **server},
                                  "session": {"secure": True, **(session or {})}})
    done = subprocess.run([sys.executable, "-m", "proxy", "check-config", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("config error")] \
        if done.returncode else []


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    authority = TestCa(tmp_path)
    authority.issue()
    return authority


def test_a_good_pair_passes(tmp_path: Path, ca: TestCa) -> None:
    assert check_config(tmp_path, {"tls_cert_file": str(ca.cert_file),
                                   "tls_key_file": str(ca.key_file),
                                   "http_redirect_listen": ":8080"}) == []


@pytest.mark.parametrize(("change", "line"), [
    ({"tls_key_file": ""}, "config error: server.tls_key_file: required with "
                           "server.tls_cert_file (TLS needs the certificate chain and its key)"),
    ({"tls_cert_file": ""}, "config error: server.tls_cert_file: required with "
                            "server.tls_key_file (TLS needs the certificate chain and its key)"),
    ({"tls_cert_file": "/nonexistent/tls.crt"},
     "config error: server.tls_cert_file: cannot read '/nonexistent/tls.crt' "
     "(No such file or directory)"),
    ({"tls_key_file": "/nonexistent/tls.key"},
     "config error: server.tls_key_file: cannot read '/nonexistent/tls.key' "
     "(No such file or directory)"),
    ({"public_url": "http://127.0.0.1:4180"},
     "config error: server.public_url: 'http://127.0.0.1:4180' must be https:// when the "
     "proxy serves TLS (server.tls_cert_file)"),
    ({"http_redirect_listen": "8080"}, "config error: server.http_redirect_listen: '8080' "
                                       "must be [host]:port, e.g. \":8080\""),
    ({"http_redirect_listen": "0.0.0.0:4180", "listen": "0.0.0.0:4180"},
     "config error: server.http_redirect_listen: must differ from server.listen and "
     "server.metrics_listen"),
    ({"tls_watch_interval": "10ms"}, "config error: server.tls_watch_interval: 0.01 s must "
                                     "be 0 (off) or between 100ms and 1h"),
])
def test_tls_key_problems(tmp_path: Path, ca: TestCa, change: dict[str, str],
                          line: str) -> None:
    server = {"tls_cert_file": str(ca.cert_file), "tls_key_file": str(ca.key_file), **change}
    assert check_config(tmp_path, server) == [line]


def test_a_key_of_another_certificate_or_encrypted_or_not_pem(tmp_path: Path,
                                                              ca: TestCa) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    assert check_config(tmp_path, {"tls_cert_file": str(ca.cert_file),
                                   "tls_key_file": str(other)}) == [
        "config error: server.tls_key_file: the key does not belong to the certificate in "
        "server.tls_cert_file"]
    locked = tmp_path / "locked.key"
    locked.write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1()), b"pass phrase"))
    [line] = check_config(tmp_path, {"tls_cert_file": str(ca.cert_file),
                                     "tls_key_file": str(locked)})
    assert line.startswith("config error: server.tls_key_file: ")
    not_pem = tmp_path / "junk.crt"
    not_pem.write_text("not a certificate\n")
    [line] = check_config(tmp_path, {"tls_cert_file": str(not_pem),
                                     "tls_key_file": str(ca.key_file)})
    assert line.startswith("config error: server.tls_cert_file: cannot load the certificate")
    assert "pass phrase" not in line


def test_plain_cookies_and_a_redirect_without_tls_are_refused(tmp_path: Path,
                                                              ca: TestCa) -> None:
    assert check_config(tmp_path, {"tls_cert_file": str(ca.cert_file),
                                   "tls_key_file": str(ca.key_file)},
                        {"secure": False}) == [
        "config error: session.secure: false, but the proxy serves TLS "
        "(server.tls_cert_file): session cookies are always Secure then; remove the setting"]
    assert check_config(tmp_path, {"http_redirect_listen": ":8080"}) == [
        "config error: server.http_redirect_listen: needs TLS on server.listen "
        "(server.tls_cert_file and server.tls_key_file)"]
