"""Expiring signed recording links (issue 15, "Post-call webhook"; docs/webhooks.md).

``GET /recordings/{call_sid}.wav?expires=<unix>&signature=<hex>`` serves one
call's recording without the dashboard token, to whoever holds a link the
bridge signed (the call summary carries one). The signature
(:func:`phonebridge.webhooks.signing.recording_signature`) binds the call SID
and the expiry: a link cannot be stretched in time or pointed at another
call. Refusals are 403 for a bad or expired link, 404 when the call or its
file is gone, 503 when the call index or the object store cannot be reached,
and say nothing more.

Any replica answers a link: a recording that is not on this replica's disk
(another replica recorded the call) is served from the object store under
the key made from the call's SID and start time, ranges included, as the
dashboard's API does (web/api.py, web/object_response.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response

from phonebridge.errors import StorageError
from phonebridge.storage.index import CallIndex
from phonebridge.storage.layout import call_keys, is_valid_call_sid, resolve_inside
from phonebridge.storage.objects import ObjectStore
from phonebridge.web.object_response import object_response
from phonebridge.webhooks.signing import verify_recording

log = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "private, no-store"}


def recording_link_router(
    index: CallIndex,
    data_dir: Path,
    secret: str,
    wall_time: Callable[[], float] = time.time,
    store: ObjectStore | None = None,
) -> APIRouter:
    """``store``: where recordings not on this replica's disk are read (None: local only)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/recordings/{call_sid}.wav", response_class=FileResponse)
    async def recording(
        request: Request,
        call_sid: str,
        expires: str | None = None,
        signature: str | None = None,
    ) -> Response:
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
        path: Path | None
        try:
            path = resolve_inside(data_dir, record.recording_path)
        except StorageError:
            if store is None:
                log.warning("call %s: recording path is outside the data directory", call_sid)
                raise HTTPException(status_code=404, detail="no recording") from None
            path = None  # another replica's data directory: the store has it
        if path is not None and path.is_file():
            return FileResponse(
                path,
                media_type="audio/wav",
                headers=_NO_STORE,
                content_disposition_type="inline",
                filename=f"{call_sid}.wav",
            )
        if store is None:
            raise HTTPException(status_code=404, detail="no recording")
        key = call_keys(record.call_sid, record.started_at).recording
        try:
            info = await store.stat(key)
        except StorageError as exc:
            log.warning("call %s: object store unavailable: %s", call_sid, exc)
            raise HTTPException(status_code=503, detail="object store unavailable") from exc
        if info is None:
            raise HTTPException(status_code=404, detail="no recording")
        return object_response(
            store,
            key,
            info,
            range_header=request.headers.get("range"),
            if_range=request.headers.get("if-range"),
            media_type="audio/wav",
            headers={**_NO_STORE, "Content-Disposition": f'inline; filename="{call_sid}.wav"'},
        )

    return router
