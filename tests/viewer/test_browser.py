"""End to end in headless Chromium: upload a face, orbit it by dragging, zoom with the wheel, see the render change.

Needs ``chromium`` and ``chromium-driver`` (Debian/Ubuntu packages) and ``selenium``; skipped without them.
The browser is kept offline: every host name but 127.0.0.1 fails to resolve.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium not found (apt-get install chromium chromium-driver)",
)

ARTEFACTS = "PIX2NERF_TEST_ARTEFACTS"
"""Environment variable naming a folder where the test also saves its screenshot."""
WAIT_S = 20
DRAG_STEPS = ((60, 0), (60, 25))
"""Pointer moves (pixels) of the orbit drag."""
WHEEL_DELTA = -1000
"""A wheel turn away from the user: zooms in."""
MIN_PIXEL_STD = 1.0
MIN_MEAN_DIFFERENCE = 0.5
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--window-size=1000,700",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


def canvas_pixels(driver: webdriver.Chrome) -> np.ndarray:
    """What the page's canvas shows, (H, W, 4) float."""
    url = driver.execute_script("return document.getElementById('view').toDataURL('image/png')")
    return iio.imread(base64.b64decode(url.split(",", 1)[1])).astype(np.float32)


def wait_for_render_of_current_view(driver: webdriver.Chrome, frames_before: int) -> None:
    """Until a new full-resolution frame of the page's current view is on the canvas."""

    def rendered(driver: webdriver.Chrome) -> bool:
        return driver.execute_script(
            "const c = document.getElementById('view');"
            "return +c.dataset.frames > arguments[0] && c.dataset.quality === 'full'"
            " && c.dataset.view === query({});",
            frames_before,
        )

    WebDriverWait(driver, WAIT_S).until(rendered)


def frames(driver: webdriver.Chrome) -> int:
    return int(driver.find_element(By.ID, "view").get_attribute("data-frames"))


def test_orbit_and_zoom_in_the_browser(browser, viewer, head_png, tmp_path):
    browser.get(viewer.url)
    browser.find_element(By.ID, "face-file").send_keys(str(head_png))
    wait_for_render_of_current_view(browser, 0)
    first = canvas_pixels(browser)
    first_render_ms = int(browser.find_element(By.ID, "view").get_attribute("data-first-render-ms"))
    start = browser.execute_script("return {...view}")

    stage = browser.find_element(By.ID, "stage")
    before = frames(browser)
    drag = ActionChains(browser).click_and_hold(stage)
    for dx, dy in DRAG_STEPS:
        drag.move_by_offset(dx, dy)
    drag.release().perform()
    wait_for_render_of_current_view(browser, before)
    orbited = canvas_pixels(browser)
    moved = browser.execute_script("return {...view}")
    assert moved["yaw"] < start["yaw"] and moved["pitch"] > start["pitch"]  # dragged right and down
    assert orbited[..., :3].std() > MIN_PIXEL_STD
    assert np.abs(orbited - first).mean() > MIN_MEAN_DIFFERENCE

    before = frames(browser)
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(stage), 0, WHEEL_DELTA).perform()
    wait_for_render_of_current_view(browser, before)
    assert browser.execute_script("return view.zoom") > 1
    assert np.abs(canvas_pixels(browser) - orbited).mean() > MIN_MEAN_DIFFERENCE

    screenshot = tmp_path / "viewer.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get(ARTEFACTS):
        folder = Path(os.environ[ARTEFACTS])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, folder / "viewer.png")
    print(f"first render {first_render_ms} ms after the upload; screenshot {screenshot}")


def test_bad_upload_shows_the_servers_message(browser, viewer, tmp_path):
    browser.get(viewer.url)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    browser.find_element(By.ID, "face-file").send_keys(str(bad))
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, WAIT_S).until(lambda _: "cannot decode image notes.png" in error.text)
