"""A few-second run of the benchmark harness (bench/run.py --smoke), so it cannot rot.

Only the proxy's own part: the proxy with the cookie store signed in through the mock's
page and driven with load (wrk when installed, else the harness's Python load generator),
a small streamed upload/download, a few idle WebSockets and the session-check
micro-benchmark. The full comparison with Apache and nginx is `make bench`, never a test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_prints_a_table_with_the_proxys_req_per_second(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--only", "proxy-cookie,stream,ws,session",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=110)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    row = re.search(r"^Authenticated GET\s+azure-auth-proxy cookie, 1 worker\s+([\d,]+)\s",
                    done.stdout, re.MULTILINE)
    assert row, done.stdout[-3000:]
    assert int(row.group(1).replace(",", "")) > 0
    for scenario in ("Unauthenticated GET", "Forward-auth check"):
        assert re.search(rf"^{scenario}\s+azure-auth-proxy cookie, 1 worker\s+[\d,]+\s",
                         done.stdout, re.MULTILINE), done.stdout[-3000:]
    assert "MiB streamed upload through the proxy" in done.stdout
    assert "idle WebSockets" in done.stdout and "session check" in done.stdout
    results = (tmp_path / "results.md").read_text()
    assert "| Authenticated GET | azure-auth-proxy cookie, 1 worker |" in results
