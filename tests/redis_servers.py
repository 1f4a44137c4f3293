"""Real Redis topologies for tests, started from the ``redis-server`` binary.

Three shapes, each a plain class with blocking ``start()``/``stop()``, and one
function-scoped pytest fixture, ``start_redis``, that starts any of them for a test and
always stops it afterwards:

* :class:`RedisServer`: one process (optionally password or ACL user; ``PERSISTENT``).
* :class:`RedisCluster`: 3 masters (optionally + 3 replicas), slots assigned by
  ``redis-cli --cluster create``.
* :class:`RedisSentinelSet`: master + replica + 3 sentinels (quorum 2), with
  :meth:`RedisSentinelSet.failover` to kill the master and wait for the promotion.

Everything binds 127.0.0.1 on ports picked below the kernel's ephemeral range (so outgoing
client connections can never steal a port between ``stop()`` and ``start()``), with the
cluster bus port (``port + 10000``) free too. Persistence is off unless ``extra_config``
turns it back on; each process logs to ``<workdir>/redis.log`` and start-up failures quote
its tail. The methods block (they poll with short sleeps); from a coroutine that must keep
its event loop serving meanwhile, call them via ``asyncio.to_thread``.

tests/conftest.py makes ``start_redis`` visible to every test::

    async def test_x(start_redis: StartRedis, tmp_path: Path) -> None:
        server = start_redis(RedisServer(tmp_path / "redis", extra_config=PERSISTENT))
"""

from __future__ import annotations

import atexit
import contextlib
import io
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import quote

import pytest

__all__ = [
    "HOST",
    "RedisCluster",
    "RedisError",
    "RedisNotInstalledError",
    "RedisSentinelSet",
    "RedisServer",
    "RedisStartError",
    "RespError",
    "allocate_port",
    "PERSISTENT",
    "StartRedis",
    "require_redis_binaries",
    "start_redis",
]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0  # seconds; generous for a loaded 2-core machine, but bounded
STOP_TIMEOUT = 10.0
INSTALL_HINT = (
    "Install Redis 7 so that `redis-server` and `redis-cli` are on PATH, e.g. "
    "`sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)."
)

Reply = str | int | None | list["Reply"]


class RedisError(RuntimeError):
    """Base class for this module's errors."""


class RedisNotInstalledError(RedisError):
    """``redis-server`` / ``redis-cli`` is missing from PATH."""


class RedisStartError(RedisError):
    """A process or topology did not become ready before its deadline."""


class RespError(RedisError):
    """An error reply (``-ERR ...``) from a server."""


# --------------------------------------------------------------------------- binaries


def require_redis_binaries(*names: str) -> dict[str, str]:
    """Resolve binaries on PATH (default: redis-server, redis-cli) or raise with an install hint."""
    wanted = names or ("redis-server", "redis-cli")
    found = {name: shutil.which(name) for name in wanted}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise RedisNotInstalledError(
            f"{', '.join(missing)} not found on PATH; these tests run real Redis servers. "
            + INSTALL_HINT
        )
    return {name: path for name, path in found.items() if path is not None}


# --------------------------------------------------------------------------- ports

_rng = random.SystemRandom()  # not the `random` module: pytest-randomly/xdist reseed that
_port_lock = threading.Lock()
_handed_out: dict[int, float] = {}  # port -> when; covers allocated-but-not-yet-started
RESERVATION = 600.0  # seconds a handed-out port is not handed out again


def _port_range() -> tuple[int, int]:
    """[low, high) such that both p and p + 10000 lie below the ephemeral port range."""
    ephemeral_low = 32768
    with contextlib.suppress(OSError, ValueError):
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    low, high = 10000, ephemeral_low - 10000
    if high - low < 2000:  # odd kernel settings: give up on avoiding the ephemeral range
        low, high = 10000, 55535
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def allocate_port() -> int:
    """A port p with p and p + 10000 (the cluster bus) currently free, never handed out twice."""
    low, high = _port_range()
    with _port_lock:
        now = time.monotonic()
        for port, when in list(_handed_out.items()):
            if now - when > RESERVATION:
                del _handed_out[port]
        for _ in range(1000):
            port = _rng.randrange(low, high)
            if port in _handed_out or port in (6379, 16379, 26379):
                continue
            if _bindable(port) and _bindable(port + 10000):
                _handed_out[port] = now
                return port
    raise RedisError(f"no free port pair found in [{low}, {high})")


