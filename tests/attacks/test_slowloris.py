"""Slow and idle clients (issue 16 item 11): a connection cannot be held for free.

Bounded crowds of raw-socket clients that send nothing, half a request head, or a head one
byte at a time must each be answered 408 and closed within `header_timeout` (plus generous
slack: the machine is loaded; this bounds correctness, not speed), while a normal client is
still served. Idle keep-alive connections close after `keepalive_timeout`. Past
`max_connections`, new connections get 503 and are closed, one WARNING says so, and service
resumes once connections go. tests/faults/test_slow_clients_process.py runs the same
against `azure-auth-proxy run`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest

from tests.attacks.conftest import ShieldFactory
from tests.attacks.harness import parse_responses, tally
from tests.conftest import Stack, port_of
from tests.support.slow_clients import (
    BEHAVIOURS,
    HEAD,
    SLACK,
    held,
    open_served,
    read_response,
    send_nothing,
)

HEADER_TIMEOUT = 1.0
CROWD = 20
CAP_MESSAGE = "connection cap reached"


async def served(stack: Stack) -> int:
    async with aiohttp.ClientSession() as client, client.get(stack.url + "/healthz") as resp:
        return resp.status


@pytest.mark.parametrize("kind", list(BEHAVIOURS))
async def test_slow_clients_get_408_and_are_closed_while_others_are_served(
        shield: ShieldFactory, kind: str) -> None:
    stack = await shield({"server": {"header_timeout": f"{HEADER_TIMEOUT:g}s"}})
    crowd = [asyncio.create_task(held(port_of(stack), BEHAVIOURS[kind],
                                      HEADER_TIMEOUT + SLACK)) for _ in range(CROWD)]
    await asyncio.sleep(0.2)
    assert await served(stack) == 200  # while the crowd holds its connections
    results = await asyncio.gather(*crowd)
    for closed_after, received in results:
        responses, leftover = parse_responses(received)
        refused = (closed_after is not None and [r.status for r in responses] == [408]
                   and not leftover)
        tally("slowloris", refused=refused, crashed=closed_after is None)
        assert closed_after is not None, f"{kind}: still open after {HEADER_TIMEOUT + SLACK}s"
        assert [r.status for r in responses] == [408], received[:200]
        assert responses[0].header("X-Request-Id") in responses[0].body.decode()
        assert responses[0].header("Connection").lower() == "close"
    assert await served(stack) == 200


async def test_a_complete_head_is_not_timed_out_later(shield: ShieldFactory) -> None:
    """The header timer is for the first head only: a healthy keep-alive connection that
    stays quiet past header_timeout is still served (keepalive_timeout is the bound)."""
    stack = await shield({"server": {"header_timeout": f"{HEADER_TIMEOUT:g}s"}})
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(stack))
    try:
        for _ in range(2):
            writer.write(HEAD + b"\r\n")
            assert await read_response(reader) == 200
            await asyncio.sleep(HEADER_TIMEOUT * 2)
    finally:
        writer.close()


@pytest.mark.parametrize("then", ["nothing", "half-head"])
async def test_idle_keepalive_connections_are_closed(shield: ShieldFactory, then: str) -> None:
    keepalive = 1.0
    stack = await shield({"server": {"keepalive_timeout": f"{keepalive:g}s"}})

    async def one_request_then(writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.3)  # the response is in
        await BEHAVIOURS[then](writer)

    results = await asyncio.gather(*(held(port_of(stack), one_request_then, keepalive + SLACK)
                                     for _ in range(5)))
    for closed_after, received in results:
        assert closed_after is not None, f"idle keep-alive still open after {keepalive + SLACK}s"
        assert [r.status for r in parse_responses(received)[0]] == [200]


async def test_connections_past_the_cap_get_503_and_service_resumes(
        shield: ShieldFactory, caplog: pytest.LogCaptureFixture) -> None:
    cap, extra = 5, 3
    stack = await shield({"server": {"max_connections": cap}})
    holders = [await open_served(port_of(stack)) for _ in range(cap)]
    try:
        refused = await asyncio.gather(*(held(port_of(stack), send_nothing, SLACK)
                                         for _ in range(extra)))
    finally:
        for _, writer in holders:
            writer.close()
    for closed_after, received in refused:
        responses, _ = parse_responses(received)
        ok = closed_after is not None and [r.status for r in responses] == [503]
        tally("connection-cap", refused=ok, crashed=False)
        assert closed_after is not None, "a connection past the cap was kept open"
        assert [r.status for r in responses] == [503], received[:200]
        assert responses[0].header("Retry-After") == "1"
    warnings = [r for r in caplog.records
                if CAP_MESSAGE in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]

    deadline = time.monotonic() + SLACK
    while True:  # the proxy sees the holders go as their FINs arrive
        try:
            status = await served(stack)
        except aiohttp.ClientError:
            status = 0
        if status == 200:
            break
        assert time.monotonic() < deadline, "service did not resume after connections closed"
        await asyncio.sleep(0.1)
    assert any("below" in r.getMessage() for r in caplog.records)


async def test_the_cap_warning_is_logged_again_after_a_recovery(
        shield: ShieldFactory, caplog: pytest.LogCaptureFixture) -> None:
    cap = 2
    stack = await shield({"server": {"max_connections": cap}})
    for episode in (1, 2):
        holders = [await open_served(port_of(stack)) for _ in range(cap)]
        try:
            for closed_after, received in await asyncio.gather(
                    *(held(port_of(stack), send_nothing, SLACK) for _ in range(2))):
                assert closed_after is not None and received.startswith(b"HTTP/1.1 503")
        finally:
            for _, writer in holders:
                writer.close()
                await asyncio.gather(writer.wait_closed(), return_exceptions=True)
        deadline = time.monotonic() + SLACK
        while sum("below" in r.getMessage() for r in caplog.records) < episode:
            assert time.monotonic() < deadline, "the cap was not released"
            await asyncio.sleep(0.05)
    warnings = [r for r in caplog.records if CAP_MESSAGE in r.getMessage()]
    assert len(warnings) == 2
