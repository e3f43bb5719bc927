"""Expiring signed recording links (issue 15, "Post-call webhook"; docs/webhooks.md).

``GET /recordings/{call_sid}.wav?expires=<unix>&signature=<hex>`` serves one
call's recording without the dashboard token, to whoever holds a link the
bridge signed (the call summary carries one). The signature
(:func:`phonebridge.webhooks.signing.recording_signature`) binds the call SID
and the expiry: a link cannot be stretched in time or pointed at another
call. Refusals are 403 for a bad or expired link, 404 when the call or its
file is gone, and say nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import is_valid_call_sid, resolve_inside
from phonebridge.webhooks.signing import verify_recording

log = logging.getLogger(__name__)


def recording_link_router(
    index: CallIndex,
    data_dir: Path,
    secret: str,
    wall_time: Callable[[], float] = time.time,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/recordings/{call_sid}.wav", response_class=FileResponse)
    async def recording(
        call_sid: str, expires: str | None = None, signature: str | None = None
    ) -> FileResponse:
        if not is_valid_call_sid(call_sid) or not verify_recording(
            secret, call_sid, expires, signature, wall_time()
        ):
            raise HTTPException(status_code=403, detail="link invalid or expired")
        try:
            record = await index.get(call_sid)
        except StorageError as exc:
            raise HTTPException(status_code=503, detail="call index unavailable") from exc
        if record is None or record.recording_path is None:
            raise HTTPException(status_code=404, detail="no recording")
        try:
            path = resolve_inside(data_dir, record.recording_path)
        except StorageError:
            log.warning("call %s: recording path is outside the data directory", call_sid)
            raise HTTPException(status_code=404, detail="no recording") from None
        if not path.is_file():
            raise HTTPException(status_code=404, detail="no recording")
        return FileResponse(
            path,
            media_type="audio/wav",
            headers={"Cache-Control": "private, no-store"},
            content_disposition_type="inline",
            filename=f"{call_sid}.wav",
        )

    return router
