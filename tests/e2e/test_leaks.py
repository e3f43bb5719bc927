"""The leak check itself must be able to fail: a held descriptor or task is caught."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from phonebridge.local import LocalBridge

from .leaks import assert_no_leaks, baseline


async def test_a_descriptor_held_past_the_baseline_is_a_leak(
    bridge: LocalBridge, tmp_path: Path
) -> None:
    before = baseline(bridge)
    with (tmp_path / "held").open("w"), pytest.raises(AssertionError, match="descriptors"):
        await assert_no_leaks(bridge, before, within=0.2)
    await assert_no_leaks(bridge, before)  # given back: clean again


async def test_a_task_left_running_is_a_leak(bridge: LocalBridge) -> None:
    before = baseline(bridge)
    stray = asyncio.create_task(asyncio.sleep(30))
    try:
        with pytest.raises(AssertionError, match="tasks"):
            await assert_no_leaks(bridge, before, within=0.2)
    finally:
        stray.cancel()
        await asyncio.gather(stray, return_exceptions=True)
    await assert_no_leaks(bridge, before)
