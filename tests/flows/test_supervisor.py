"""The supervisor of `workers > 1` fails fast on what no restart fixes, backs off and gives up
on workers that keep crashing, and replaces a worker whose event loop stops (real processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.config_load import ConfigSource
from proxy.mock_entra import MockEntra
from proxy.supervisor import probe_listen, supervise
from tests.conftest import ALICE, HTML, free_port, wait_ready
from tests.flows.test_workers import children
from tests.support.proxy_toml import write_proxy_toml


def workers_of(pid: int) -> list[int]:
    """The worker processes: children of the supervisor but not multiprocessing's
    resource tracker."""
    return [c for c in children(pid)
            if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


def run_proxy(config: Path) -> subprocess.Popen[str]:
    """The proxy with stderr in a file beside its config: a pipe nobody reads while the test
    runs would fill up and block the processes writing their logs."""
    with open(config.parent / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err, text=True, env=env())


def stderr_of(proc: subprocess.Popen[str]) -> str:
    config = Path(proc.args[-1])  # type: ignore[index,arg-type]
    return (config.parent / "stderr.txt").read_text()


async def finished(proc: subprocess.Popen[str], within: float) -> tuple[int, list[str]]:
    """The exit code and stderr lines after the banner, waiting without blocking the loop
    (the mock IdP and upstream run on it)."""
    for _ in range(int(within * 10)):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    else:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running after {within} s: {stderr_of(proc)}")
    err = stderr_of(proc)
    lines = err.splitlines()
    assert lines and " started " in lines[0], err  # the startup event
    return proc.returncode, lines[1:]


def two_workers(tmp_path: Path, port: int, idp: str, upstream: str, redis_url: str,
                server: dict[str, Any] | None = None) -> Path:
    key = tmp_path / "assertion.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return write_proxy_toml(tmp_path / "proxy.toml", port, idp, upstream, {
        "server": {"workers": 2, **(server or {})},
        "session": {"store": "redis", "redis_url": redis_url},
        "identity": {"assertion_key_file": key}})


async def test_a_taken_port_ends_the_command_with_one_line_naming_the_address(
        tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    config = two_workers(tmp_path, port, "http://127.0.0.1:9", "http://127.0.0.1:9", redis_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = subprocess.run([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                              capture_output=True, text=True, env=env(), timeout=20)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"azure-auth-proxy: cannot listen on 127.0.0.1:{port}: Address already in use"]


async def test_a_file_the_workers_cannot_use_ends_the_command_with_one_line(
        tmp_path: Path, mock_server: tuple[MockEntra, str], upstream_url: str,
        redis_url: str) -> None:
    # The supervisor does not load the app, so the workers check the files; the first
    # worker's one line ends the command, not a restart loop.
    config = two_workers(tmp_path, free_port(), mock_server[1], upstream_url, redis_url)
    (tmp_path / "assertion.pem").write_text("not a key\n")
    code, lines = await finished(run_proxy(config), within=60)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("azure-auth-proxy: config error: identity.assertion_key_file")


def test_workers_that_keep_crashing_at_start_make_it_back_off_then_give_up(
        tmp_path: Path, redis_url: str, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real fault the supervisor's probe does not cover: the metrics listener's port is
    # taken, so every worker fails while it starts (after its import, with a traceback).
    # The supervisor runs in this process (its code counts for coverage); workers are real.
    metrics_port = free_port()
    config_path = two_workers(tmp_path, free_port(), "http://127.0.0.1:9", "http://127.0.0.1:9",
                              redis_url, {"metrics_listen": f"127.0.0.1:{metrics_port}"})
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # supervise sets it; restored after
    handlers = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    source = ConfigSource(str(config_path))
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", metrics_port))
            taken.listen()
            code = supervise(source.load({}), source)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    lines = capfd.readouterr().err.splitlines()
    assert code == 1
    assert "Traceback" in "\n".join(lines)  # each crash is worth its traceback
    pauses = [float(line.split(" in ")[-1].split()[0]) for line in caplog.messages
              if "starting another in" in line]
    assert pauses == [0.5, 1.0, 2.0, 4.0], caplog.messages
    assert lines[-1].startswith("azure-auth-proxy: workers exited 5 times within 30 s"), lines
    assert lines[-1].endswith("giving up")
    assert not children(os.getpid())


def test_probe_names_an_address_that_cannot_be_bound() -> None:
    assert probe_listen("nonexistent.invalid:80", "nonexistent.invalid", 80)
    assert probe_listen("127.0.0.1:0", "127.0.0.1", 0) is None


@pytest.mark.timeout(200)  # a worker stopped before it serves has the 60 s start grace
async def test_a_stuck_worker_is_replaced_and_the_proxy_keeps_serving(
        tmp_path: Path, mock_server: tuple[MockEntra, str], upstream_url: str,
        redis_url: str) -> None:
    mock, idp = mock_server
    port = free_port()
    config = two_workers(tmp_path, port, idp, upstream_url, redis_url,
                         {"worker_stuck_timeout": "2s"})
    proc = run_proxy(config)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url)
        for _ in range(300):  # both workers serving (beating) before one is stopped
            if len(workers_of(proc.pid)) >= 2:
                break
            await asyncio.sleep(0.1)
        stuck = workers_of(proc.pid)[0]
        os.kill(stuck, signal.SIGSTOP)  # its loop no longer runs: no beats
        for _ in range(900):  # a worker not yet serving has 60 s before it counts as stuck
            alive = workers_of(proc.pid)
            if stuck not in alive and len(alive) >= 2:
                break
            await asyncio.sleep(0.1)
        assert stuck not in workers_of(proc.pid)
        assert len(workers_of(proc.pid)) >= 2
        mock.auto_user = ALICE
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(url + "/", headers=HTML) as resp:
                assert resp.status == 200
            for _ in range(20):  # new connections reach only live workers
                async with aiohttp.ClientSession(cookie_jar=client.cookie_jar) as fresh:
                    async with fresh.get(url + "/x", timeout=aiohttp.ClientTimeout(10)) as resp:
                        assert resp.status == 200
        # As before, serving workers reload their config; one still starting (the
        # replacement may be) ignores it rather than dying of it, and reads the file anyway.
        proc.send_signal(signal.SIGHUP)
        for _ in range(300):
            if stderr_of(proc).count("config reloaded") >= 1:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        assert 1 <= stderr_of(proc).count("config reloaded") <= 2
        assert "exited with -1;" not in stderr_of(proc)  # no worker ended by the SIGHUP
        assert proc.poll() is None and len(workers_of(proc.pid)) == 2
        proc.send_signal(signal.SIGTERM)
        code, lines = await finished(proc, within=30)
        assert code == 0
        assert any(f"worker pid {stuck} has not answered" in line for line in lines), lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
