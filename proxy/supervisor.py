"""The supervisor of `workers > 1`: starts worker processes, replaces one that dies or whose
event loop stops beating, backs off when they crash right after start, and stops everything
with one line on a fault no restart can cure (the port cannot be bound, a bad file).

It never imports the application (aiohttp, cryptography, the app modules): it only watches,
so it stays a few MiB. Workers start with multiprocessing's spawn and import what they need.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from .config import Config
from .config_load import ConfigSource

log = logging.getLogger("proxy")

FATAL_EXIT = 3  # a worker's exit code for "no restart can fix this"; its line came on the pipe
QUICK = 30.0  # a worker that dies sooner than this after start counts as a start crash
WINDOW = 120.0  # start crashes within this window count towards giving up
GIVE_UP = 5  # this many start crashes within WINDOW: stop, exit 1
BACKOFF = (0.5, 16.0)  # first and longest pause before replacing a crashed worker
STARTUP_GRACE = 60.0  # before its first beat a worker imports and builds: allow this long


@dataclass
class Worker:
    process: BaseProcess
    beats: Connection  # the read end of the worker's heartbeat pipe
    started: float
    last_beat: float = 0.0  # 0: not serving yet
    message: bytearray = field(default_factory=bytearray)  # a fatal line, if one came


def probe_listen(listen: str, host: str, port: int) -> str | None:
    """Bind the address as the workers will (SO_REUSEPORT) and let go: the reason it cannot
    be bound, one line, else None. Catches a taken port before any worker is spawned."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:  # socket.gaierror is one too (a bad host name)
        return f"cannot listen on {listen}: {exc.strerror or exc}"
    return None


def _run_worker(source: ConfigSource, beats: Connection) -> None:
    from .workers import worker_main  # in the child only: the supervisor stays small

    worker_main(source, beats)


def supervise(config: Config, source: ConfigSource) -> int:
    """Run config.server.workers worker processes until SIGTERM/SIGINT: 0 on a clean stop,
    1 (after one line on stderr) when the workers cannot be kept running."""
    metrics_dir = tempfile.mkdtemp(prefix="azp-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _Supervisor(config, source).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


class _Supervisor:
    def __init__(self, config: Config, source: ConfigSource) -> None:
        self.config, self.source = config, source
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[Worker] = []
        self.due: list[float] = []  # when to start the replacements that wait out a backoff
        self.crashes: list[float] = []  # times of recent start crashes
        self.stopping = False
        self.failure = ""  # the one line to print when giving up

    def start(self) -> None:
        beats, child_end = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_run_worker, args=(self.source, child_end),
                                       daemon=False)
        process.start()
        child_end.close()  # the child holds its copy: EOF on ours when it dies
        now = time.monotonic()
        self.workers.append(Worker(process, beats, now))

    def signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
            self.due.clear()
        self.forward(signal.SIGTERM if signum == signal.SIGINT else signum)

    def forward(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process.pid is not None and worker.process.is_alive():
                os.kill(worker.process.pid, signum)

    def give_up(self, line: str) -> None:
        if not self.failure:
            self.failure = line
        self.stopping = True
        self.due.clear()
        self.forward(signal.SIGTERM)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.signal)
        for _ in range(self.config.server.workers):
            self.start()
        while self.workers or self.due:
            now = time.monotonic()
            timeout = min([1.0, *(max(0.0, t - now) for t in self.due)])
            handles = [w.process.sentinel for w in self.workers] + [w.beats for w in self.workers]
            ready = wait(handles, timeout=timeout)
            now = time.monotonic()
            for worker in self.workers:
                if worker.beats in ready:
                    self.read_beats(worker, now)
            for worker in [w for w in self.workers if not w.process.is_alive()]:
                self.workers.remove(worker)
                self.ended(worker, now)
            self.check_stuck(now)
            for when in [t for t in self.due if t <= now]:
                self.due.remove(when)
                self.start()
        if self.failure:
            print(f"azure-auth-proxy: {self.failure}", file=sys.stderr, flush=True)
            return 1
        return 0

    def read_beats(self, worker: Worker, now: float) -> None:
        # Raw bytes, not pickled messages: "." is a beat; "!" starts the fatal line.
        try:
            data = os.read(worker.beats.fileno(), 4096)
        except OSError:
            return  # the worker ended; its sentinel says so
        if not worker.message and b"!" in data:
            data = data[data.index(b"!"):]
        if worker.message or data.startswith(b"!"):
            worker.message += data
        elif data:
            worker.last_beat = now

    def ended(self, worker: Worker, now: float) -> None:
        worker.beats.close()
        _mark_dead(worker.process)
        code = worker.process.exitcode
        if code == FATAL_EXIT:
            line = worker.message[1:].decode(errors="replace").strip()
            self.give_up(line or "a worker could not start")
            return
        if self.stopping:
            return
        if now - worker.started < QUICK:
            self.crashes = [t for t in self.crashes if now - t < WINDOW] + [now]
        if len(self.crashes) >= GIVE_UP:
            self.give_up(f"workers exited {len(self.crashes)} times within {QUICK:.0f} s of "
                         f"starting (last exit code {code}); giving up")
            return
        pause = min(BACKOFF[0] * 2 ** max(0, len(self.crashes) - 1), BACKOFF[1])
        log.error("worker pid %s exited with %s; starting another in %.1f s",
                  worker.process.pid, code, pause)
        self.due.append(now + pause)

    def check_stuck(self, now: float) -> None:
        limit = self.config.server.worker_stuck_timeout
        if self.stopping:
            return
        for worker in self.workers:
            since = worker.last_beat or worker.started
            allowed = limit if worker.last_beat else max(limit, STARTUP_GRACE)
            if now - since > allowed and worker.process.pid is not None:
                log.error("worker pid %s has not answered for %.0f s (worker_stuck_timeout); "
                          "replacing it", worker.process.pid, now - since)
                os.kill(worker.process.pid, signal.SIGKILL)
                worker.last_beat = now  # killed once; its sentinel fires next


def _mark_dead(process: BaseProcess) -> None:
    """prometheus-client's multiprocess.mark_process_dead, without importing the library:
    drop the dead worker's live-gauge files, so gauges count only live workers."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if process.pid is None or not directory:
        return
    try:
        for name in os.listdir(directory):
            if name.startswith("gauge_live") and name.endswith(f"_{process.pid}.db"):
                os.remove(os.path.join(directory, name))
    except OSError:  # the directory went away: nothing left to drop
        pass
