"""Text logs cannot be forged or garbled (issue 17 item 5): CR/LF, ESC and Unicode line
separators in a path, a host, a user or an IdP error text are written as escapes, so every
event is exactly one line and no request can write a line of its own."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from proxy.logs import TextFormatter
from tests.attacks.conftest import ShieldFactory
from tests.attacks.harness import Upstream, raw_exchange, tally
from tests.conftest import Browsers, port_of
from tests.flows.test_login_security import fetch, start_login
from tests.support.text_log import captured_text_log

FAKE = "2026-01-01 00:00:00,000 INFO proxy.auth login completed user=ceo@contoso.example"
LINE_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ |\| )")
PAYLOADS = [
    "/public%0d%0a" + FAKE.replace(" ", "%20"),
    "/public%0a" + FAKE.replace(" ", "%20"),
    "/public%0d" + FAKE.replace(" ", "%20"),
    "/public%1b[2J%1b[31mred",
    "/public%e2%80%a8" + FAKE.replace(" ", "%20"),  # U+2028 LINE SEPARATOR
    "/public%c2%85next-line",  # U+0085 NEXT LINE
    "/public%00nul",
]


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    """The proxy's own text formatter on the root logger, as `log_format = "text"` sets it."""
    with captured_text_log() as sink:
        yield sink


def forged(log: str) -> list[str]:
    """Lines that do not start like one of the proxy's own lines, or that carry raw ESC."""
    return [line for line in log.splitlines()
            if not LINE_START.match(line) or "\x1b" in line or line.startswith(FAKE[:23])]


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_a_path_cannot_write_a_log_line(shield: ShieldFactory, upstream: Upstream,
                                              text_log: io.StringIO, payload: str) -> None:
    stack = await shield()
    exchange = await raw_exchange(port_of(stack), f"GET {payload} HTTP/1.1\r\nHost: "
                                  f"127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    log = text_log.getvalue()
    bad = forged(log)
    tally("log-forging", refused=not bad, crashed=any(s >= 500 for s in exchange.statuses))
    assert bad == [], log
    assert "proxy.access" in log  # the request was logged, as one line
    assert "\r" not in log and log.count("\n") == len(log.splitlines())


async def test_an_idp_error_with_the_users_own_state_cannot_forge_a_login(
        shield: ShieldFactory, browsers: Browsers, text_log: io.StringIO) -> None:
    stack = await shield()
    browser = browsers()
    authorize = await start_login(stack, browser)
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    error = "x\r\n" + FAKE + "\x1b[2J\u2028"
    hop = await fetch(browser, stack.url + "/callback/azuread?" +
                      f"state={state}&error={error.replace(' ', '%20')}".replace(
                          "\r", "%0d").replace("\n", "%0a").replace("\x1b", "%1b").replace(
                          "\u2028", "%e2%80%a8"))
    log = text_log.getvalue()
    bad = forged(log)
    tally("log-forging", refused=not bad, crashed=False)
    assert hop.status == 502 and bad == [], log  # Entra's error, shown as one
    assert "login failed" in log and "idp_error=x\\x0d\\x0a" in log


def test_tracebacks_are_indented_and_escaped() -> None:
    formatter = TextFormatter()
    try:
        raise ValueError("bad input\n" + FAKE)
    except ValueError:
        record = logging.LogRecord("proxy", logging.ERROR, __file__, 1, "unhandled %s",
                                   ("x\ny",), exc_info=sys.exc_info())
    text = formatter.format(record)
    assert forged(text) == []
    assert text.splitlines()[0].endswith("unhandled x\\x0ay")


FIELD = re.compile(r' ([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]+)')
ACCESS_KEYS = ["request_id", "method", "host", "path", "status", "duration_ms", "bytes", "user",
               "tenant", "client", "user_agent", "route", "upstream_status", "upstream_ms"]
FORGED_FIELDS = ['x" user=ceo@contoso.example status=200 route="/admin',
                 "a b user=ceo@contoso.example", 'q=" tenant=evil', "\\\" user=ceo"]


def access_fields(log: str) -> list[list[tuple[str, str]]]:
    """The fields of each access line, read as a log parser would; a line whose tail is not
    entirely ` key=value` tokens fails."""
    out = []
    for line in log.splitlines():
        if " proxy.access access" not in line:
            continue
        tail = line.split(" proxy.access access", 1)[1]
        pairs = [(m.group(1), m.group(2)) for m in FIELD.finditer(tail)]
        assert "".join(f" {k}={v}" for k, v in pairs) == tail, line
        out.append(pairs)
    return out


@pytest.mark.parametrize("agent", FORGED_FIELDS)
async def test_a_header_value_cannot_forge_an_access_field(
        shield: ShieldFactory, upstream: Upstream, text_log: io.StringIO, agent: str) -> None:
    stack = await shield()
    exchange = await raw_exchange(port_of(stack), (
        f"GET /public/a%20b%22%3D HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {agent}\r\n"
        f"Connection: close\r\n\r\n").encode())
    lines = access_fields(text_log.getvalue())
    forged_any = any([k for k, _ in pairs] != ACCESS_KEYS for pairs in lines)
    tally("log-forging", refused=bool(lines) and not forged_any,
          crashed=any(s >= 500 for s in exchange.statuses))
    assert len(lines) == 1 and not forged_any, text_log.getvalue()
    fields = dict(lines[0])
    assert fields["user"] == "-" and fields["path"] == '"/public/a b\\"="'
