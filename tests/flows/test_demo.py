"""`azure-auth-proxy demo` as a person uses it: open the URL, pick a user, see who you are."""

from __future__ import annotations

import asyncio
import html
import re
import sys

import aiohttp
from yarl import URL

from tests.conftest import HTML, free_port


async def sign_in_on_mock_page(client: aiohttp.ClientSession, page: str, page_url: URL,
                               user: str) -> aiohttp.ClientResponse:
    form = re.search(r'<form[^>]*action="([^"]*)"', page)
    assert form, page[:500]
    fields = {k: html.unescape(v)
              for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}
    fields["user"] = user
    async with client.post(page_url.join(URL(html.unescape(form.group(1)))), data=fields,
                           headers=HTML) as resp:
        await resp.read()
        return resp


async def test_demo_command_signs_a_person_in_and_out() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "demo", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        printed = ""
        while "Press Ctrl+C" not in printed:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line, printed
            printed += line.decode()
        url = f"http://127.0.0.1:{port}/"
        assert f"Open  {url}" in printed and "alice@contoso.example" in printed
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(url, headers=HTML) as resp:
                page, page_url = await resp.text(), resp.url
            assert "alice@contoso.example" in page  # the mock's sign-in page
            resp = await sign_in_on_mock_page(client, page, page_url, "alice@contoso.example")
            assert resp.status == 200 and str(resp.url) == url
            async with client.get(url) as resp:
                text = await resp.text()
            assert "Hello, Alice" in text and "X-Forwarded-User" in text
            async with client.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send_str("ping")
                assert await ws.receive_str(timeout=5) == "ping"
            async with client.get(url + "oauth2/sign_out", headers=HTML) as resp:
                assert "signed out" in (await resp.text()).lower()
            async with client.get(url, headers=HTML, allow_redirects=False) as resp:
                assert resp.status == 302
    finally:
        proc.terminate()
        await proc.wait()
