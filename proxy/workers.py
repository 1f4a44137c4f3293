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
from .config_load import load

log = logging.getLogger("proxy")
RESPAWN_PAUSE = 1.0


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # optional: not on Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(config: Config, config_path: str, *, reuse_port: bool = False) -> None:
    from .app import build_app, check_files

    def reload_config() -> Config:
        fresh = load(config_path, os.environ)
        check_files(fresh)
        return fresh

    host, port = config.server.host_port
    # Requests allocate many short-lived objects but few cycles: collect the young
    # generation less often (the profile showed ~6% of CPU in the collector).
    gc.set_threshold(20_000, 20, 20)
    web.run_app(build_app(config, loader=reload_config), host=host or None, port=port,
                access_log=None, print=None, shutdown_timeout=config.server.drain_timeout,
                reuse_port=reuse_port or None, loop=new_loop())


def _worker(config_path: str) -> None:
    config = load(config_path, os.environ)
    logs.setup(config.server.log_format, config.server.log_level)
    serve(config, config_path, reuse_port=True)


def supervise(config: Config, config_path: str) -> int:
    """Run config.server.workers worker processes until SIGTERM/SIGINT; 0 on a clean stop."""
    metrics_dir = tempfile.mkdtemp(prefix="azp-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(config_path,), daemon=False)
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
                              process.pid, process.exitcode)
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
    sys.exit(supervise(load(sys.argv[1]), sys.argv[1]))
