"""Soak: a steady, bounded, mixed load against a proxy process, watching its memory and fds.

    make soak                                    # 300 s at 200 operations/s, cookie store
    make soak SOAK_ARGS="--duration 30"
    .venv/bin/python -m bench.soak --store redis --rate 200 --users 20

Everything runs on 127.0.0.1. The proxy runs as its own process (``python -m proxy run``);
the mock Entra ID and the reflecting upstream (tests/echo_upstream.py) run together in a
second process; this process drives the load. ``--store redis`` uses ``--redis-url`` if
given, else starts a throwaway ``redis-server`` (tests/redis_servers.py).

``--users`` virtual users each sign in through the mock's sign-in page (each picks its own
account; dave has 250 groups, so the Graph overage path and chunked cookies are exercised
too), then loop over a weighted mix: authenticated GETs (the upstream's echo is checked for
the user's identity), userinfo, small JSON POSTs, 256 KB downloads, 1 MB uploads (size and
SHA-256 checked), WebSocket sessions (5 messages each) and sign-out followed by a new sign-in.
A shared pacer holds the total at ``--rate`` operations per second (a sign-in is one
operation of three proxy requests).

Every status is counted. Failures: any 5xx, any status an operation does not expect (say a
401 on an authenticated GET: a lost session), any connection error or timeout, any wrong
identity or body. The proxy's VmRSS and open fds are sampled every ``--sample-interval``
seconds; growth is measured from the end of the warm-up (``--warmup``, default a fifth of
the run, at most 60 s) to the end. The summary shows requests by kind, statuses, p50/p99
latency, RSS start/peak/end and growth, fds start/end: under load (the lowest count in the
first and in the last quarter of the samples: the count moves with the connections open at
the instant) and idle (before the load, and after the clients left). Exit status 1
when anything failed or growth passed ``--max-rss-growth-mb`` (30) or ``--max-fd-growth``
(20); 2 when the stack could not be started. Everything started here is stopped on exit,
also on Ctrl-C or SIGTERM.

Not part of ``make test``: a tool of bench/, like the benchmarks (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import HOST, HTML, ROOT, free_port

USERS = ("alice@contoso.example", "bob@contoso.example", "dave@contoso.example")
UPLOAD = os.urandom(1024 * 1024)
UPLOAD_SHA256 = hashlib.sha256(UPLOAD).hexdigest()
DOWNLOAD = 256 * 1024
SMALL = {"items": ["x" * 16] * 50}
WS_MESSAGES = 5
IDLE_WAIT = 40.0  # seconds: upstream keep-alive (30 s, proxy/upstream.py) plus a margin
# Operation weights: what a day of browser and API traffic looks like, roughly.
MIX = {"get": 58, "userinfo": 8, "post": 10, "download": 6, "upload": 4, "websocket": 8,
       "relogin": 6}


class SoakError(Exception):
    """The stack could not be started."""


# --------------------------------------------------------------------------- /proc probes


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise SoakError(f"{name} not in /proc/{pid}/status")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss_kib: int
    fds: int


# --------------------------------------------------------------------------- the backends


def serve_backends(idp_port: int, upstream_port: int) -> None:
    """Child process: the mock Entra ID and the echo upstream until SIGTERM."""
    from proxy.mock_entra import MockEntra, create_app
    from tests import echo_upstream

    async def main() -> None:
        runners = []
        for app, port in ((create_app(MockEntra()), idp_port),
                          (echo_upstream.create_app(), upstream_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, HOST, port).start()
            runners.append(runner)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for runner in runners:
            await runner.cleanup()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(main())


# --------------------------------------------------------------------------- the stack


def _die_with_parent() -> None:
    """In the proxy's child process: get SIGTERM if this harness dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def proxy_toml(port: int, idp: str, upstream: str, store: str, redis_url: str) -> str:
    from tests.support.proxy_toml import proxy_config, to_toml  # the suite's one writer

    session: dict[str, Any] = {"secret": secrets.token_urlsafe(32), "store": store}
    if store == "redis":
        session["redis_url"] = redis_url
    return to_toml(proxy_config(port, idp, upstream, {
        "server": {"drain_timeout": "10s"}, "session": session}))


