"""A new user's first start: the public URL decides whether webhooks can ever work.

``PHONEBRIDGE_PUBLIC_URL=http://127.0.0.1:PORT`` used to pass start-up and then
answer every voice webhook with HTTP 500 (the TwiML builder refuses the
``ws://`` stream URL). Start-up now applies the builder's own rule
(phonebridge/telephony/twilio/stream_url.py) and refuses with one line.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from phonebridge.local import DEMO_AUTH_TOKEN
from phonebridge.telephony.twilio.signature import SIGNATURE_HEADER, sign

from .conftest import serve_process


async def test_an_http_public_url_is_refused_at_start_up_with_one_line(tmp_path: Path) -> None:
    serve = serve_process(tmp_path, "ws://127.0.0.1:9")
    env = {**serve.env, "PHONEBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{serve.port}"}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "phonebridge.cli", "serve"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    problems = [line for line in stderr.decode().splitlines() if line.startswith("  - ")]
    assert len(problems) == 1
    assert f"PHONEBRIDGE_PUBLIC_URL 'http://127.0.0.1:{serve.port}' cannot be used" in problems[0]
    assert "wss://" in problems[0]


async def test_an_https_public_url_answers_the_webhook_with_a_stream(tmp_path: Path) -> None:
    serve = serve_process(tmp_path, "ws://127.0.0.1:9")
    public = f"https://127.0.0.1:{serve.port}"  # what a TLS proxy on this machine would be
    serve.env["PHONEBRIDGE_PUBLIC_URL"] = public
    process = await serve.start("--drain-seconds", "1")
    try:
        form = {"CallSid": "CA" + "5" * 32, "From": "+15005550006", "To": "+14165550102"}
        headers = {SIGNATURE_HEADER: sign(DEMO_AUTH_TOKEN, public + "/twilio/voice", form)}
        async with httpx.AsyncClient() as http:
            answer = await http.post(serve.url + "/twilio/voice", data=form, headers=headers)
        assert answer.status_code == 200
        assert f'url="wss://127.0.0.1:{serve.port}/twilio/media"' in answer.text
    finally:
        process.terminate()
        await process.wait()