# --------------------------------------------------------------------------- RESP client


def _encode(args: Sequence[str | int]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(stream: io.BufferedIOBase) -> Reply:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by server")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise RespError(f"unexpected reply {line!r}")


def resp_command(port: int, *args: str | int, auth: Sequence[str] = (),
                 timeout: float = 2.0) -> Reply:
    """Send one command over a fresh connection (after ``AUTH *auth`` if given)."""
    with (
        socket.create_connection((HOST, port), timeout=timeout) as sock,
        sock.makefile("rb") as stream,
    ):
        if auth:
            sock.sendall(_encode(["AUTH", *auth]))
            _read_reply(stream)
        sock.sendall(_encode(args))
        return _read_reply(stream)


def parse_info(text: Reply) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text to a dict."""
    if not isinstance(text, str):
        raise RespError(f"expected INFO text, got {text!r}")
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def _pairs(reply: Reply) -> dict[str, str]:
    """A flat ``[k1, v1, k2, v2, ...]`` reply (SENTINEL REPLICAS entries) to a dict."""
    if not isinstance(reply, list):
        raise RespError(f"expected a flat key/value array, got {reply!r}")
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def _ensure_running(servers: Sequence[RedisServer]) -> None:
    """Fail fast (rather than at the deadline) when a process we wait for has died."""
    for server in servers:
        if not server.running:
            raise RedisStartError(f"{server!r} is not running\n{server.log_tail()}")


def _wait_until(what: str, check: Callable[[], bool], timeout: float,
                logs: Callable[[], str]) -> None:
    """Poll ``check`` (exceptions count as "not yet") until true or raise with the logs."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if check():
                return
            last_error = ""
        except (OSError, RedisError) as exc:
            if isinstance(exc, RedisStartError):  # a process died: no point waiting
                raise
            last_error = f" (last error: {exc!r})"
        if time.monotonic() >= deadline:
            raise RedisStartError(f"timed out after {timeout:.0f}s waiting for {what}"
                                  f"{last_error}\n{logs()}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- processes

_live: set[RedisServer] = set()
_live_lock = threading.Lock()


@atexit.register
def _kill_leftovers() -> None:
    """Backstop if a fixture's teardown never ran (e.g. the interpreter is exiting on error)."""
    with _live_lock:
        servers = list(_live)
    for server in servers:
        server.kill()


class RedisServer:
    """One ``redis-server`` (or, with ``sentinel=True``, ``redis-server --sentinel``) process.

    ``port`` is fixed for the object's lifetime once it has started, so ``stop()`` then
    ``start()`` brings the server back at the same address (data is lost unless
    ``extra_config`` enables persistence: the working directory is kept).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        password: str | None = None,
        acl_user: tuple[str, str] | None = None,
        extra_config: Sequence[str] = (),
        replicaof: tuple[str, int] | None = None,
        sentinel: bool = False,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.workdir = Path(workdir)
        self._port_chosen = port is not None
        self.port: int = port if port is not None else allocate_port()
        self.host = HOST
        self.password = password
        self.acl_user = acl_user
        self.extra_config = list(extra_config)
        self.replicaof = replicaof
        self.sentinel = sentinel
        self.start_timeout = start_timeout
        self.config_path = self.workdir / ("sentinel.conf" if sentinel else "redis.conf")
        self.log_path = self.workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._ever_ready = False

    def __repr__(self) -> str:
        kind = "sentinel" if self.sentinel else "redis"
        return f"<RedisServer {kind} {self.host}:{self.port} running={self.running}>"

    # ----------------------------------------------------------------- addresses

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, without credentials (see :attr:`authed_url`)."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def authed_url(self) -> str:
        """:attr:`url` with the ACL user's (else the default user's) credentials embedded."""
        if self.acl_user is not None:
            user, password = self.acl_user
            cred = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        elif self.password is not None:
            cred = f":{quote(self.password, safe='')}@"
        else:
            cred = ""
        return f"redis://{cred}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ----------------------------------------------------------------- config

    def config_lines(self) -> list[str]:
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            f'dir "{self.workdir}"',
            "daemonize no",
            'logfile ""',  # stdout, which start() sends to redis.log
        ]
        if self.sentinel:
            return lines + self.extra_config
        lines += [
            'save ""',
            "appendonly no",
            "protected-mode yes",
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",  # the default (5 s) would delay every replica's sync
            "shutdown-timeout 1",  # SIGTERM does not wait long for lagging replicas
        ]
        if self.password is not None:
            lines += [f'requirepass "{self.password}"', f'masterauth "{self.password}"']
        if self.acl_user is not None:
            user, password = self.acl_user
            lines.append(f"user {user} on >{password} ~* &* +@all")
            if self.password is None:
                lines.append("user default off")  # auth really required
        if self.replicaof is not None:
            lines.append(f"replicaof {self.replicaof[0]} {self.replicaof[1]}")
        return lines + self.extra_config

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(self.config_lines()) + "\n")

    # ----------------------------------------------------------------- commands

    @property
    def auth(self) -> tuple[str, ...]:
        if self.acl_user is not None:
            return self.acl_user
        if self.password is not None:
            return (self.password,)
        return ()

    def command(self, *args: str | int, timeout: float = 2.0) -> Reply:
        """Run one command synchronously (authenticated), e.g. ``server.command("DBSIZE")``."""
        return resp_command(self.port, *args, auth=self.auth, timeout=timeout)

    def info(self, section: str = "replication") -> dict[str, str]:
        return parse_info(self.command("INFO", section))

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the process (no-op if running) and wait until it answers PING."""
        if self.running:
            return
        binary = require_redis_binaries("redis-server")["redis-server"]
        attempts = 1 if self._port_chosen or self._ever_ready else 5
        for attempt in range(attempts):
            # A sentinel rewrites its own config: keep it across restarts.
            if not (self.sentinel and self._ever_ready and self.config_path.exists()):
                self._write_config()
            self._spawn(binary)
            try:
                self._wait_ready()
            except RedisStartError:
                self.kill()
                port_taken = "Address already in use" in self.log_tail(10)
                if port_taken and attempt + 1 < attempts:  # lost a race for the port
                    self.port = allocate_port()
                    continue
                raise
            self._ever_ready = True
            return

    def _spawn(self, binary: str) -> None:
        argv = [binary, str(self.config_path)] + (["--sentinel"] if self.sentinel else [])
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )
        with _live_lock:
            _live.add(self)

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RedisStartError(f"{self!r} exited with status {code}\n{self.log_tail()}")
            return self.command("PING", timeout=1.0) == "PONG"

        kind = "redis-server --sentinel" if self.sentinel else "redis-server"
        what = f"{kind} on {self.host}:{self.port} to answer PING"
        _wait_until(what, ready, self.start_timeout, self.log_tail)

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 10 s). No-op if not running."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and reap: a crash, as far as clients and replicas can tell."""
        self._terminate(signal.SIGKILL)

    def _terminate(self, sig: signal.Signals) -> None:
        proc = self.process
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)  # a frozen (SIGSTOP) server must stop too
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.process = None
        with _live_lock:
            _live.discard(self)


