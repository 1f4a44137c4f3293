"""Pieces the fault tests share: a proxy subprocess, /proc probes and misbehaving upstreams.

* :class:`ProxyProcess` runs ``python -m proxy run`` from a config dict (written as TOML),
  so its open file descriptors (``/proc/<pid>/fd``) and memory can be read from outside.
* :func:`settle` polls a probe until it is back within a tolerance of a baseline.
* :class:`BrokenUpstream` is a raw asyncio HTTP/1.1 server that misbehaves on purpose:
  headers then part of a body, then a reset (RST) or a plain close (FIN), or a stall.
* :func:`ws_fault_app` is an aiohttp upstream whose WebSocket dies without a close frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from tests.conftest import free_port
from tests.support.proxy_toml import write_proxy_toml

HOST = "127.0.0.1"
PARTIAL = b"p" * 32 * 1024  # what a broken upstream sends before it breaks off
DECLARED = 4 * 1024 * 1024  # the Content-Length it promises
SMALL_PARTIAL = b"s" * 1024  # the same for a short body
SMALL_DECLARED = 16 * 1024


# --------------------------------------------------------------------------- /proc probes


def open_fds(pid: int) -> int:
    """Open file descriptors of a process (sockets, pipes, files)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tcp_sockets(pid: int) -> dict[str, str]:
    """Socket inode -> "local->remote state" from /proc/<pid>/net/tcp (IPv4 loopback)."""
    states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "0A": "LISTEN"}
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
            out[fields[9]] = f":{local}->:{remote} {states.get(fields[3], fields[3])}"
    return out


def fd_census(pid: int, own_port: int) -> Counter[str]:
    """Open fds by kind: "clients" (accepted connections), "peer:<port>" (outbound TCP by
    remote port), "listen", "other-socket" (not IPv4 TCP), "file" (everything else)."""
    tcp = _tcp_sockets(pid)
    census: Counter[str] = Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if not target.startswith("socket:["):
            census["file"] += 1
            continue
        entry = tcp.get(target[len("socket:["):-1])
        if entry is None:
            census["other-socket"] += 1
            continue
        local, remote = (int(p) for p in entry.split()[0].replace(":", "").split("->"))
        if entry.endswith("LISTEN"):
            census["listen"] += 1
        elif local == own_port:
            census["clients"] += 1
        else:
            census[f"peer:{remote}"] += 1
    return census


