"""The overview page and the transcript's sentences in headless Chromium (Debian's, via Playwright).

The charts are read back from the SVG (every bar and dot carries its series,
bucket and value) and compared with ``/api/stats/overview``: the page draws
what the API says, for real calls placed in the test and for known rows.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright

from phonebridge.local import LocalBridge

from .conftest import TOKEN
from .overview_data import KNOWN_FROM, KNOWN_TO, insert_known_rows, place_real_calls
from .test_browser import CHROMIUM_ARGS, EXECUTABLE, SCREENSHOTS, pytestmark  # noqa: F401

MARKS = """(chart) => [...document.querySelectorAll(`svg[data-chart="${chart}"] [data-series]`)]
  .map((m) => [m.dataset.series, m.dataset.bucket || "", Number(m.dataset.value)])"""


async def api(bridge: LocalBridge, query: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=bridge.url, headers=headers, timeout=10) as http:
        response = await http.get("/api/stats/overview" + query)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def bars(data: dict[str, Any], series: list[str]) -> list[tuple[str, str, float]]:
    """The non-zero (series, bucket, value) the API gives, in drawing order."""
    found = []
    for bucket in data["buckets"]:
        for name in series:
            if bucket[name] > 0:
                found.append((name, bucket["start"], float(bucket[name])))
    return found


def socket_bars(data: dict[str, Any]) -> list[tuple[str, str, float]]:
    order = [p["provider"] for p in data["providers"]]
    return [
        (name, b["start"], b["model_socket_seconds"][name])
        for b in data["buckets"]
        for name in order
        if b["model_socket_seconds"].get(name, 0) > 0
    ]


def dots(data: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [
        (name, b["start"], b["first_agent_audio"][name])
        for name in ("p50", "p95")
        for b in data["buckets"]
        if b["first_agent_audio"][name] is not None
    ]


async def open_overview(page: Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for_selector('#overview[data-state="ready"]')


async def read(page: Page, chart: str) -> list[tuple[str, str, float]]:
    marks = await page.evaluate(MARKS, chart)
    return [(series, bucket, value) for series, bucket, value in marks]


def iso_z(values: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    return [(s, b, round(v, 9)) for s, b, v in values]


async def test_the_charts_draw_what_the_api_says(bridge: LocalBridge) -> None:
    calls = await place_real_calls(bridge)
    await insert_known_rows(bridge)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=EXECUTABLE, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                http_credentials={"username": "operator", "password": TOKEN},
                viewport={"width": 1280, "height": 1400},
            )
            page = await context.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # The default range (the last 24 hours) holds the real calls.
            await open_overview(page, bridge.url + "/overview")
            data = await api(bridge, "")
            assert data["totals"]["calls"] == 3
            kinds = ["answered", "busy", "refused", "unanswered"]
            drawn = await read(page, "calls")
            assert iso_z(drawn) == iso_z(bars(data, kinds))
            assert sum(v for _, _, v in drawn) == 3
            assert {s for s, _, _ in drawn} == {"answered", "busy"}
            assert iso_z(await read(page, "socket")) == iso_z(socket_bars(data))
            assert {s for s, _, _ in await read(page, "socket")} == {"personaplex", "polargrid"}
            assert iso_z(await read(page, "first-audio")) == iso_z(dots(data))
            kpi = await page.inner_text('[data-kpi="calls"] .value')
            assert kpi == "3"
            await page.screenshot(path=str(SCREENSHOTS / "phonebridge-overview-live.png"))

            # The known rows, by the hour: the range comes from the URL and shows in the form.
            query = f"?from={KNOWN_FROM}&to={KNOWN_TO}&bucket=hour"
            await open_overview(page, bridge.url + "/overview" + query)
            data = await api(bridge, query)
            assert await page.input_value('input[name="from"]') == KNOWN_FROM
            assert iso_z(await read(page, "calls")) == iso_z(bars(data, kinds))
            assert iso_z(await read(page, "minutes")) == iso_z(bars(data, ["minutes"]))
            assert iso_z(await read(page, "refusals")) == iso_z(bars(data, ["busy", "refused"]))
            assert iso_z(await read(page, "socket")) == iso_z(socket_bars(data))
            assert iso_z(await read(page, "first-audio")) == iso_z(dots(data))
            reasons = [(r["end_reason"], "", float(r["calls"])) for r in data["end_reasons"]]
            assert await read(page, "end-reasons") == reasons
            # hovering a bar's hour shows its figures
            box = await page.locator('svg[data-chart="calls"]').bounding_box()
            assert box is not None
            await page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
            tip = page.locator("#chart-calls .tooltip")
            await tip.wait_for(state="visible")
            assert "09:00" in await tip.inner_text()
            assert "busy: 1" in await tip.inner_text()
            await page.screenshot(path=str(SCREENSHOTS / "phonebridge-overview-known.png"))

            # A preset button picks a range and the page follows it.
            await page.click('button[data-hours="720"]')
            await page.wait_for_url("**/overview?from=*bucket=day*")
            await page.wait_for_selector('#overview[data-state="ready"]')
            assert await page.input_value('select[name="bucket"]') == "day"

            # An impossible range says why, and draws nothing.
            await page.goto(bridge.url + "/overview?from=2020-01-01&to=2025-01-01&bucket=hour")
            await page.wait_for_selector('#overview[data-state="error"]')
            assert "too many" in await page.inner_text("#range-summary")
            assert await page.locator("svg[data-chart] [data-series]").count() == 0

            # The transcript view: call events as sentences, never raw JSON.
            await page.goto(bridge.url + f"/calls/{calls.long.call_sid}")
            lines = page.locator("#transcript li[data-event]")
            await lines.first.wait_for()
            text = await page.inner_text("#transcript")
            assert "Call answered (stream MZ" in text
            assert "Model ready on personaplex (took " in text
            assert "Caller pressed 5" in text
            assert "Hang-up: the caller hung up (caller_hangup, by caller)" in text
            assert "Call record: caller_hangup by caller" in text
            assert "{" not in text
            assert "model_socket_seconds" not in text
            kinds_in_order = await page.eval_on_selector_all(
                "#transcript li[data-event]", "(items) => items.map((li) => li.dataset.event)"
            )
            assert kinds_in_order[0] == "answered"
            assert kinds_in_order[-1] == "call"
            times = await page.eval_on_selector_all(
                "#transcript li", "(items) => items.map((li) => Number(li.dataset.t))"
            )
            assert times == sorted(times)  # utterances and events interleaved by time
            assert await page.locator("#transcript .who.agent").count() > 0
            await page.screenshot(path=str(SCREENSHOTS / "phonebridge-transcript-facts.png"))

            await page.goto(bridge.url + f"/calls/{calls.overflow.call_sid}")
            await page.locator("#transcript li[data-event]").first.wait_for()
            assert "Overflow to polargrid" in await page.inner_text("#transcript")
            assert "Model ready on polargrid" in await page.inner_text("#transcript")
            assert errors == [], json.dumps(errors)
        finally:
            await browser.close()
