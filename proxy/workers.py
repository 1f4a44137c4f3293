"""Serving: one process, or `workers` processes sharing the port through SO_REUSEPORT.

The supervisor forwards SIGTERM (drain) and SIGHUP (reload) to its workers and replaces a
worker that dies. Metrics then use prometheus-client's multiprocess mode, so any worker's
/metrics shows the sum of all.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from aiohttp import web

from . import logs
from .config import Config
from .config_load import ConfigSource
from .runner import ProxyRunner

log = logging.getLogger("proxy")
RESPAWN_PAUSE = 1.0
FILES_BESIDES_CONNECTIONS = 256  # listeners, Redis, IdP and metrics sockets, logs, modules


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # optional: not on Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(config: Config, source: ConfigSource, *, reuse_port: bool = False) -> None:
    from .app import build_app, check_files

    def reload_config() -> Config:
        fresh = source.load(os.environ)  # the same file and flags, the current env
        check_files(fresh)
        return fresh

    raise_file_limit(config.server.max_connections)
    # Requests allocate many short-lived objects but few cycles: collect the young
    # generation less often (the profile showed ~6% of CPU in the collector).
    gc.set_threshold(20_000, 20, 20)
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(build_app(config, loader=reload_config), config,
                                       reuse_port))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def raise_file_limit(max_connections: int) -> None:
    """Raise the soft open-file limit toward the hard one, as Go and nginx's
    worker_rlimit_nofile do: a client connection is a descriptor and so is the upstream one
    it proxies to, and a soft limit of 1024 (common in containers) would refuse connections
    with EMFILE long before server.max_connections does. The aim is two per connection;
    only a limit that cannot hold the cap's client connections alone is worth a WARNING."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    want = 2 * max_connections + FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < max_connections + FILES_BESIDES_CONNECTIONS:
        log.warning("open-file limit %d is below server.max_connections + %d: raise it "
                    "(ulimit -Hn, LimitNOFILE=) or lower server.max_connections", new,
                    FILES_BESIDES_CONNECTIONS)


async def _serve(app: web.Application, config: Config, reuse_port: bool) -> None:
    """Serve until SIGTERM/SIGINT, then drain: stop accepting, close WebSockets (1001), let
    in-flight requests (uploads included) finish within drain_timeout, then clean up.
    aiohttp's own shutdown would drop request bytes that arrive after it begins."""
    from .app import close_websockets
    from .state import STATE

    runner = ProxyRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    host, port = config.server.host_port
    site = web.TCPSite(runner, host or None, port, reuse_port=reuse_port or None)
    await site.start()
    # Everything built so far (modules, config, app, clients) lives as long as the process:
    # move it out of the collector's sight, so full collections only walk request garbage.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await site.stop()
    await close_websockets(app)
    deadline = loop.time() + config.server.drain_timeout
    while app[STATE].inflight > 0 and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if app[STATE].inflight:
        log.warning("drain timeout: cutting %d request(s) still in flight", app[STATE].inflight)
    await runner.cleanup()


def _worker(source: ConfigSource) -> None:
    config = source.load(os.environ)
    logs.setup(config.server.log_format, config.server.log_level)
    serve(config, source, reuse_port=True)


def supervise(config: Config, source: ConfigSource) -> int:
    """Run config.server.workers worker processes until SIGTERM/SIGINT; 0 on a clean stop."""
    metrics_dir = tempfile.mkdtemp(prefix="azp-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(source,), daemon=False)
        process.start()
        return process

    workers = [start() for _ in range(config.server.workers)]

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        while workers:
            wait([p.sentinel for p in workers], timeout=1.0)
            for process in [p for p in workers if not p.is_alive()]:
                workers.remove(process)
                _mark_dead(process)
                if not stopping:
                    log.error("worker pid %s exited with %s; starting another",
                              process.pid, process.exitcode,
                              extra=logs.fields(pid=process.pid, exit_code=process.exitcode))
                    time.sleep(RESPAWN_PAUSE)
                    workers.append(start())
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _mark_dead(process: BaseProcess) -> None:
    from prometheus_client import multiprocess

    if process.pid is not None:
        multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(supervise(ConfigSource(sys.argv[1]).load(), ConfigSource(sys.argv[1])))