class Stack:
    """Backends process + (optional) redis-server + proxy process; `stop()` undoes all."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.idp_port, self.upstream_port = free_port(), free_port()
        self.backends: multiprocessing.process.BaseProcess | None = None
        self.redis: Any = None
        self.proxy: subprocess.Popen[bytes] | None = None
        self.log = workdir / "proxy.log"

    @property
    def pid(self) -> int:
        assert self.proxy is not None
        return self.proxy.pid

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.backends = context.Process(target=serve_backends,
                                        args=(self.idp_port, self.upstream_port), daemon=True)
        self.backends.start()
        redis_url = ""
        if self.args.store == "redis":
            redis_url = self.args.redis_url or await asyncio.to_thread(self._start_redis)
        config = self.workdir / "proxy.toml"
        config.write_text(proxy_toml(self.port, f"http://{HOST}:{self.idp_port}",
                                     f"http://{HOST}:{self.upstream_port}", self.args.store,
                                     redis_url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
        with self.log.open("w") as log:
            self.proxy = subprocess.Popen(
                [sys.executable, "-m", "proxy", "run", "-c", str(config)], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_die_with_parent)
        await self._wait_ready()

    def _start_redis(self) -> str:
        from tests.redis_servers import RedisServer

        self.redis = RedisServer(self.workdir / "redis")
        self.redis.start()
        return str(self.redis.url)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as client:
            while time.monotonic() < deadline:
                assert self.proxy is not None
                if self.proxy.poll() is not None:
                    raise SoakError(f"the proxy exited with {self.proxy.returncode}:\n"
                                    + self.log_tail())
                with contextlib.suppress(aiohttp.ClientError):
                    async with client.get(self.url + "/ready") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise SoakError("the proxy was not ready within 30 s:\n" + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> int | None:
        """Stop all of it; the proxy's exit status (None if it had to be killed)."""
        code: int | None = None
        if self.proxy is not None:
            if self.proxy.poll() is None:
                self.proxy.send_signal(signal.SIGTERM)
            try:
                code = self.proxy.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait(timeout=10)
        if self.backends is not None and self.backends.pid is not None:
            if self.backends.is_alive():
                os.kill(self.backends.pid, signal.SIGTERM)
            self.backends.join(timeout=10)
            if self.backends.is_alive():
                self.backends.kill()
                self.backends.join(timeout=5)
        if self.redis is not None:
            self.redis.stop()
        return code


# --------------------------------------------------------------------------- the load


@dataclass
class Results:
    ops: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def status(self, kind: str, status: int, expected: Sequence[int]) -> bool:
        self.statuses[status] += 1
        self.by_kind[kind][status] += 1
        if status >= 500:
            self.fail(f"5xx on {kind}", f"{kind}: HTTP {status}")
            return False
        if status not in expected:
            self.fail(f"unexpected {status} on {kind}", f"{kind}: HTTP {status}")
            return False
        return True

    def fail(self, what: str, example: str) -> None:
        self.failures[what] += 1
        if len(self.examples) < 20:
            self.examples.append(example)

    @property
    def five_xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