# --------------------------------------------------------------------------- cluster


class _Topology:
    """Several servers started together: a start that fails part-way stops what it started."""

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class RedisCluster(_Topology):
    """3 masters (``replicas=1``: plus one replica each) with all 16384 slots assigned.

    ``start()`` creates the cluster the first time and afterwards just restarts the nodes,
    which reload their ``nodes.conf``.
    """

    def __init__(self, workdir: Path, *, masters: int = 3, replicas: int = 0,
                 node_timeout_ms: int = 2000, extra_config: Sequence[str] = (),
                 start_timeout: float = START_TIMEOUT) -> None:
        self.workdir = Path(workdir)
        self.replicas = replicas
        self.start_timeout = start_timeout
        self.masters_count = masters
        config = ["cluster-enabled yes", "cluster-config-file nodes.conf",
                  f"cluster-node-timeout {node_timeout_ms}", *extra_config]
        self.nodes: list[RedisServer] = [
            RedisServer(self.workdir / f"node{i}", extra_config=config,
                        start_timeout=start_timeout)
            for i in range(masters * (1 + replicas))
        ]
        self._created = False

    @property
    def url(self) -> str:
        """Seed URL (first node); cluster clients discover the rest."""
        return self.nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    def logs(self) -> str:
        return "\n".join(node.log_tail(15) for node in self.nodes)

    def _start(self) -> None:
        binaries = require_redis_binaries()
        for node in self.nodes:
            node.start()
        if not self._created:
            argv = [binaries["redis-cli"], "--cluster", "create",
                    *(f"{n.host}:{n.port}" for n in self.nodes),
                    "--cluster-replicas", str(self.replicas), "--cluster-yes"]
            try:
                result = subprocess.run(argv, capture_output=True, text=True,
                                        timeout=self.start_timeout, check=False)
            except subprocess.TimeoutExpired as exc:
                raise RedisStartError(f"`{' '.join(argv)}` timed out\n{self.logs()}") from exc
            if result.returncode != 0:
                raise RedisStartError(f"`{' '.join(argv)}` failed ({result.returncode}):\n"
                                      f"{result.stdout}{result.stderr}\n{self.logs()}")
            self._created = True
        _wait_until("CLUSTER INFO cluster_state:ok on every node", self._healthy,
                    self.start_timeout, self.logs)

    def _healthy(self) -> bool:
        _ensure_running(self.nodes)
        total = len(self.nodes)
        for node in self.nodes:
            info = parse_info(node.command("CLUSTER", "INFO"))
            if (info.get("cluster_state") != "ok"
                    or info.get("cluster_slots_ok") != "16384"
                    or info.get("cluster_known_nodes") != str(total)):
                return False
            nodes_text = node.command("CLUSTER", "NODES")
            if not isinstance(nodes_text, str):
                raise RespError(f"unexpected CLUSTER NODES reply {nodes_text!r}")
            flags = [line.split()[2].split(",") for line in nodes_text.splitlines() if line]
            if any({"fail", "fail?", "handshake", "noaddr"} & set(f) for f in flags):
                return False
            if sum("slave" in f for f in flags) != self.masters_count * self.replicas:
                return False
            if "slave" in next(f for f in flags if "myself" in f):
                if node.info().get("master_link_status") != "up":
                    return False
        return True

    @property
    def masters(self) -> list[RedisServer]:
        """The nodes currently in the master role (asks each running node)."""
        return [n for n in self.nodes if n.running and n.info().get("role") == "master"]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# --------------------------------------------------------------------------- sentinel