def fd_targets(pid: int) -> str:
    """What each fd points at, TCP sockets with their ports and state: for failure messages."""
    tcp = _tcp_sockets(pid)
    out = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            inode = target[len("socket:["):-1] if target.startswith("socket:[") else ""
            out.append(f"{target} {tcp.get(inode, '')}".strip())
    return "\n".join(sorted(out))


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` size field (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def settle(probe: Callable[[], int], baseline: int, tolerance: int,
                 timeout: float = 10.0) -> int:
    """Poll `probe` until it is <= baseline + tolerance; return the last value either way."""
    deadline = time.monotonic() + timeout
    value = probe()
    while value > baseline + tolerance and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        value = probe()
    return value


# --------------------------------------------------------------------------- the proxy process


class ProxyProcess:
    """``python -m proxy run -c <tmp>/proxy.toml``; stderr goes to ``<tmp>/proxy.log``."""

    def __init__(self, workdir: Path, idp: str, upstream: str,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.config = workdir / "proxy.toml"
        self.log = workdir / "proxy.log"
        write_proxy_toml(self.config, self.port, idp, upstream, extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def fds(self) -> int:
        return open_fds(self.pid)

    async def start(self) -> None:
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "proxy", "run", "-c", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"proxy exited with {self.proc.returncode}:\n"
                                         + self.log.read_text()[-2000:])
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(self.url + "/ping") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError("proxy did not start:\n" + self.log.read_text()[-2000:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone after 15 s; always reaped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- broken upstreams


class BrokenUpstream:
    """A raw HTTP/1.1 server that answers every request with one kind of breakage.

    The request path's last segment picks it:

    * ``/cl-rst``, ``/cl-fin``, ``/cl-stall``: ``Content-Length: DECLARED``, PARTIAL bytes
      of it, then a TCP reset (SO_LINGER 0), an orderly close, or nothing for ``stall``
      seconds (until the peer hangs up).
    * ``/chunked-rst``, ``/chunked-fin``: the same with ``Transfer-Encoding: chunked`` and
      no terminating chunk.
    * ``/small-rst``, ``/small-fin``, ``/small-stall``: a short body (``Content-Length:
      SMALL_DECLARED``, SMALL_PARTIAL bytes sent), which a proxy may buffer before it
      answers.
    * ``/early-rst``: reads the request, then resets before any response byte.

    ``connections`` counts accepted connections, ``open`` those not yet closed.
    """

    def __init__(self, stall: float = 30.0) -> None:
        self.stall = stall
        self.connections = 0
        self.open = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # wakes every handler: they all read
                writer.transport.abort()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        self.open += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            self._handlers.discard(task)
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode().split("?")[0]
        framing, _, ending = path.rsplit("/", 1)[-1].partition("-")
        if framing == "early":
            self._reset(writer)
            return
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        if framing == "chunked":
            writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
            writer.write(b"%x\r\n%s\r\n" % (len(PARTIAL), PARTIAL))
        elif framing == "small":
            writer.write(head + b"Content-Length: %d\r\n\r\n" % SMALL_DECLARED + SMALL_PARTIAL)
        else:
            writer.write(head + b"Content-Length: %d\r\n\r\n" % DECLARED + PARTIAL)
        await writer.drain()
        if ending == "stall":  # send nothing more; return when the proxy hangs up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(), self.stall)
            return
        await asyncio.sleep(0.2)  # let the proxy read and pass on what it got
        if ending == "rst":
            self._reset(writer)
        else:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


WS_FINISHED = web.AppKey("ws_finished", list[str])


def ws_fault_app() -> web.Application:
    """``/ws-abort``: echoes one message, then drops the TCP connection without a close
    frame. ``/ws-echo``: echoes until closed; records when its handler returns."""
    app = web.Application()
    finished: list[str] = []
    app[WS_FINISHED] = finished

    async def abort(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        message = await ws.receive()
        await ws.send_str("echo:" + str(message.data))
        await asyncio.sleep(0.1)
        assert request.transport is not None
        request.transport.abort()
        finished.append("abort")
        return ws

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await ws.send_str("echo:" + message.data)
        finally:
            finished.append("echo")
        return ws

    app.router.add_get("/ws-abort", abort)
    app.router.add_get("/ws-echo", echo)
    return app


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on a free loopback port; returns the runner and its URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    return runner, f"http://{HOST}:{runner.addresses[0][1]}"


class BrowserWebSocket:
    """A raw WebSocket client that closes the way browsers do (RFC 6455 §7.1.1): it answers
    the server's close frame with its own and then waits for the server to close TCP."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, path: str, cookie: str) -> BrowserWebSocket:
        reader, writer = await asyncio.open_connection(HOST, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.transport.abort()
            raise AssertionError(f"WebSocket handshake refused: {head[:200]!r}")
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes) -> None:
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    async def receive(self) -> tuple[int, bytes]:
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first & 0x0F, await self.reader.readexactly(size)

    async def answer_close(self) -> int:
        """Wait for the server's close frame, echo it, wait for TCP EOF; the close code."""
        while True:
            opcode, payload = await self.receive()
            if opcode == 0x8:
                self.send(0x8, payload[:2])
                await self.writer.drain()
                break
        # The server closes TCP now: FIN, or RST when it goes before reading our close frame.
        with contextlib.suppress(ConnectionResetError):
            await self.reader.read()
        self.writer.close()
        return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005

    def abort(self) -> None:
        self.writer.transport.abort()
