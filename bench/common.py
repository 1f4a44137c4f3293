"""Shared pieces of the benchmark harness: processes, ports, the scripted login, RSS."""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
from yarl import URL

HOST = "127.0.0.1"  # every server the harness starts binds here and nowhere else
HTML = {"Accept": "text/html,application/xhtml+xml"}
ROOT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A contender could not be started or signed in: reported in its row, never hidden."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def which(name: str) -> str | None:
    """A binary on PATH or in the sbin directories Debian puts daemons in."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class Procs:
    """Every process the harness starts, each in its own process group, stopped at the end."""

    workdir: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        out: IO[bytes] = log.open("ab")
        try:
            popen = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                     start_new_session=True)
        finally:
            out.close()
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 10.0) -> None:
        """SIGTERM the process group this harness created for `proc`, SIGKILL if it lingers."""
        if proc in self.started:
            self.started.remove(proc)
        pgid = proc.pid  # start_new_session: the group id is the child's own pid
        _killpg(pgid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 3.0  # forked workers follow their leader
        while proc.popen.poll() is not None and _group_alive(pgid) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.popen.poll() is None or _group_alive(pgid):
            _killpg(pgid, signal.SIGKILL)
            proc.popen.wait(timeout=5)

    def stop_all(self) -> None:
        for proc in reversed(list(self.started)):
            self.stop(proc)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_http(url: str, proc: Proc | None = None, *, timeout: float = 30.0,
                    ok: tuple[int, ...] = (200,)) -> None:
    """Poll `url` until it answers one of `ok`; fail early when `proc` has exited."""
    deadline = time.monotonic() + timeout
    last = ""
    async with aiohttp.ClientSession() as client:
        while time.monotonic() < deadline:
            if proc is not None and not proc.alive():
                raise BenchError(f"{proc.name} exited with {proc.popen.returncode}: "
                                 f"{proc.log_tail()}")
            try:
                async with client.get(url, allow_redirects=False) as resp:
                    if resp.status in ok:
                        return
                    last = f"HTTP {resp.status}"
            except aiohttp.ClientError as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.1)
    tail = proc.log_tail() if proc else ""
    raise BenchError(f"{url} not ready after {timeout:.0f}s ({last}) {tail}")


async def sign_in(url: str, user: str) -> str:
    """Browse to `url`, pick `user` on the mock Entra sign-in page, follow the redirects back
    and return the Cookie header value a browser would now send (the contender's session)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(url, headers=HTML) as resp:
            page, page_url = await resp.text(), resp.url
        form = re.search(r'<form[^>]*action="([^"]*)"', page)
        if form is None:
            raise BenchError(f"no sign-in form at {page_url} (HTTP {resp.status}): {page[:200]}")
        fields = {name: html.unescape(value) for name, value in
                  re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}
        fields["user"] = user
        action = page_url.join(URL(html.unescape(form.group(1))))
        async with client.post(action, data=fields, headers=HTML) as resp:
            await resp.read()
            if resp.status != 200 or resp.url.port != URL(url).port:
                raise BenchError(f"sign-in did not come back to {url}: HTTP {resp.status} at "
                                 f"{resp.url}")
        cookies = [f"{c.key}={c.value}" for c in client.cookie_jar if c.value]
    if not cookies:
        raise BenchError(f"signing in at {url} left no session cookie")
    return "; ".join(cookies)


def group_pids(pgid: int) -> list[int]:
    """The live processes of a process group (a proxy's supervisor and its workers)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def rss_kib(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"{field_name} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, needs to own the process or be root)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def python() -> str:
    return sys.executable


def proxy_env() -> dict[str, str]:
    """The environment for child Python processes: the repository importable, no PROXY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env
