"""The benchmark harness: azure-auth-proxy against Apache + mod_auth_openidc and plain nginx.

Everything runs on 127.0.0.1: the mock Entra ID, a fast upstream (nginx returning a fixed
body), nginx as a plain reverse proxy, Apache + mod_auth_openidc, and the proxy with the
cookie and Redis stores at 1 and 2 workers, each signed in through the real login flow
(the mock's sign-in page) before wrk drives it. Then a streamed upload and download, idle
WebSockets and the session-check micro-benchmark. Prints a table, writes results.md and a
PNG chart, and stops everything it started, also on failure or SIGTERM.

    python -m bench.run              # full run (`make bench`), writes bench/results.md + .png
    python -m bench.run --smoke      # 1 s runs, tiny sizes (`make bench-smoke`, the test)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import aiohttp

from . import report as rpt
from . import stream, ws_idle
from .common import (
    HOST,
    HTML,
    ROOT,
    BenchError,
    Proc,
    Procs,
    free_port,
    group_pids,
    python,
    which,
)
from .load import run_load, wrk_available
from .memory import GroupMemory, peak_memory
from .report import Extra, Report, Row
from .servers import (
    WORKERS_UNSUPPORTED,
    Stack,
    WorkersUnsupported,
    apache_available,
    redis_answers,
)

GROUPS = ("nginx", "apache", "proxy-cookie", "proxy-redis", "workers2", "routes", "stream",
          "ws", "session")
ROUTE_COUNTS = (1, 100, 1000)
MIB = 1 << 20


@dataclass
class Settings:
    smoke: bool
    seconds: float
    repeat: int
    warmup: float
    connections: int
    threads: int
    stream_bytes: int
    ws_count: int
    session_iterations: int
    only: frozenset[str]
    out: Path | None
    command: str


@dataclass(frozen=True)
class Expect:
    """What one request must get before its load run counts: the right answer, not a fast
    wrong one (a 302 to sign-in instead of the upstream's body would look very quick)."""

    status: int
    body: str | None = None
    header: str | None = None
    location_prefix: str | None = None


@dataclass
class RedisInfo:
    url: str = ""
    note: str = ""
    shared: bool = False  # the machine's Redis: remove our keys after


@dataclass
class Run:
    settings: Settings
    procs: Procs
    report: Report = field(default_factory=Report)
    redis: RedisInfo = field(default_factory=RedisInfo)

    def progress(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    async def check_once(self, url: str, headers: dict[str, str], expect: Expect) -> None:
        async with aiohttp.ClientSession() as client, \
                client.get(url, headers=headers, allow_redirects=False) as resp:
            body = await resp.text(errors="replace")
        problems = []
        if resp.status != expect.status:
            problems.append(f"HTTP {resp.status}, expected {expect.status}")
        if expect.body is not None and expect.body not in body:
            problems.append(f"body {body[:80]!r} lacks {expect.body!r}")
        if expect.header is not None and expect.header not in resp.headers:
            problems.append(f"no {expect.header} header")
        location = resp.headers.get("Location", "")
        if expect.location_prefix is not None and not location.startswith(expect.location_prefix):
            problems.append(f"Location {location[:80]!r}")
        if problems:
            raise BenchError(f"GET {url}: " + "; ".join(problems))

    async def measure(self, scenario: str, contender: str, label: str, url: str,
                      headers: dict[str, str], expect: Expect, proc: Proc | None = None) -> None:
        row = Row(scenario, contender, label)
        self.report.rows.append(row)
        s = self.settings
        try:
            await self.check_once(url, headers, expect)
            if s.warmup:
                await run_load(url, headers, connections=s.connections, seconds=s.warmup,
                               threads=s.threads, workdir=self.procs.workdir)
            runs = []
            watched = proc.pid if proc is not None and scenario == "get" else None
            async with (peak_memory(watched) if watched else contextlib.nullcontext()) as mem:
                for _ in range(s.repeat):
                    runs.append(await run_load(url, headers, connections=s.connections,
                                               seconds=s.seconds, threads=s.threads,
                                               workdir=self.procs.workdir))
                    if proc is not None and not proc.alive():
                        raise BenchError(f"{proc.name} died under load: {proc.log_tail()}")
            if mem is not None:
                self.memory(label, mem)
            await self.check_once(url, headers, expect)  # still the right answer after
        except BenchError as exc:
            row.note = f"failed: {exc}"
            self.report.failures.append(f"{label}, {scenario}: {exc}")
            self.progress(f"{label} {scenario}: FAILED {exc}")
            return
        runs.sort(key=lambda r: r.rps)
        result = runs[len(runs) // 2]  # the median run, with its own latencies
        row.result = result
        row.runs = [r.rps for r in runs]
        for r in runs:
            if r.suspicious():
                self.report.failures.append(f"{label}, {scenario}: {r.errors_text} errors in "
                                            f"{r.requests} requests")
        spread = f"  (runs {', '.join(f'{r.rps:,.0f}' for r in runs)})" if len(runs) > 1 else ""
        self.progress(f"{label:<36} {scenario:<8} {result.rps:>9,.0f} req/s  "
                      f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                      f"errors {result.errors_text}{spread}")

    def memory(self, label: str, mem: GroupMemory) -> None:
        """The process group's peak memory under the GET load; a supervisor's own target."""
        supervised = label.startswith("azure-auth-proxy") and mem.processes > 1
        self.report.extras.append(Extra(
            f"memory under the GET load: {label}", mem.describe(),
            reference="peak of 0.5 s samples; PSS shares common pages among the processes",
            target="supervisor ≤ 25 MiB RSS" if supervised else "",
            met=mem.leader_rss_kib <= 25 * 1024 if supervised else None))
        self.progress(f"{label:<36} memory   {mem.describe()}")

    def skip(self, contender: str, label: str, note: str, scenarios: tuple[str, ...]) -> None:
        for scenario in scenarios:
            self.report.rows.append(Row(scenario, contender, label, note=note))


def wanted(run: Run, group: str) -> bool:
    return group in run.settings.only


async def bench_load(run: Run, stack: Stack) -> None:
    _, upstream, upstream_kind = await stack.start_fast_upstream()
    run.report.notes.append(
        f"Upstream: {upstream_kind} on {HOST}, every GET answered `200 hello\\n` (6 bytes), "
        "worker_processes auto, no access log. Every contender proxies to it.")
    if wanted(run, "nginx"):  # the upstream alone: the ceiling of every row below
        await run.measure("get", "upstream", f"upstream {upstream_kind.split()[0]} (direct)",
                          upstream + "/bench", {}, Expect(200, body="hello"))
        await bench_nginx(run, stack, upstream)
    if wanted(run, "apache"):
        await bench_apache(run, stack, upstream)
    for store in ("cookie", "redis"):
        if not wanted(run, f"proxy-{store}"):
            continue
        for workers in (1, 2):
            if workers == 2 and not wanted(run, "workers2"):
                continue
            await bench_proxy(run, stack, upstream, store, workers)
    if wanted(run, "routes"):
        await bench_routes(run, stack, upstream)


async def bench_nginx(run: Run, stack: Stack, upstream: str) -> None:
    label = "nginx (plain reverse proxy)"
    if which("nginx") is None:
        run.skip("nginx", label, "skipped: nginx not installed (make bench installs it)",
                 ("get", "redirect", "auth"))
        return
    proc, url = await stack.start_plain_nginx(upstream)
    run.report.notes.append(
        "nginx (plain reverse proxy, no authentication): worker_processes auto, "
        "keep-alive pool of 128 to the upstream, no access log. Redirect row: "
        "`return 302` to the mock's URL; forward-auth row: `return 202`. These are the "
        "ceilings for each shape of answer, with no identity work at all.")
    try:
        await run.measure("get", "nginx", label, url + "/bench", {}, Expect(200, body="hello"),
                          proc)
        await run.measure("redirect", "nginx", "nginx (return 302)", url + "/redirect", HTML,
                          Expect(302, location_prefix=stack.mock), proc)
        await run.measure("auth", "nginx", "nginx (return 202)", url + "/auth-check", {},
                          Expect(202), proc)
    finally:
        stack.stop(proc)


async def bench_apache(run: Run, stack: Stack, upstream: str) -> None:
    label = "Apache + mod_auth_openidc"
    if not apache_available():
        run.skip("apache", label, "skipped: apache2 / libapache2-mod-auth-openidc not "
                 "installed (make bench installs them)", ("get", "redirect", "auth"))
        return
    try:
        proc, url, cookie = await stack.start_apache(upstream)
    except BenchError as exc:
        run.report.failures.append(f"{label}: {exc}")
        run.skip("apache", label, f"failed: {exc}", ("get", "redirect", "auth"))
        return
    run.report.notes.append(
        f"Apache + mod_auth_openidc ({_versions().get('apache', '?')}, mod_auth_openidc "
        f"{_versions().get('mod_auth_openidc', '?')}): mpm_event, ThreadsPerChild 25, "
        "MaxRequestWorkers 150 (Debian's), StartServers 3 and MaxSpareThreads 150 so the pool "
        "never shrinks mid-run (Debian's 75 made it kill children and drop keep-alive "
        "connections), unlimited keep-alive requests, no access log; "
        "`OIDCSessionType server-cache` with the default shm cache, `OIDCPKCEMethod S256`, "
        "`OIDCPassClaimsAs headers`, "
        "`OIDCSSLValidateServer Off`; `OIDCProviderMetadataURL` and `OIDCRedirectURI` are "
        "plain http on 127.0.0.1: mod_auth_openidc accepts them with a startup warning "
        "(\"SHOULD be https\"), nothing else was needed. Signed in through the mock's sign-in "
        "page with its own app registration; wrk sends the `mod_auth_openidc_session` "
        "cookie. Redirect row: the same location without the cookie; forward-auth row: "
        "a static file behind the same `Require valid-user` (the check without the "
        "upstream hop).")
    headers = {"Cookie": cookie}
    try:
        await run.measure("get", "apache", label, url + "/bench", headers,
                          Expect(200, body="hello"), proc)
        await run.measure("redirect", "apache", label, url + "/bench", HTML,
                          Expect(302, location_prefix=stack.mock), proc)
        await run.measure("auth", "apache", label + " (static file)", url + "/auth", headers,
                          Expect(200, body="ok"), proc)
    finally:
        stack.stop(proc)


async def bench_proxy(run: Run, stack: Stack, upstream: str, store: str, workers: int) -> None:
    label = f"azure-auth-proxy {store}, {workers} worker{'s' if workers > 1 else ''}"
    contender = f"proxy-{store}-{workers}w"
    scenarios = ("get", "redirect", "auth") if store == "cookie" else ("get", "auth")
    if store == "redis" and not run.redis.url:
        run.skip(contender, label, f"skipped: {run.redis.note}", scenarios)
        return
    try:
        handle = await stack.start_proxy(contender, upstream=upstream, store=store,
                                         workers=workers, redis_url=run.redis.url)
    except WorkersUnsupported:
        run.skip(contender, label, WORKERS_UNSUPPORTED, scenarios)
        run.progress(f"{label}: {WORKERS_UNSUPPORTED}")
        return
    except BenchError as exc:
        run.report.failures.append(f"{label}: {exc}")
        run.skip(contender, label, f"failed: {exc}", scenarios)
        return
    processes = len(group_pids(handle.proc.pid))
    run.report.notes.append(f"{label}: {processes} process{'es' if processes > 1 else ''} in "
                            "its process group" + (" (supervisor, workers and helpers)"
                                                   if workers > 1 else ""))
    try:
        cookie = {"Cookie": handle.cookie}
        await run.measure("get", contender, label, handle.url + "/bench", cookie,
                          Expect(200, body="hello"), handle.proc)
        if "redirect" in scenarios:
            await run.measure("redirect", contender, label, handle.url + "/bench", HTML,
                              Expect(302, location_prefix=stack.mock), handle.proc)
        await run.measure("auth", contender, label, handle.url + "/oauth2/auth", cookie,
                          Expect(202, header="X-Auth-Request-User"), handle.proc)
    finally:
        stack.stop(handle.proc)


async def bench_routes(run: Run, stack: Stack, upstream: str) -> None:
    """The same public GET with 1, 100 and 1,000 routes in the table (issue 16 item 10): the
    route index must make a central gateway's size free."""
    rates: dict[int, float] = {}
    for count in ROUTE_COUNTS:
        label = f"azure-auth-proxy, {count:,} route{'s' if count > 1 else ''}"
        contender = f"proxy-routes-{count}"
        try:
            handle = await stack.start_proxy(contender, upstream=upstream, routes=count)
        except BenchError as exc:
            run.report.failures.append(f"{label}: {exc}")
            run.skip(contender, label, f"failed: {exc}", ("routes",))
            continue
        try:
            await run.measure("routes", contender, label, handle.url + "/public/bench", {},
                              Expect(200, body="hello"), handle.proc)
        finally:
            stack.stop(handle.proc)
        result = run.report.ref("routes", contender)
        if result is not None:
            rates[count] = result.rps
    run.report.notes.append(
        "Route-table rows: the cookie store, 1 worker, a public path (`^/public/`) of the "
        "host-less `/` route, behind 0, 99 or 999 other public routes (half `host = "
        "\"appN.gateway.test\"`, half `path = \"/appN\"`).")
    if 1 in rates:
        for count in ROUTE_COUNTS[1:]:
            if count in rates:
                ratio = rates[count] / rates[1]
                run.report.extras.append(Extra(
                    f"public GET: {count:,} routes vs 1 route", f"{ratio:.2f}× req/s", "",
                    "≥ 0.95× (within 5%)", ratio >= 0.95))


async def bench_stream(run: Run, stack: Stack, upstream: str) -> None:
    size = run.settings.stream_bytes
    handle = await stack.start_proxy("proxy-stream", upstream=upstream)
    try:
        transfers = await stream.measure(handle, upstream, size, run.procs.workdir)
    finally:
        stack.stop(handle.proc)
    direct = {t.direction: t for t in transfers if t.via == "direct"}
    client = "curl" if shutil.which("curl") else "aiohttp"
    for t in transfers:
        if t.via != "proxy":
            continue
        growth = (t.peak_growth_kib or 0) / 1024
        peak = (t.peak_kib or 0) / 1024
        ref = direct[t.direction]
        run.report.extras.append(Extra(
            f"{size // MIB} MiB streamed {t.direction} through the proxy",
            f"{t.mb_per_s:,.0f} MB/s; proxy peak RSS +{growth:.1f} MiB ({peak:.0f} MiB)",
            f"direct to the upstream: {ref.mb_per_s:,.0f} MB/s",
            "≥ 200 MB/s, peak RSS growth ≤ 30 MB",
            t.mb_per_s >= 200 and growth * MIB / 1e6 <= 30 if not run.settings.smoke else None))
        run.progress(f"stream {t.direction}: {t.mb_per_s:,.0f} MB/s (direct "
                     f"{ref.mb_per_s:,.0f}), peak RSS +{growth:.1f} MiB")
    run.report.notes.append(
        f"Streaming: cookie store, 1 worker, in front of bench/upstream.py (aiohttp: discards "
        f"uploads as they arrive, generates downloads from a 1 MiB buffer); client {client} "
        "(upload: PUT from a sparse file with Content-Length; download to /dev/null). Peak RSS "
        "is VmHWM from /proc/<pid>/status, reset through /proc/<pid>/clear_refs before each "
        "transfer, minus VmRSS just before. MB/s are 10^6 bytes per second.")


async def bench_ws(run: Run, stack: Stack, upstream: str) -> None:
    count = run.settings.ws_count
    handle = await stack.start_proxy("proxy-ws", upstream=upstream)
    try:
        result = await ws_idle.measure(handle, count, settle=0.5 if run.settings.smoke else 3.0)
    finally:
        stack.stop(handle.proc)
    growth_mb = (result.open_kib - result.idle_kib) * 1024 / 1e6
    run.report.extras.append(Extra(
        f"{count:,} concurrent idle WebSockets",
        f"proxy RSS +{result.growth_mib:.1f} MiB ({result.per_socket_kib:.1f} KiB each)",
        f"{result.idle_kib / 1024:.0f} MiB idle → {result.open_kib / 1024:.0f} MiB",
        "≤ 60 MB above idle (1,000 sockets)",
        growth_mb <= 60 if count >= 1000 else None))
    run.progress(f"{count} idle WebSockets: +{result.growth_mib:.1f} MiB")
    run.report.notes.append(
        "WebSockets: cookie store, 1 worker, upstream bench/upstream.py; each socket carries the "
        "session cookie and proves one echo before idling; RSS is the proxy's VmRSS.")


async def bench_session(run: Run) -> None:
    iterations = run.settings.session_iterations
    argv = [python(), "-m", "bench.session_check", "--json", "--iterations", str(iterations)]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                   cwd=ROOT, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"session_check failed: {done.stderr.strip()[-300:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    run.report.extras.append(Extra(
        "session check (cookie decode + verify + identity headers)",
        f"{data['best_us']:.1f} µs/op (median of runs {data['median_us']:.1f})",
        f"cookie {data['cookie_bytes']} B, {data['headers']} headers",
        "≤ 30 µs", data["best_us"] <= 30 if not run.settings.smoke else None))
    run.progress(f"session check: {data['best_us']:.1f} µs/op")


def setup_redis(run: Run) -> None:
    if not (wanted(run, "proxy-redis")):
        return
    if redis_answers(HOST, 6379):
        run.redis = RedisInfo("redis://127.0.0.1:6379/14",
                              "the machine's Redis on 127.0.0.1:6379, db 14 (the bench's azp:* "
                              "keys are deleted at the end)", shared=True)
        return
    server = which("redis-server")
    if server is None:
        run.redis = RedisInfo(note="no Redis on 127.0.0.1:6379 and no redis-server binary")
        return
    port = free_port()
    proc = run.procs.start("redis", [server, "--port", str(port), "--bind", HOST, "--save", "",
                                     "--appendonly", "no", "--daemonize", "no"])
    deadline = time.monotonic() + 10
    while not redis_answers(HOST, port):
        if time.monotonic() > deadline or not proc.alive():
            run.redis = RedisInfo(note=f"redis-server did not start: {proc.log_tail()}")
            return
        time.sleep(0.05)
    run.redis = RedisInfo(f"redis://127.0.0.1:{port}/0",
                          f"a throwaway redis-server on 127.0.0.1:{port} (no persistence)")


def cleanup_redis(info: RedisInfo) -> None:
    """Remove the sessions the bench wrote to the machine's Redis (db 14, keys azp:*)."""
    if not info.shared:
        return
    try:
        import redis

        client = redis.Redis.from_url(info.url, socket_timeout=2)
        keys = list(client.scan_iter("azp:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    except Exception as exc:  # noqa: BLE001 - cleanup must never hide the results
        print(f"[bench] could not clean Redis db 14: {exc}", file=sys.stderr)


_VERSIONS: dict[str, str] = {}


def _versions() -> dict[str, str]:
    if _VERSIONS:
        return _VERSIONS

    def out(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return (done.stdout + done.stderr).strip()

    if which("nginx"):
        _VERSIONS["nginx"] = out([which("nginx") or "nginx", "-v"]).split("/")[-1]
    if which("apache2"):
        first = out([which("apache2") or "apache2", "-v"]).splitlines()
        _VERSIONS["apache"] = first[0].split(": ")[-1] if first else "?"
    if which("dpkg-query"):
        _VERSIONS["mod_auth_openidc"] = out(["dpkg-query", "-W", "-f=${Version}",
                                             "libapache2-mod-auth-openidc"])
    if which("wrk"):
        _VERSIONS["wrk"] = out(["wrk", "-v"]).splitlines()[0].split(" [")[0]
    _VERSIONS["python"] = platform.python_version()
    _VERSIONS["aiohttp"] = aiohttp.__version__
    return _VERSIONS


def environment_notes(run: Run) -> None:
    s = run.settings
    v = _versions()
    load_tool = (f"{v.get('wrk', 'wrk')} -t{s.threads} -c{s.connections} "
                 f"-d{max(1, round(s.seconds))}s --timeout 5s, with a Lua done() hook "
                 "printing exact p50/p99" if wrk_available() else
                 f"the harness's Python load generator ({s.connections} keep-alive clients, "
                 "closed loop) because wrk is not installed: its req/s are a floor, not a "
                 "measurement of the server")
    run.report.notes[:0] = [
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {v['python']}, "
        f"aiohttp {v['aiohttp']}. The load generator, the contender and the upstream share "
        f"these {os.cpu_count()} cores, so every figure includes that contention (wrk alone "
        "takes most of a core at these rates); compare ratios, not absolute numbers.",
        f"Load: {load_tool}; "
        + (f"a {s.warmup:.0f} s warm-up run, then {s.repeat} measured runs per row: the table "
           "shows the run with the median req/s (its own p50/p99), the spread column the "
           "lowest and highest req/s of the runs; " if s.repeat > 1 else "")
        + (f"a {s.warmup:.0f} s warm-up run precedes the measured run; "
           if s.warmup and s.repeat == 1 else "")
        + "one request before and after each run must get the right answer (upstream body, "
        "302 to the mock Entra ID, 202/200), so a fast wrong answer cannot count.",
        f"Identity provider: the project's mock Entra ID (bench/mock_idp.py) on {HOST}; "
        "every contender was signed in as alice@contoso.example by scripting its sign-in page "
        "(bench/common.py sign_in), and wrk replays the resulting session cookie.",
        "azure-auth-proxy: `azure-auth-proxy run` as its own process, log_level warning, "
        "default identity headers and X-Auth-Assertion (one EC P-256 key file shared by the "
        "workers); redirect row: GET with `Accept: text/html` and no cookie; forward-auth row: "
        "GET /oauth2/auth with the session cookie (202 + X-Auth-Request-* headers). Redis: "
        + (run.redis.note or "not measured") + ".",
    ]


def load_targets(run: Run) -> None:
    """The issue's targets for the load rows, as extra lines: cookie store >= 1.0x
    mod_auth_openidc req/s with p99 no worse; Redis >= 0.8x the cookie store."""
    report = run.report
    apache = report.ref("get", rpt.APACHE)
    for workers in (1, 2):
        cookie = report.ref("get", f"proxy-cookie-{workers}w")
        redis = report.ref("get", f"proxy-redis-{workers}w")
        suffix = f", {workers} worker{'s' if workers > 1 else ''}"
        if cookie and apache:
            ratio = cookie.rps / apache.rps
            report.extras.append(Extra(
                "authenticated GET: cookie store vs mod_auth_openidc" + suffix,
                f"{ratio:.2f}× req/s, p99 {cookie.p99_ms:.1f} vs {apache.p99_ms:.1f} ms",
                "", "≥ 1.0× req/s, p99 no worse",
                ratio >= 1.0 and cookie.p99_ms <= apache.p99_ms))
        if cookie and redis:
            ratio = redis.rps / cookie.rps
            report.extras.append(Extra("authenticated GET: Redis store vs cookie store" + suffix,
                                       f"{ratio:.2f}× req/s", "", "≥ 0.8×", ratio >= 0.8))


async def run_all(run: Run) -> None:
    stack = Stack(run.procs)
    setup_redis(run)
    environment_notes(run)
    before = os.getloadavg()
    await stack.start_mock()
    await bench_load(run, stack)
    load_targets(run)
    need_py_upstream = any(wanted(run, g) for g in ("stream", "ws"))
    if need_py_upstream:
        py_proc, py_upstream = await stack.start_python_upstream()
        try:
            for group, func in (("stream", bench_stream), ("ws", bench_ws)):
                if wanted(run, group):
                    try:
                        await func(run, stack, py_upstream)
                    except BenchError as exc:
                        run.report.failures.append(f"{group}: {exc}")
                        run.progress(f"{group}: FAILED {exc}")
        finally:
            stack.stop(py_proc)
    if wanted(run, "session"):
        try:
            await bench_session(run)
        except BenchError as exc:
            run.report.failures.append(f"session check: {exc}")
    after = os.getloadavg()
    run.report.notes.insert(1, (
        f"Load average (1 min) when the run started: {before[0]:.2f}, when it ended: "
        f"{after[0]:.2f}. Anything above the harness's own load means other work on the "
        "machine competed for the same cores during the run."))


def write_outputs(run: Run) -> None:
    out = run.settings.out
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    png = out / "results.png"
    has_chart = rpt.chart(run.report, png)
    if not has_chart:
        run.report.notes.append("No chart: matplotlib is not installed (make bench installs "
                                "it into .venv).")
    title = "azure-auth-proxy benchmark" + (" (smoke run: 1 s, tiny sizes)"
                                            if run.settings.smoke else "")
    (out / "results.md").write_text(rpt.markdown(
        run.report, title=title, command=run.settings.command,
        chart=png.name if has_chart else None))
    print(f"wrote {out / 'results.md'}" + (f" and {png}" if has_chart else ""))


def parse_args(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="1 s load runs, 8 MiB streams, 20 WebSockets; writes nothing unless "
                        "--out is given")
    p.add_argument("--only", default=",".join(GROUPS),
                   help=f"comma-separated subset of {','.join(GROUPS)}")
    p.add_argument("--out", type=Path, help="where results.md and results.png go "
                                           "(default: bench/ in a full run)")
    p.add_argument("--duration", type=float, help="seconds per load run (5; smoke 1)")
    p.add_argument("--repeat", type=int, help="load runs per row, the median is reported "
                                              "(3; smoke 1)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--stream-mb", type=int, help="MiB each way (1024; smoke 8)")
    p.add_argument("--ws", type=int, help="idle WebSockets (1000; smoke 20)")
    args = p.parse_args(argv)
    only = frozenset(g.strip() for g in args.only.split(",") if g.strip())
    unknown = only - set(GROUPS)
    if unknown:
        p.error(f"unknown --only group(s): {', '.join(sorted(unknown))}")
    smoke = bool(args.smoke)
    out = args.out if args.out is not None else (None if smoke else ROOT / "bench")
    return Settings(
        smoke=smoke,
        seconds=args.duration or (1.0 if smoke else 5.0),
        repeat=max(1, args.repeat or (1 if smoke else 3)),
        warmup=0.0 if smoke else 2.0,
        connections=args.connections,
        threads=args.threads,
        stream_bytes=(args.stream_mb or (8 if smoke else 1024)) * MIB,
        ws_count=args.ws or (20 if smoke else 1000),
        session_iterations=2_000 if smoke else 20_000,
        only=only,
        out=out.resolve() if out else None,
        command="make bench-smoke" if smoke else "make bench",
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds into main()'s finally: everything is stopped


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="aap-bench-"))
    procs = Procs(workdir)
    run = Run(settings, procs)
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, _terminate)
    started = time.monotonic()
    try:
        asyncio.run(run_all(run))
    except (KeyboardInterrupt, SystemExit):
        print("[bench] interrupted: stopping everything it started", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        cleanup_redis(run.redis)
        shutil.rmtree(workdir, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print()
    print(rpt.text_table(run.report))
    if run.report.failures:
        print("\nFAILURES:\n" + "\n".join(f"  - {f}" for f in run.report.failures))
    write_outputs(run)
    print(f"bench finished in {time.monotonic() - started:.0f} s; everything it started is "
          "stopped")
    return 1 if run.report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
