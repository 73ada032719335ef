"""Headless Debian Chromium driven by selenium, for the dashboard's browser test and README screenshot.

The driver is the system's ``chromedriver`` passed explicitly, so selenium-manager never downloads
one; the browser starts with a fresh profile and no background traffic.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1300,1000",
)


@contextmanager
def headless_chromium(binary: str, driver: str) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    with tempfile.TemporaryDirectory(prefix="blackbox-chromium-") as profile:
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        try:
            yield browser
        finally:
            browser.quit()


def loaded_images(browser, *, count: int, timeout: float = 30.0) -> list:
    """Wait until the page shows at least ``count`` fully decoded ``<img>`` elements; return them all."""
    deadline = time.monotonic() + timeout
    while True:
        images = [
            image
            for image in browser.find_elements("tag name", "img")
            if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)
        ]
        if len(images) >= count or time.monotonic() > deadline:
            return images
        time.sleep(0.2)
