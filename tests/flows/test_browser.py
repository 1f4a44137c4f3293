"""`azure-auth-proxy demo` in a real browser: headless Debian Chromium driven by selenium.

Signs in on the mock Entra ID page, reads the identity the upstream received, opens a
WebSocket from the page, signs out. Screenshots land in tests/artifacts/ (ignored by git).
`make test` installs the Debian `chromium` and `chromium-driver` packages when missing;
this test fails, never skips, without them. Nothing is ever downloaded: the driver path is
explicit, so selenium-manager is not run.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import ALICE, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WAIT = 20  # seconds, for every wait on the browser
# --disable-background-networking & co.: no calls to Google's services (the network is closed).
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
)

pytestmark = pytest.mark.timeout(180)


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: `apt-get install chromium chromium-driver`"
                    " (or run `make test`, which installs them)", pytrace=False)


def read_banner(proc: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float = 30) -> str:
    """The demo's stdout up to its "Press Ctrl+C" line."""
    assert proc.stdout is not None
    fd, printed, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while b"Press Ctrl+C" not in printed:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            stderr.seek(0)
            pytest.fail(f"demo did not start (exit code {proc.poll()}):\n"
                        f"{printed.decode()}\n{stderr.read().decode()[-3000:]}")
        printed += chunk
    return printed.decode()


@contextmanager
def demo(port: int) -> Iterator[str]:
    """Run `azure-auth-proxy demo --port N`; yields what it printed."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "demo", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=stderr)
        try:
            yield read_banner(proc, stderr)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


@contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


def wait_for_heading(driver: WebDriver, text: str) -> None:
    WebDriverWait(driver, WAIT).until(
        ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), text),
        f"no <h1> with {text!r}; at {driver.current_url}")


def header_value(driver: WebDriver, name: str) -> str:
    """The Value cell of the demo upstream's header table for `name`."""
    for row in driver.find_elements(By.CSS_SELECTOR, "table tbody tr"):
        cells = row.find_elements(By.TAG_NAME, "td")
        if cells and cells[0].text.strip().lower() == name.lower():
            return str(cells[1].text.strip())
    raise AssertionError(f"no {name} row in the headers table:\n{driver.page_source[:2000]}")


def test_demo_in_headless_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_browser()
    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: selenium-manager never downloads
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with demo(port) as printed, chromium(tmp_path / "profile") as driver:
        assert f"Open  {url}" in printed and ALICE in printed
        idp = re.search(r"Mock Entra ID: (http://127\.0\.0\.1:\d+)/", printed)
        assert idp, printed

        # Not signed in: the proxy sends the browser to the mock's account picker.
        driver.get(url)
        wait_for_heading(driver, "Pick an account")
        assert driver.current_url.startswith(idp.group(1) + "/")
        assert driver.title == "Sign in to your account"
        driver.find_element(By.CSS_SELECTOR, f'button[name="user"][value="{ALICE}"]').click()

        # Back through /oauth2/callback to the upstream, which shows what the proxy added.
        wait_for_heading(driver, "Hello, Alice")
        assert driver.current_url == url
        assert header_value(driver, "X-Forwarded-User") == ALICE

        # A WebSocket opened by the page's own script, through the proxy, with its cookie.
        driver.find_element(By.ID, "ws").click()
        WebDriverWait(driver, WAIT).until(
            ec.text_to_be_present_in_element((By.ID, "wsout"), "echo: ping"),
            "the page's WebSocket got no echo")
        assert driver.find_element(By.ID, "wsout").text == "echo: ping"
        assert driver.save_screenshot(str(ARTIFACTS / "browser-signed-in.png"))

        driver.find_element(By.LINK_TEXT, "Sign out").click()
        wait_for_heading(driver, "Signed out")
        assert driver.current_url == url + "oauth2/sign_out"
        assert "You have been signed out." in driver.find_element(By.TAG_NAME, "main").text
        assert driver.save_screenshot(str(ARTIFACTS / "browser-sign-out-page.png"))

        # The session is gone: the root sends the browser to sign in again.
        driver.get(url)
        wait_for_heading(driver, "Pick an account")
        assert driver.current_url.startswith(idp.group(1) + "/")
        assert driver.find_elements(By.CSS_SELECTOR, f'button[name="user"][value="{ALICE}"]')
        assert driver.save_screenshot(str(ARTIFACTS / "browser-signed-out.png"))
