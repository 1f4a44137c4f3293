"""The supervisor of `workers > 1`: starts worker processes, replaces one that dies or whose
event loop stops beating, backs off when they crash right after start, and stops everything
with one line on a fault no restart can cure (the port cannot be bound, a bad file).

It never imports the application (aiohttp, cryptography, the app modules): it only watches,
so it stays a few MiB. Workers are fresh interpreters (subprocess, not multiprocessing, whose
spawn also starts a resource-tracker process of ~13 MiB) that import what they need.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
    process: subprocess.Popen[bytes]
    beats: int  # the read end of the worker's heartbeat pipe
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


# The worker's command: `python -c WORKER SOURCE FD`; it imports proxy.workers itself. It
# first ignores SIGHUP, which would otherwise end a worker still importing (the app installs
# its reload handler once built; the config it reads is the newest anyway).
WORKER = ("import signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
          "from proxy.workers import worker_cli; worker_cli(sys.argv[1:])")


def source_arg(source: ConfigSource) -> str:
    """The config source as one argument (file, flags; never the env, which workers inherit)."""
    return json.dumps({"path": source.path, "required": source.required,
                       "flags": source.flags})


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
        self.workers: list[Worker] = []
        self.due: list[float] = []  # when to start the replacements that wait out a backoff
        self.crashes: list[float] = []  # times of recent start crashes
        self.stopping = False
        self.failure = ""  # the one line to print when giving up

    def start(self) -> None:
        beats, child_end = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER, source_arg(self.source), str(child_end)],
                pass_fds=(child_end,))
        finally:
            os.close(child_end)  # the child holds its copy: EOF on ours when it dies
        now = time.monotonic()
        self.workers.append(Worker(process, beats, now))

    def signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
            self.due.clear()
        self.forward(signal.SIGTERM if signum == signal.SIGINT else signum)

    def forward(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

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
            try:  # a dying worker closes its end of the pipe: readable at once
                ready = select.select([w.beats for w in self.workers], [], [], timeout)[0]
            except InterruptedError:  # pragma: no cover - Python retries select itself
                ready = []
            now = time.monotonic()
            for worker in self.workers:
                if worker.beats in ready:
                    self.read_beats(worker, now)
            for worker in [w for w in self.workers if w.process.poll() is not None]:
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
            data = os.read(worker.beats, 4096)
        except OSError:
            return  # the worker ended; its exit code says so
        if not worker.message and b"!" in data:
            data = data[data.index(b"!"):]
        if worker.message or data.startswith(b"!"):
            worker.message += data
        elif data:
            worker.last_beat = now

    def ended(self, worker: Worker, now: float) -> None:
        os.close(worker.beats)
        _mark_dead(worker.process.pid)
        code = worker.process.returncode
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
            if now - since > allowed:
                log.error("worker pid %s has not answered for %.0f s (worker_stuck_timeout); "
                          "replacing it", worker.process.pid, now - since)
                worker.process.kill()
                worker.last_beat = now  # killed once; its pipe reports the end next


def _mark_dead(pid: int) -> None:
    """prometheus-client's multiprocess.mark_process_dead, without importing the library:
    drop the dead worker's live-gauge files, so gauges count only live workers."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not directory:
        return
    try:
        for name in os.listdir(directory):
            if name.startswith("gauge_live") and name.endswith(f"_{pid}.db"):
                os.remove(os.path.join(directory, name))
    except OSError:  # the directory went away: nothing left to drop
        pass
