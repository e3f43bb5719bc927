"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright).

After a real simulated call: open the list with basic-auth credentials, find
the call, open it, play the recording, click a transcript timestamp and see
the player seek there, see the transcript text and a drawn waveform canvas.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from phonebridge.local import LocalBridge

from .conftest import CITYSAN, TOKEN, place_call

CHROMIUM = Path("/usr/bin/chromium")
EXECUTABLE = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
SCREENSHOTS = Path("/tmp")  # a place to look at what the test saw

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        EXECUTABLE is None,
        reason="Debian chromium is not installed (CI installs it)",
    ),
]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

# counts canvas pixels that are not transparent: the waveform was really drawn
DRAWN_PIXELS = """(canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn++;
  return drawn;
}"""


async def test_dashboard_finds_plays_and_seeks_a_call(bridge: LocalBridge) -> None:
    record = await place_call(bridge, CITYSAN, from_="+15005550077", tail=2.5)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=EXECUTABLE, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                http_credentials={"username": "operator", "password": TOKEN},
                viewport={"width": 1280, "height": 900},
            )
            page = await context.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            await page.goto(bridge.url + "/")
            row = page.locator(f'tr[data-call-sid="{record.call_sid}"]')
            await row.wait_for()
            assert "+15005550077" in await row.inner_text()
            assert "citysan" in await row.inner_text()
            await page.screenshot(path=str(SCREENSHOTS / "phonebridge-dashboard-list.png"))

            # search narrows the list to the number typed
            await page.fill('input[name="number"]', "5550077")
            await page.click('form#search button[type="submit"]')
            await page.wait_for_url("**/?number=5550077*")
            await row.wait_for()
            assert await page.locator("tbody tr").count() == 1

            await row.locator("a").click()
            await page.wait_for_url(f"**/calls/{record.call_sid}")
            transcript = page.locator("#transcript")
            await transcript.get_by_text("thanks for calling").wait_for()
            await page.wait_for_function(
                "document.getElementById('waveform').dataset.drawn === '1'"
            )
            canvas = page.locator("#waveform")
            assert await canvas.evaluate(DRAWN_PIXELS) > 500

            audio = page.locator("#audio")
            await audio.evaluate("(a) => { a.muted = true; return a.play(); }")
            await page.wait_for_function("document.getElementById('audio').currentTime > 0")

            # a timestamp well inside the recording, so "moved to it" cannot be luck
            duration = await audio.evaluate("(a) => a.duration")
            times = [
                float(t)
                for t in await transcript.locator("button.at").evaluate_all(
                    "(buttons) => buttons.map((b) => b.dataset.t)"
                )
            ]
            inside = [t for t in times if 1.0 <= t <= duration - 0.75]
            assert inside, (times, duration)
            target = inside[0]
            stamp = transcript.locator(f'button.at[data-t="{target}"]').first
            await audio.evaluate("(a) => { a.pause(); a.currentTime = 0; }")
            await stamp.click()
            await page.wait_for_function(
                f"Math.abs(document.getElementById('audio').currentTime - {target}) < 0.5"
            )
            facts = await page.locator(".facts").inner_text()
            assert "citysan" in facts
            assert record.call_sid in facts
            await page.screenshot(
                path=str(SCREENSHOTS / "phonebridge-dashboard-call.png"), full_page=True
            )
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.screenshot(
                path=str(SCREENSHOTS / "phonebridge-dashboard-phone.png"), full_page=True
            )
            assert errors == []
            await context.close()
        finally:
            await browser.close()