class Pacer:
    """Hands out start times `1/rate` apart to all users together."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class User:
    def __init__(self, n: int, url: str, results: Results) -> None:
        self.n = n
        self.name = USERS[n % len(USERS)]
        self.url = url
        self.results = results
        self.client = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.client.close()

    async def _status(self, kind: str, method: str, url: str,
                      expected: Sequence[int] = (200,), **kwargs: Any) -> tuple[bool, Any]:
        kwargs.setdefault("allow_redirects", False)
        async with self.client.request(method, url, **kwargs) as resp:
            body = await resp.read()
            ok = self.results.status(kind, resp.status, expected)
            if ok and resp.content_type == "application/json":
                return True, json.loads(body)
            return ok, resp.headers.get("Location", "") if resp.status == 302 else body

    async def login(self) -> None:
        ok, authorize = await self._status("login", "GET", f"{self.url}/home/{self.n}",
                                           (302,), headers=HTML)
        if not ok:
            return
        # The mock's account picker: POST the authorize request with the chosen account.
        async with self.client.post(authorize, data={"user": self.name},
                                    allow_redirects=False) as resp:
            await resp.read()
            callback = resp.headers.get("Location", "")
            if resp.status != 302 or "/callback/" not in callback:
                self.results.fail("mock sign-in", f"mock authorize: HTTP {resp.status}")
                return
        ok, target = await self._status("login", "GET", callback, (302,), headers=HTML)
        if ok:
            await self._status("login", "GET", self.url + target, (200,), headers=HTML)

    async def get(self) -> None:
        ok, body = await self._status("get", "GET", f"{self.url}/api/items/{self.n}?q=1")
        if ok:
            user = {k.lower(): v for k, v in body["headers"].items()}.get("x-forwarded-user")
            if user != [self.name]:
                self.results.fail("wrong identity", f"get as {self.name}: upstream saw {user}")

    async def userinfo(self) -> None:
        ok, body = await self._status("userinfo", "GET", f"{self.url}/oauth2/userinfo")
        if ok and body.get("preferred_username") != self.name:
            self.results.fail("wrong identity", f"userinfo as {self.name}: {body}")

    async def post(self) -> None:
        ok, body = await self._status("post", "POST", f"{self.url}/api/items", json=SMALL)
        if ok and body["body_size"] != len(json.dumps(SMALL)):
            self.results.fail("wrong body", f"post: upstream got {body['body_size']} bytes")

    async def upload(self) -> None:
        ok, body = await self._status("upload", "POST", f"{self.url}/upload", data=UPLOAD,
                                      headers={"Content-Type": "application/octet-stream"})
        if ok and (body["body_size"], body["body_sha256"]) != (len(UPLOAD), UPLOAD_SHA256):
            self.results.fail("wrong body", f"upload: upstream got {body['body_size']} bytes")

    async def download(self) -> None:
        ok, body = await self._status("download", "GET", f"{self.url}/download/{DOWNLOAD}")
        if ok and len(body) != DOWNLOAD:
            self.results.fail("wrong body", f"download: {len(body)} bytes")

    async def websocket(self) -> None:
        try:
            ws = await self.client.ws_connect(self.url.replace("http", "ws", 1) + "/ws",
                                              protocols=("chat",))
        except aiohttp.WSServerHandshakeError as exc:
            self.results.status("websocket", exc.status, (101,))
            return
        async with ws:
            self.results.status("websocket", 101, (101,))
            for i in range(WS_MESSAGES):
                await ws.send_str(f"m{i}")
                reply = await ws.receive_str(timeout=10)
                if reply != f"echo:m{i}":
                    self.results.fail("wrong body", f"websocket: {reply!r}")
                    return

    async def relogin(self) -> None:
        await self._status("signout", "GET", f"{self.url}/oauth2/sign_out")
        await self.login()

    async def run(self, pacer: Pacer, until: float) -> None:
        kinds, weights = list(MIX), list(MIX.values())
        rng = random.Random(self.n)
        await pacer.wait()
        await self.timed("login", self.login)
        while time.monotonic() < until:
            await pacer.wait()
            kind = rng.choices(kinds, weights)[0]
            await self.timed(kind, getattr(self, kind))

    async def timed(self, kind: str, operation: Callable[[], Awaitable[None]]) -> None:
        started = time.monotonic()
        try:
            await operation()
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            self.results.fail(f"{type(exc).__name__} on {kind}", f"{kind}: {exc!r}"[:200])
        self.results.ops[kind] += 1
        self.results.latency[kind].append(time.monotonic() - started)


async def sampler(pid: int, started: float, samples: list[Sample], interval: float,
                  stop: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(OSError):
            samples.append(Sample(time.monotonic() - started, status_kib(pid, "VmRSS"),
                                  open_fds(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
            return


# --------------------------------------------------------------------------- the report


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def slope_mb_per_min(samples: list[Sample]) -> float:
    if len(samples) < 3:
        return 0.0
    xs = [s.at for s in samples]
    ys = [s.rss_kib / 1024 for s in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var * 60


@dataclass
class Verdict:
    lines: list[str]
    passed: bool


def report(args: argparse.Namespace, results: Results, samples: list[Sample], elapsed: float,
           idle_before: int, idle: tuple[int, float], proxy_exit: int | None) -> Verdict:
    idle_after, idle_waited = idle
    out: list[str] = []
    total_ops = sum(results.ops.values())
    out.append(f"soak: {elapsed:.0f} s, {args.users} users, store={args.store}, target "
               f"{args.rate:g} ops/s, achieved {total_ops / max(elapsed, 1e-9):.1f} ops/s "
               f"({total_ops} operations, {sum(results.statuses.values())} proxy requests)")
    if total_ops < 0.9 * args.rate * elapsed:
        out.append("note: below the target rate: the proxy (or this machine) could not keep up "
                   "with --users sequential users; latencies below include that queueing")
    out.append("")
    out.append(f"{'operation':<10} {'count':>7} {'p50 ms':>8} {'p99 ms':>8}   statuses")
    all_latencies: list[float] = []
    for kind in [*MIX, "login"]:
        lat = results.latency.get(kind, [])
        all_latencies += lat
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(
            results.by_kind.get(kind, Counter()).items()))
        if kind == "relogin":
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(
                results.by_kind.get("signout", Counter()).items())) + " (sign-out)"
        out.append(f"{kind:<10} {results.ops.get(kind, 0):>7} "
                   f"{percentile(lat, 0.5) * 1000:>8.1f} {percentile(lat, 0.99) * 1000:>8.1f}"
                   f"   {statuses}")
    out.append(f"{'all':<10} {total_ops:>7} {percentile(all_latencies, 0.5) * 1000:>8.1f} "
               f"{percentile(all_latencies, 0.99) * 1000:>8.1f}   "
               + ", ".join(f"{s}: {n}" for s, n in sorted(results.statuses.items())))
    out.append("")
    passed = True
    failures = sum(results.failures.values())
    out.append(f"5xx: {results.five_xx}   other failures: {failures - results.five_xx}")
    for what, n in results.failures.most_common():
        out.append(f"  {n:>6}  {what}")
    for example in results.examples[:10]:
        out.append(f"          e.g. {example}")
    if failures:
        passed = False

    warm = [s for s in samples if s.at >= args.warmup] or samples[-1:]
    if warm:
        start, end = warm[0], samples[-1]
        peak = max(s.rss_kib for s in samples)
        growth_mb = (end.rss_kib - start.rss_kib) / 1024
        # Under load the count moves with the connections open at that instant: compare the
        # floors of the first and last quarter of the samples after the warm-up.
        window = max(1, len(warm) // 4)
        floor_start = min(s.fds for s in warm[:window])
        floor_end = min(s.fds for s in warm[-window:])
        fd_growth = floor_end - floor_start
        idle_growth = idle_after - idle_before
        out.append(f"RSS MB (after {args.warmup:g} s warm-up): start {start.rss_kib / 1024:.1f}, "
                   f"peak {peak / 1024:.1f}, end {end.rss_kib / 1024:.1f}, growth "
                   f"{growth_mb:+.1f} MB (trend {slope_mb_per_min(warm):+.2f} MB/min; first "
                   f"sample {samples[0].rss_kib / 1024:.1f})")
        out.append(f"fds under load: start {start.fds}, end {end.fds}, floor {floor_start} -> "
                   f"{floor_end} ({fd_growth:+d}); idle: "
                   f"before {idle_before}, after {idle_after} ({idle_growth:+d}, "
                   f"{idle_waited:.0f} s after the last client left)")
        if growth_mb > args.max_rss_growth_mb:
            out.append(f"FAIL: RSS grew {growth_mb:.1f} MB (limit {args.max_rss_growth_mb:g})")
            passed = False
        if max(fd_growth, idle_growth) > args.max_fd_growth:
            out.append(f"FAIL: open fds grew by {max(fd_growth, idle_growth)} "
                       f"(limit {args.max_fd_growth})")
            passed = False
    else:
        out.append("no RSS/fd samples were taken")
        passed = False
    out.append(f"proxy exit status after SIGTERM: {proxy_exit}")
    if proxy_exit != 0:
        passed = False
    out.append("result: " + ("PASS" if passed else "FAIL"))
    return Verdict(out, passed)


# --------------------------------------------------------------------------- main


async def soak(args: argparse.Namespace, workdir: Path) -> Verdict:
    stack = Stack(args, workdir)
    users: list[User] = []
    try:
        await stack.start()
        await asyncio.sleep(1)
        idle_before = open_fds(stack.pid)
        results = Results()
        samples: list[Sample] = []
        users = [User(n, stack.url, results) for n in range(args.users)]
        started = time.monotonic()
        until = started + args.duration
        stop = asyncio.Event()
        probe = asyncio.ensure_future(sampler(stack.pid, started, samples,
                                              args.sample_interval, stop))
        progress = asyncio.ensure_future(print_progress(results, samples, started, until))
        pacer = Pacer(args.rate)
        await asyncio.gather(*[user.run(pacer, until) for user in users])
        elapsed = time.monotonic() - started
        stop.set()
        await probe
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        # Under-load figures are in; now the idle ones, after every client has gone.
        for user in users:
            await user.close()
        users = []
        idle = await idle_fds(stack.pid, idle_before + args.max_fd_growth // 4)
        proxy_exit = await asyncio.to_thread(stack.stop)
        verdict = report(args, results, samples, elapsed, idle_before, idle, proxy_exit)
        if not verdict.passed:
            verdict.lines.append("last proxy log lines:\n" + stack.log_tail())
        return verdict
    finally:
        for user in users:
            await user.close()
        await asyncio.to_thread(stack.stop)


async def idle_fds(pid: int, target: int) -> tuple[int, float]:
    """Open fds once the clients are gone: polled until <= target or IDLE_WAIT seconds (the
    proxy's pooled upstream connections close after 30 s idle); the count and when."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(1)
        fds, waited = open_fds(pid), time.monotonic() - started
        if fds <= target or waited > IDLE_WAIT:
            return fds, waited


async def print_progress(results: Results, samples: list[Sample], started: float,
                         until: float) -> None:
    while True:
        await asyncio.sleep(15)
        last = samples[-1] if samples else None
        figures = (f"RSS {last.rss_kib / 1024:.1f} MB, {last.fds} fds" if last else "")
        print(f"  {time.monotonic() - started:5.0f}/{until - started:.0f} s: "
              f"{sum(results.ops.values())} ops, {results.five_xx} 5xx, "
              f"{sum(results.failures.values())} failures; {figures}", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=300, help="seconds of load (300)")
    p.add_argument("--rate", type=float, default=200, help="operations per second (200)")
    p.add_argument("--users", type=int, default=20, help="virtual users (20)")
    p.add_argument("--store", choices=("cookie", "redis"), default="cookie")
    p.add_argument("--redis-url", default="", help="use this Redis instead of starting one")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds before the RSS/fd baseline (a fifth of --duration, max 60)")
    p.add_argument("--sample-interval", type=float, default=2.0, help="seconds (2)")
    p.add_argument("--max-rss-growth-mb", type=float, default=30.0)
    p.add_argument("--max-fd-growth", type=int, default=20)
    p.add_argument("--keep", metavar="DIR", help="copy the proxy's config and log here")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(60.0, args.duration / 5)
    if args.duration <= 0 or args.rate <= 0 or args.users <= 0:
        p.error("--duration, --rate and --users must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"soak: {args.duration:g} s at {args.rate:g} ops/s, {args.users} users, "
          f"store={args.store} (warm-up {args.warmup:g} s)", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="azp-soak-"))

    async def run() -> Verdict:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await soak(args, workdir)

    try:
        verdict = asyncio.run(run())
    except SoakError as exc:
        print(f"soak: could not start the stack: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            for name in ("proxy.toml", "proxy.log"):
                with contextlib.suppress(OSError):
                    shutil.copy(workdir / name, Path(args.keep) / name)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(verdict.lines), flush=True)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