class RedisSentinelSet(_Topology):
    """A monitored master + replica and three sentinels (quorum 2) watching them."""

    def __init__(self, workdir: Path, *, master_name: str = "mymaster",
                 down_after_ms: int = 2000, failover_timeout_ms: int = 6000,
                 sentinel_count: int = 3, quorum: int = 2,
                 start_timeout: float = START_TIMEOUT) -> None:
        self.workdir = Path(workdir)
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.start_timeout = start_timeout
        self.master = RedisServer(self.workdir / "server-a", start_timeout=start_timeout)
        self.replica = RedisServer(self.workdir / "server-b", start_timeout=start_timeout)
        self.sentinel_servers: list[RedisServer] = [
            RedisServer(self.workdir / f"sentinel{i}", sentinel=True, start_timeout=start_timeout)
            for i in range(sentinel_count)
        ]

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """Addresses for ``redis.asyncio.sentinel.Sentinel(...)``."""
        return [s.address for s in self.sentinel_servers]

    def logs(self) -> str:
        servers = [self.master, self.replica, *self.sentinel_servers]
        return "\n".join(server.log_tail(15) for server in servers)

    def _start(self) -> None:
        require_redis_binaries("redis-server")
        self.master.start()
        self.replica.replicaof = self.master.address
        self.replica.start()
        # Sentinels find replicas through the master's INFO: let the replica attach first.
        _wait_until(f"replica {self.replica.port} to sync from master {self.master.port}",
                    lambda: self._replica_synced(self.replica), self.start_timeout, self.logs)
        for sentinel in self.sentinel_servers:
            if not sentinel.config_path.exists():
                sentinel.extra_config = [
                    f"sentinel monitor {self.master_name} {HOST} {self.master.port} {self.quorum}",
                    f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
                    f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {self.master_name} 1",
                ]
            sentinel.start()
        _wait_until(f"sentinels to agree on master {self.master.port} with replica "
                    f"{self.replica.port}", self._sentinels_agree, self.start_timeout, self.logs)

    def _replica_synced(self, server: RedisServer) -> bool:
        _ensure_running([server])
        info = server.info()
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _sentinels_agree(self, replicas: Sequence[RedisServer] | None = None) -> bool:
        """Every sentinel sees ``self.master`` as master, the replica(s) healthy, all peers."""
        expected_replicas = [self.replica] if replicas is None else replicas
        _ensure_running([self.master, *expected_replicas, *self.sentinel_servers])
        for sentinel in self.sentinel_servers:
            addr = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            if addr != [HOST, str(self.master.port)]:
                return False
            state = _pairs(sentinel.command("SENTINEL", "MASTER", self.master_name))
            if (state.get("flags") != "master"
                    or state.get("num-other-sentinels") != str(len(self.sentinel_servers) - 1)):
                return False
            replies = sentinel.command("SENTINEL", "REPLICAS", self.master_name)
            if not isinstance(replies, list):
                raise RespError(f"unexpected SENTINEL REPLICAS reply {replies!r}")
            known = {_pairs(r).get("port"): _pairs(r) for r in replies}
            for replica in expected_replicas:
                entry = known.get(str(replica.port))
                if (entry is None or entry.get("flags") != "slave"
                        or entry.get("master-link-status") != "ok"):
                    return False
        return True

    def failover(self, *, restart_old_master: bool = False) -> None:
        """Kill the master, wait until every sentinel names the promoted replica and it takes
        writes; then ``master``/``replica`` are swapped.

        The old master stays down unless ``restart_old_master``: then it comes back (empty)
        as a replica of the new master, and we wait until the sentinels see it healthy, so
        that another ``failover()`` is possible.
        """
        old, new = self.master, self.replica
        old.kill()

        def promoted() -> bool:
            _ensure_running([new, *self.sentinel_servers])
            for sentinel in self.sentinel_servers:
                addr = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                if addr != [HOST, str(new.port)]:
                    return False
            if new.info().get("role") != "master":
                return False
            probe = "redis-servers:failover-probe"
            return new.command("SET", probe, "1") == "OK" and new.command("DEL", probe) == 1

        _wait_until(f"sentinels to promote {new.port} after killing master {old.port}",
                    promoted, self.start_timeout, self.logs)
        new.replicaof = None  # were it restarted, it must come back as the master
        self.master, self.replica = new, old
        if restart_old_master:
            old.replicaof = new.address
            old.start()
            # Generous: on a loaded machine sentinels take several hello rounds to agree.
            _wait_until(f"old master {old.port} to rejoin as a replica of {new.port}",
                        lambda: self._replica_synced(old) and self._sentinels_agree([old]),
                        2 * self.start_timeout, self.logs)

    def stop(self) -> None:
        for server in [*self.sentinel_servers, self.replica, self.master]:
            server.stop()


