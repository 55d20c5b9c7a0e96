"""The status page as an operator meets it: `python -m worker web` served by gunicorn on a free
loopback port, over a real database holding real runs, driven in Debian's Chromium by Selenium.

The browser is Debian's (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `make test` installs them
with scripts/ensure-chromium); Selenium Manager is kept offline, so no test ever downloads one.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli, Database
from tests.support import (
    FeedServer,
    StatusPage,
    load_fixture,
    serving_status_page,
    synthetic_feed,
)

os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never a download, whatever is missing

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Headless, and nothing that reaches for the network (this machine has none to give).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1",
)  # fmt: skip
STATUS_PASSWORD = "St4tus-Page-Pa55-Distinctive"
PARAM_SECRET = "Param-Secret-Value-0451"
FEED_TOKEN = "Feed-Token-Value-0451"


@pytest.fixture
def status_page(cli: Cli) -> Iterator[StatusPage]:
    """`python -m worker web` on a free loopback port, once it answers."""
    with serving_status_page(cli, STATUS_PASSWORD, EARTHQUAKES_SCHEDULE="0 3 * * *") as page:
        yield page


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's Chromium, headless, on a fresh profile; its requests carry the page's password."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (
        f"{', '.join(missing)} missing: run scripts/ensure-chromium (make test does)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="nightshift-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            driver.execute_cdp_cmd("Network.enable", {})
            # The viewport itself, not the window around it: what the screenshot shows.
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            )
            yield driver
        finally:
            driver.quit()


def sign_in(driver: webdriver.Chrome, password: str = STATUS_PASSWORD) -> None:
    """Send HTTP Basic credentials with every request the browser makes from now on."""
    token = base64.b64encode(f"operator:{password}".encode()).decode()
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )


@dataclass
class History:
    """The runs `history` made, by what each shows."""

    rejected: int  # earthquakes, succeeded, one row refused
    loaded: list[int]  # earthquakes, succeeded
    with_params: int  # earthquakes, succeeded, run with region=ca and a credential parameter
    failed: int  # earthquakes, failed: the feed answered 500
    other_job_failed: int  # earthquakes_history, failed: its service is unreachable

    @property
    def earthquakes(self) -> list[int]:
        return [self.rejected, *self.loaded, self.with_params, self.failed]


@pytest.fixture
def history(cli: Cli, db: Database, feed: FeedServer) -> History:
    """Real runs through the real CLI: a refused row, loads, parameters, two failures."""
    document = synthetic_feed(40)
    document["features"][7]["properties"]["mag"] = "strong"  # the table refuses it
    feed.serve(document)
    assert cli("run", "earthquakes").returncode == 0
    feed.serve(load_fixture())
    for _ in range(2):
        assert cli("run", "earthquakes").returncode == 0
    params = ("--param", "region=ca", "--param", f"api_key={PARAM_SECRET}")
    assert cli("run", "earthquakes", *params).returncode == 0
    feed.fail(500, b'{"error": "upstream"}')
    secret_feed = f"{feed.url}?token={FEED_TOKEN}"
    assert cli("run", "earthquakes", USGS_FEED_URL=secret_feed).returncode == 1
    assert cli("run", "earthquakes_history", HTTP_RETRIES="0").returncode == 1
    ids = [row["id"] for row in db.runs()]
    assert len(ids) == 6
    return History(ids[0], ids[1:3], ids[3], ids[4], ids[5])
