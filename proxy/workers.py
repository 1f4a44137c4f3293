"""Serving: one process, or one worker of `workers` processes sharing the port through
SO_REUSEPORT under proxy/supervisor.py.

A worker beats on a pipe from its event loop (the supervisor replaces one that falls silent)
and reports a fault no restart can fix (a bad file, a port it cannot bind) as one line there,
exiting with FATAL_EXIT. Metrics then use prometheus-client's multiprocess mode, so any
worker's /metrics shows the sum of all.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys

from aiohttp import web

from . import logs
from .config import Config
from .config_load import ConfigSource
from .errors import ConfigError
from .runner import ProxyRunner, ProxySite
from .supervisor import FATAL_EXIT

log = logging.getLogger("proxy")
FILES_BESIDES_CONNECTIONS = 256  # listeners, Redis, IdP and metrics sockets, logs, modules
BEAT_EVERY = 1.0  # seconds between heartbeats; server.worker_stuck_timeout is at least 2 s


class ListenError(OSError):
    """The listening address cannot be bound: no restart fixes that."""


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # optional: not on Windows
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(config: Config, source: ConfigSource, *, reuse_port: bool = False,
          beats: int | None = None) -> None:
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
                                       reuse_port, beats))
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


async def _serve(app: web.Application, config: Config, reuse_port: bool,
                 beats: int | None) -> None:
    """Serve until SIGTERM/SIGINT, then drain: stop accepting, close WebSockets (1001), let
    in-flight requests (uploads included) finish within drain_timeout, then clean up.
    aiohttp's own shutdown would drop request bytes that arrive after it begins."""
    from .app import SERVER_TLS, close_websockets
    from .state import STATE

    runner = ProxyRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    tls = app.get(SERVER_TLS)
    host, port = config.server.host_port
    site = ProxySite(runner, host or None, port, reuse_port=reuse_port or None,
                     ssl_context=tls.listener if tls else None,
                     handshake_timeout=config.server.header_timeout)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(exc.errno, f"cannot listen on {config.server.listen}: "
                          f"{exc.strerror or exc}") from None
    try:
        redirects = await _redirect_site(config, reuse_port)
    except ListenError:
        await runner.cleanup()
        raise
    # Everything built so far (modules, config, app, clients) lives as long as the process:
    # move it out of the collector's sight, so full collections only walk request garbage.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if beats is not None:
        _beat(loop, beats)
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
    if redirects is not None:
        await redirects.cleanup()


async def _redirect_site(config: Config, reuse_port: bool) -> web.BaseRunner | None:
    """server.http_redirect_listen's plain HTTP listener (308 to https), started, or None."""
    if not config.server.http_redirect_listen:
        return None
    from .http_redirect import redirect_app

    runner = ProxyRunner(redirect_app(config), access_log=None, handle_signals=False,
                         shutdown_timeout=1.0)
    await runner.setup()
    host, _, port = config.server.http_redirect_listen.rpartition(":")
    try:
        await web.TCPSite(runner, host.strip("[]") or None, int(port),
                          reuse_port=reuse_port or None).start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(exc.errno, f"cannot listen on {config.server.http_redirect_listen} "
                          f"(server.http_redirect_listen): {exc.strerror or exc}") from None
    return runner


def _beat(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """One byte to the supervisor now and every BEAT_EVERY seconds, from the loop itself: a
    loop stuck in a callback stops beating, and the supervisor replaces the worker."""
    try:
        os.write(fd, b".")
    except BlockingIOError:
        pass  # the supervisor is behind; it only needs the latest beat
    except OSError:
        return  # the supervisor is gone
    loop.call_later(BEAT_EVERY, _beat, loop, fd)


def worker_cli(argv: list[str]) -> None:
    """`python -c supervisor.WORKER SOURCE FD`: SOURCE as supervisor.source_arg wrote it."""
    given = json.loads(argv[0])
    flags = tuple((key, value, flag) for key, value, flag in given["flags"])
    worker_main(ConfigSource(given["path"], given["required"], flags), int(argv[1]))


def worker_main(source: ConfigSource, beats: int) -> None:
    """A supervised worker: the same config as the supervisor (file, flags, current env)."""
    from .app import check_files

    os.set_blocking(beats, False)  # a full pipe must never block the event loop
    try:
        config = source.load(os.environ)
        logs.setup(config.server.log_format, config.server.log_level)
        check_files(config)
        serve(config, source, reuse_port=True, beats=beats)
    except (ConfigError, ListenError) as exc:
        line = "; ".join(f"config error: {p}" for p in exc.problems) \
            if isinstance(exc, ConfigError) else str(exc.strerror)
        os.set_blocking(beats, True)
        os.write(beats, b"!" + line.encode())
        sys.exit(FATAL_EXIT)
