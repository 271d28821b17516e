"""What the browser checks share: headless Chromium from Debian's chromium and chromium-driver, via Selenium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(*extra_flags: str, window: str = "1400,1000", capabilities: dict | None = None):
    """Headless Chromium through Debian's chromedriver, at ``window`` size, with ``extra_flags`` added."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium to run the browser check")
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).is_file() and shutil.which(Path(program).name) is None:
            pytest.fail(f"{program} is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--window-size={window}",
        "--hide-scrollbars",
        *extra_flags,
    ):
        options.add_argument(flag)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    service = Service(CHROMEDRIVER if Path(CHROMEDRIVER).is_file() else shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    return driver
