"""The Talk page in real Chromium: a browser call, wideband end to end (issue 13).

Chromium's fake microphone plays a generated caller (speech with a 6 kHz tone
on it, then quiet, looping); the PersonaPlex simulator (a TEST DOUBLE) keeps
the 24 kHz audio it decoded, so the test can look at what the "model" heard.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from phonebridge.local import LocalBridge, SimulatorOptions
from phonebridge.simulators.personaplex.records import ConnectionRecord

from ..e2e.leaks import assert_no_leaks, baseline
from .conftest import TOKEN, BridgeFactory, record_of
from .talk_helpers import (
    EXECUTABLE,
    QUIET_SECONDS,
    VOICED_SECONDS,
    chromium_args,
    energy_above,
    voiced_runs,
    write_wideband_caller,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(EXECUTABLE is None, reason="Debian chromium is not installed (CI does)"),
]

USER = "alice"
# the agent is audible in the page: the analyser's peak over the last 2048 samples
PEAK = """() => {
  const call = window.talk.call;
  if (!call) return 0;
  const data = new Float32Array(call.analyser.fftSize);
  call.analyser.getFloatTimeDomainData(data);
  return data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}"""


@pytest.fixture
async def talk_bridge(start_bridge: BridgeFactory) -> AsyncIterator[LocalBridge]:
    options = SimulatorOptions(
        reply="speech", conditioning_delay=0.05, extra={"keep_input_seconds": 30}
    )
    async with start_bridge(simulators=options, dashboard_token=TOKEN) as running:
        yield running


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    capture = write_wideband_caller(tmp_path / "caller.wav")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=EXECUTABLE, args=chromium_args(capture)
        )
        try:
            yield launched
        finally:
            await launched.close()


async def open_talk(browser: Browser, bridge: LocalBridge, user: str = USER) -> Page:
    context = await browser.new_context(http_credentials={"username": user, "password": TOKEN})
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(bridge.url + "/talk")
    return page


async def start_call(page: Page, persona: str | None = "citysan") -> str:
    if persona is not None:  # choosing a persona refills the try-a-prompt fields
        await page.select_option("#persona", persona)
    await page.click("#call")
    await page.wait_for_function("window.talk.call && window.talk.call.callSid")
    sid: str = await page.evaluate("window.talk.call.callSid")
    return sid


async def model_heard(sim_connections: list[ConnectionRecord], seconds: float) -> ConnectionRecord:
    """The newest model connection, once it has consumed ``seconds`` of input."""
    async with asyncio.timeout(30):
        while True:
            if sim_connections and len(sim_connections[-1].input_pcm) >= seconds * 48000:
                return sim_connections[-1]
            await asyncio.sleep(0.05)


async def test_a_browser_call_is_wideband_end_to_end(
    talk_bridge: LocalBridge, browser: Browser
) -> None:
    before = baseline(talk_bridge)
    page = await open_talk(browser, talk_bridge)
    call_sid = await start_call(page)
    sim = talk_bridge.self_hosted[0]

    # The model hears the caller at 24 kHz: the 6 kHz tone arrives (a phone
    # leg caps at 4 kHz), and the loud stretches are the file's 2 s of speech.
    record = await model_heard(sim.connections, 2 * (QUIET_SECONDS + VOICED_SECONDS))
    heard = bytes(record.input_pcm)
    assert energy_above(heard, 24000, 4000) > 0.05
    assert energy_above(heard, 24000, 5500) > 0.03
    runs = voiced_runs(heard, 24000)
    whole = [run for run in runs[1:-1]] or runs
    assert whole, runs
    assert all(abs(run - VOICED_SECONDS) <= 0.4 for run in whole), runs

    # The page plays the agent (the simulator's spoken greeting) and shows its words.
    await page.wait_for_function(f"({PEAK})() > 0.05")
    await page.locator("#agent-text").get_by_text("thanks for calling").wait_for()

    # Hang up: the model socket closes at once, the call is recorded as the user's.
    await page.click("#hangup")
    async with asyncio.timeout(3):
        closed = await sim.wait_for_close(len(sim.connections) - 1)
    assert closed.end == "client closed"
    row = await record_of(talk_bridge, call_sid)
    assert row.end_reason == "caller_hangup"
    assert row.ended_by == "caller"
    assert row.channel == "browser"
    assert row.placed_by == USER
    assert row.recording_path is not None
    assert row.transcript_path is not None
    with wave.open(row.recording_path, "rb") as wav:
        assert wav.getframerate() == 24000
        assert wav.getnchannels() == 2
        assert wav.getnframes() > 24000
    transcript = await asyncio.to_thread(Path(row.transcript_path).read_text)
    assert "thanks for calling" in transcript
    assert page.errors == []  # type: ignore[attr-defined]
    await page.context.close()
    await assert_no_leaks(talk_bridge, before)


async def test_try_a_prompt_reaches_the_model_and_closing_the_tab_ends_the_call(
    talk_bridge: LocalBridge, browser: Browser, personas_dir: Path
) -> None:
    before = baseline(talk_bridge)
    persona_file = personas_dir / "citysan.yaml"
    original = await asyncio.to_thread(persona_file.read_bytes)
    page = await open_talk(browser, talk_bridge)
    await page.select_option("#persona", "citysan")
    await page.click("#try-prompt summary")
    await page.check("#override")
    await page.fill("#prompt", "You are a pirate who only talks about the weather.")
    await page.select_option("#voice", "VARM3")
    call_sid = await start_call(page, persona=None)
    sim = talk_bridge.self_hosted[0]
    await sim.wait_for_connections(1)
    query = sim.connections[-1].query
    assert query["text_prompt"] == ["You are a pirate who only talks about the weather."]
    assert query["voice_prompt"] == ["VARM3.pt"]
    await page.wait_for_function(f"({PEAK})() > 0.05")

    # Closing the tab is a caller who drops: the call ends, nothing is left.
    await page.context.close()
    row = await record_of(talk_bridge, call_sid)
    assert row.end_reason == "caller_dropped"
    assert row.channel == "browser"
    assert await asyncio.to_thread(persona_file.read_bytes) == original
    transcript = await asyncio.to_thread(Path(str(row.transcript_path)).read_text)
    assert "prompt_override" in transcript
    await assert_no_leaks(talk_bridge, before)


async def test_listen_in_hears_both_sides_until_the_call_ends(
    talk_bridge: LocalBridge, browser: Browser
) -> None:
    talker = await open_talk(browser, talk_bridge)
    call_sid = await start_call(talker)
    await talker.wait_for_function(f"({PEAK})() > 0.05")

    # The live-calls view links to the listen page.
    listener = await open_talk(browser, talk_bridge, user="bob")
    await listener.goto(talk_bridge.url + "/")
    await listener.locator(f'tr[data-call-sid="{call_sid}"] a.listen').click()
    await listener.wait_for_url(f"**/calls/{call_sid}/listen")
    await listener.select_option("#mode", "split")
    await listener.click("#start")
    await listener.wait_for_function(
        "window.listen.session && window.listen.session.bytes[0] > 48000"
        " && window.listen.session.bytes[1] > 48000"
    )
    await talker.click("#hangup")
    await listener.wait_for_function("window.listen.session.ended === true")
    row = await record_of(talk_bridge, call_sid)
    transcript = await asyncio.to_thread(Path(str(row.transcript_path)).read_text)
    assert "bob started listening" in transcript
    assert listener.errors == []  # type: ignore[attr-defined]

    # Without auth: no listen ticket, no page.
    anonymous = await browser.new_context()
    response = await anonymous.request.post(talk_bridge.url + f"/api/calls/{call_sid}/listen")
    assert response.status == 401
    response = await anonymous.request.get(talk_bridge.url + f"/calls/{call_sid}/listen")
    assert response.status == 401
    await anonymous.close()
