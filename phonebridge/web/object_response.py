"""Serve a file from the object store over HTTP, with byte ranges (RFC 9110 §14).

Used when a call's recording is not on this replica's disk. Local files go
through Starlette's ``FileResponse``; its range parser is private and works on
a local ``stat``, so the few rules needed for one remote object are written
here, kept to what browsers' ``<audio>`` elements send:

- no ``Range``: 200 with the whole object;
- one range (``a-b``, ``a-``, ``-n``): 206 and ``Content-Range``, read from the
  store with the same range (nothing beyond it is fetched);
- a range past the end: 416 with ``Content-Range: bytes */size``;
- a malformed header or unit: 400 (as Starlette answers for local files);
- several ranges: 200 with the whole object, which §14.2 allows ("a server
  MAY ignore the Range header field");
- ``If-Range`` not matching the object's strong ETag: 200 with the whole object.
"""

from __future__ import annotations

import re

from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from phonebridge.storage.objects import ObjectInfo, ObjectStore

_SPEC = re.compile(r"^(\d*)-(\d*)$")


class MalformedRange(ValueError):
    """The ``Range`` header is not a bytes range we can read."""


class Unsatisfiable(ValueError):
    """No byte of the range is in the object."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The one range ``(first, last)`` asked for, inclusive; None to send everything.

    Raises :class:`MalformedRange` or :class:`Unsatisfiable`.
    """
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        raise MalformedRange(header[:100])
    parts = [p.strip() for p in specs.split(",") if p.strip()]
    if len(parts) != 1:
        if not parts:
            raise MalformedRange(header[:100])
        return None  # several ranges: the whole object instead (§14.2)
    match = _SPEC.fullmatch(parts[0])
    if match is None or match.group(0) == "-":
        raise MalformedRange(header[:100])
    start, end = match.groups()
    if not start:  # suffix: the last N bytes
        length = int(end)
        if length == 0 or size == 0:
            raise Unsatisfiable(header[:100])
        return max(0, size - length), size - 1
    first = int(start)
    last = int(end) if end else size - 1
    if end and last < first:
        raise MalformedRange(header[:100])
    if first >= size:
        raise Unsatisfiable(header[:100])
    return first, min(last, size - 1)


def object_response(
    store: ObjectStore,
    key: str,
    info: ObjectInfo,
    *,
    range_header: str | None,
    if_range: str | None,
    media_type: str,
    headers: dict[str, str],
) -> Response:
    """The response for ``key`` (already stat'ed as ``info``)."""
    common = {**headers, "Accept-Ranges": "bytes", "ETag": info.etag}
    wanted: tuple[int, int] | None = None
    if range_header and (if_range is None or if_range.strip() == info.etag):
        try:
            wanted = parse_range(range_header, info.size)
        except MalformedRange:
            return PlainTextResponse("malformed Range header", status_code=400)
        except Unsatisfiable:
            return PlainTextResponse(
                "range not satisfiable",
                status_code=416,
                headers={"Content-Range": f"bytes */{info.size}"},
            )
    if wanted is None:
        if info.size == 0:
            return Response(b"", media_type=media_type, headers=common)
        body = store.iter_range(key, 0, info.size - 1)
        return StreamingResponse(
            body,
            media_type=media_type,
            headers={**common, "Content-Length": str(info.size)},
        )
    first, last = wanted
    return StreamingResponse(
        store.iter_range(key, first, last),
        status_code=206,
        media_type=media_type,
        headers={
            **common,
            "Content-Length": str(last - first + 1),
            "Content-Range": f"bytes {first}-{last}/{info.size}",
        },
    )


__all__ = ["MalformedRange", "Unsatisfiable", "object_response", "parse_range"]
