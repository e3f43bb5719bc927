"""A real bridge with an S3 object store: the call is uploaded when it ends and any
replica's API serves it from the store once it is not on local disk.

S3 is moto's threaded server: a TEST DOUBLE speaking the real S3 HTTP API on
loopback (tests/realservers/moto_s3.py); the bridge's boto3 client is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import boto3
import httpx
import pytest

from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys, resolve_inside

from ..realservers.moto_s3 import ACCESS_KEY_ID, BUCKET, REGION, SECRET_ACCESS_KEY, MotoS3
from .conftest import CITYSAN, TOKEN, BridgeFactory, place_call


@pytest.fixture
def moto_s3() -> Iterator[MotoS3]:
    with MotoS3() as server:
        client = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        client.create_bucket(Bucket=BUCKET)
        client.close()
        yield server


async def test_a_finished_call_reaches_the_store_and_is_served_from_it(
    start_bridge: BridgeFactory, moto_s3: MotoS3
) -> None:
    settings = {
        "dashboard_token": TOKEN,
        "s3_bucket": BUCKET,
        "s3_endpoint_url": moto_s3.url,
        "s3_prefix": "bridge/",
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
        "aws_region": REGION,
    }
    async with start_bridge(**settings) as bridge:
        record = await place_call(bridge, CITYSAN)
        index = await CallIndex.create(bridge.settings.effective_database_url)
        try:
            async with asyncio.timeout(20):
                while True:
                    stored = await index.get(record.call_sid)
                    assert stored is not None
                    if stored.files_stored_at is not None:
                        break
                    await asyncio.sleep(0.05)
        finally:
            await index.close()
        assert record.recording_path is not None
        local = resolve_inside(bridge.settings.data_dir, record.recording_path)
        on_disk = local.read_bytes()
        keys = call_keys(record.call_sid, record.started_at)
        s3 = boto3.client(
            "s3",
            endpoint_url=moto_s3.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        try:
            body = s3.get_object(Bucket=BUCKET, Key="bridge/" + keys.recording)["Body"].read()
        finally:
            s3.close()
        assert body == on_disk

        # as on a replica whose disk never had the call: the spool copy is gone
        local.unlink()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=bridge.url, headers=headers) as http:
            url = f"/api/calls/{record.call_sid}/recording.wav"
            part = await http.get(url, headers={"Range": "bytes=44-1043"})
            assert part.status_code == 206
            assert part.content == on_disk[44:1044]
            assert part.headers["content-range"] == f"bytes 44-1043/{len(on_disk)}"
            transcript = await http.get(f"/api/calls/{record.call_sid}/transcript.json")
            assert transcript.status_code == 200
            assert transcript.json()["call_sid"] == record.call_sid
