"""The operator console in a real browser: headless Chromium from Debian's `chromium` package,
driven by Selenium through Debian's `chromium-driver` (nothing is downloaded), against the
real `ipaas-klaviyo admin` server, a real worker and both sandboxes. Each page visited is
saved under artifacts/screenshots/. Run with `make test-browser`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.manual_sync import enqueue_customer, wait_for_steps
from sandbox.local_stack import LocalStack
from sandbox.samples import customer
from worker.adapters.dead_letters import DeadLetterStore

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PASSWORD = "browser-test-password"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1280,1000")


def person(customer_id: int, phone: str = "", first: str = "Ana") -> dict[str, Any]:
    return customer(customer_id, first, f"Test{customer_id}", f"c{customer_id}@example.com",
                    phone or f"2015552{customer_id % 1000:03d}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def console_url(stack: LocalStack) -> Iterator[str]:
    port = free_port()
    env = {**stack.env(), "ADMIN_PASSWORD": PASSWORD}
    process = subprocess.Popen(
        [sys.executable, "-m", "producers.cli", "admin", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode()[-2000:] if process.stderr else ""
                raise AssertionError(f"console exited: {err}")
            try:
                urllib.request.urlopen(url + "/login", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("install Debian's chromium and chromium-driver (see README, Development)",
                    pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(10)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    return path


def click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()


def arrived(driver: Any, path: str, css: str) -> Any:
    """Wait until the browser shows ``path`` with ``css`` on it (a click navigates
    asynchronously: reading the page before then reads the old one); the element."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)
    wait.until(ec.url_contains(path))
    return wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def sync_and_wait(stack: LocalStack, *records: dict[str, Any]) -> dict[str, Any]:
    for record in records:
        stack.ipaas.put_customer(record)
    results = [(str(r["id"]), enqueue_customer(str(r["id"]))) for r in records]
    return {cid: {o["step"]: o for o in wait_for_steps(r, timeout=90)} for cid, r in results}


def test_sign_in_replay_a_dead_letter_and_preview_a_customer(
        stack: LocalStack, console_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    outcomes = sync_and_wait(stack, person(7101, "555-01"), person(7102), person(7103),
                             person(7104, "555-02"))
    assert outcomes["7101"]["profile"]["reason"] == "invalid_phone"
    stack.ipaas.put_customer(person(7101))  # fixed: the replay will go through
    stack.ipaas.put_customer(person(7102, first="Beatriz"))  # preview shows this change

    browser.get(console_url + "/")
    arrived(browser, "/login", "#password")
    shot(browser, "01-login")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    click(browser, "#sign-in")
    arrived(browser, "/", "svg.chart")
    assert "Queues and steps" in browser.page_source
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    shot(browser, "02-overview")

    browser.find_element(By.LINK_TEXT, "Dead letters").click()
    arrived(browser, "/dead-letters", "input[name=ids][value='profile:7101']").click()
    shot(browser, "03-dead-letters")
    click(browser, "#replay-selected")
    arrived(browser, "/dead-letters/confirm", "#confirm")
    assert "Replay 1 entry?" in browser.find_element(By.TAG_NAME, "h1").text
    shot(browser, "04-confirm-replay")
    click(browser, "#confirm")
    message = arrived(browser, "/dead-letters", ".message")
    assert "1 replayed, 0 not replayed" in message.text
    shot(browser, "05-replayed")
    store = DeadLetterStore(stack.redis())
    assert store.get("profile:7101") is None and store.get("profile:7104") is not None

    browser.find_element(By.LINK_TEXT, "Customer").click()
    arrived(browser, "/customer", "#customer-id").send_keys("7102")
    click(browser, "#search")
    arrived(browser, "id=7102", "#preview")
    assert "open in Klaviyo" in browser.page_source
    shot(browser, "06-customer")
    click(browser, "#preview")
    arrived(browser, "/preview", "table.diff")
    changed = browser.find_elements(By.CSS_SELECTOR, "table.diff tr.differs td:first-child")
    assert [c.text for c in changed] == ["first_name"]
    shot(browser, "07-preview")