# --------------------------------------------------------------------------- fixtures


def _started(start: Callable[[], None], stop: Callable[[], None]) -> None:
    """Start for a fixture: clean up on any error; a missing binary is a plain failure."""
    missing = ""
    try:
        start()
    except RedisNotInstalledError as exc:
        missing = str(exc)
    except BaseException:
        stop()
        raise
    if missing:
        stop()
        pytest.fail(missing, pytrace=False)  # outside `except`: no chained traceback


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """SIGSTOP: the kernel still accepts connections and bytes, Redis answers nothing."""
    process = server.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


PERSISTENT = ("appendonly yes", "appendfsync always")  # keeps what it acknowledged
Topology = TypeVar("Topology", bound="RedisServer | RedisCluster | RedisSentinelSet")


class StartRedis(Protocol):
    def __call__(self, topology: Topology, /) -> Topology: ...


@pytest.fixture
def start_redis() -> Iterator[StartRedis]:
    """The one Redis fixture: ``start_redis(RedisServer(tmp_path / "redis"))`` (or a
    :class:`RedisCluster`, a :class:`RedisSentinelSet`) starts that topology for the test and
    returns it; every topology started is stopped after the test, however it ends."""
    started: list[RedisServer | RedisCluster | RedisSentinelSet] = []

    def start(topology: Topology) -> Topology:
        started.append(topology)
        _started(topology.start, topology.stop)
        return topology

    try:
        yield start
    finally:
        for topology in reversed(started):
            topology.stop()
