"""Real-browser tests: ``streamlit run`` on 127.0.0.1 driven by Playwright with Debian's Chromium.

The browser is ``/usr/bin/chromium`` (``apt-get install -y chromium``); nothing
is downloaded at run time.  Without it these tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def start_app(db_url: str, *, extra_env: dict | None = None):
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=db_url, SURVEILLANCE_INPROCESS_SCHEDULER="0", **(extra_env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"), f"--server.port={port}",
         "--server.address=127.0.0.1", "--server.headless=true", "--browser.gatherUsageStats=false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError("streamlit exited:\n" + proc.stdout.read())
    proc.terminate()
    raise RuntimeError("streamlit did not become healthy within 60 s")


def stop_app(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def wait_settled(page, timeout: int = 60_000) -> None:
    """Wait until the script run is over (no "Running…"/Stop widget): until then the page may still show
    the previous run's elements beside the new ones (two forms for one field)."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout)
