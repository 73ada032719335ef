"""Tests that need a service (PostgreSQL, Chromium): skipped when it is missing, unless CI requires it.

``.ci/run`` installs and starts both and sets ``BLACKBOX_REQUIRE_SERVICES=1``: there a missing
service fails the test instead of skipping it, so CI cannot pass without running them.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRED = os.environ.get("BLACKBOX_REQUIRE_SERVICES") == "1"
CHROMIUM = os.environ.get("BLACKBOX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BLACKBOX_CHROMEDRIVER", "/usr/bin/chromedriver")


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail with it when ``BLACKBOX_REQUIRE_SERVICES=1``."""
    if REQUIRED:
        pytest.fail(f"{reason} (BLACKBOX_REQUIRE_SERVICES=1: this test must run here)")
    pytest.skip(reason)


def postgres_url() -> str:
    url = os.environ.get("BLACKBOX_POSTGRES_URL")
    if not url:
        unavailable("no PostgreSQL: set BLACKBOX_POSTGRES_URL (.ci/run starts one on loopback)")
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(url).connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
    except Exception as error:
        unavailable(f"PostgreSQL at BLACKBOX_POSTGRES_URL does not answer: {error}")
    return url  # type: ignore[return-value]


def chromium() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver (apt-get install chromium chromium-driver)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("selenium is not installed (extra 'test')")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(path)):
            unavailable(f"{path} missing: apt-get install -y {package}")
    return CHROMIUM, CHROMEDRIVER
