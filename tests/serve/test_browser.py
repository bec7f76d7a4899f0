"""The upload page in headless Chromium: upload a photo, see boxes drawn in the screenshot.

Needs Debian's ``chromium`` package (``/usr/bin/chromium``) and the ``playwright`` Python
package; Playwright's own browser downloads are not used.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodet.live_server import live_server
from prodet.serve.draw import class_color

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _coloured_pixels(png: bytes, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    return int(np.all(np.abs(pixels - np.int16(rgb)) <= tolerance, axis=2).sum())


def test_upload_page_draws_boxes(model_path: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright)"
    )
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Debian chromium not installed (apt-get install -y chromium)")
    executable = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    photo = tmp_path / "product.png"
    Image.new("RGB", (320, 240), (230, 230, 230)).save(photo)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"just text")
    bottle, can = class_color(1), class_color(2)

    with (
        live_server(
            tmp_path / "server.log", "--model", str(model_path), "--provider", "cpu"
        ) as server,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=LAUNCH_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            page.goto(f"{server.url}/")
            page.wait_for_function("document.querySelector('#model').textContent.includes('tiny')")
            before = page.screenshot(full_page=True)
            assert _coloured_pixels(before, bottle) == 0

            page.set_input_files("#file", str(photo))
            page.click("#submit")
            page.wait_for_selector("body[data-state=done]", timeout=15_000)
            assert page.locator("#table tbody tr").count() == 3
            assert "3 detections in 320×240 px" in page.locator("#status").text_content()
            after = page.screenshot(full_page=True)
            (tmp_path / "screenshot.png").write_bytes(after)
            assert _coloured_pixels(after, bottle) > 500, "no bottle-coloured box pixels"
            assert _coloured_pixels(after, can) > 200, "no can-coloured box pixels"
            canvas = page.locator("#canvas").screenshot()
            assert _coloured_pixels(canvas, bottle) > 300

            page.set_input_files("#file", str(not_an_image))
            page.click("#submit")
            page.wait_for_selector("body[data-state=error]", timeout=15_000)
            assert "Error 415" in page.locator("#status").text_content()
        finally:
            browser.close()
