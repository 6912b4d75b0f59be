"""Server-Sent Events of progress snapshots (`GET /sweeps/{id}/events`, `GET /sweeps/events`).

Every stream asks a `SnapshotCache` (one per app) for its key's snapshot once per interval; the cache
reads the database at most once per key and interval however many streams watch the same sweep or
list, so a room of open dashboards costs one query per second, not one per browser tab.
A stream sends a `data:` line only when the snapshot changed, a `: keep-alive` comment otherwise
every KEEPALIVE_SECONDS (proxies close silent connections), and `event: end` once `terminal(snapshot)`
holds. Streams that never end (the list) close after MAX_STREAM_SECONDS with a `retry:` hint; the
browser's EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 300.0
RETRY_MS = 1000


class SnapshotCache:
    """key -> (read at, snapshot); a per-key lock makes concurrent askers share one read."""

    def __init__(self, interval: float):
        self.interval = interval
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self.reads = 0  # database reads done (tests check the sharing)

    async def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            now = time.monotonic()
            if entry is not None and now - entry[0] < self.interval:
                return entry[1]
            value = await run_in_threadpool(load)
            self.reads += 1
            self._entries[key] = (time.monotonic(), value)
            if len(self._entries) > 1000:  # forget stale keys (closed streams, old queries)
                cutoff = time.monotonic() - 10 * self.interval
                for k in [k for k, (t, _) in self._entries.items() if t < cutoff]:
                    self._entries.pop(k, None)
                    self._locks.pop(k, None)
            return value


def snapshot_cache(request: Request) -> SnapshotCache:
    state = request.app.state
    cache = getattr(state, "snapshot_cache", None)
    if cache is None:
        cache = state.snapshot_cache = SnapshotCache(getattr(state.settings, "events_interval_seconds", 1.0))
    return cache


def sse(data: Any, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_stream(
    request: Request, key: Hashable, load_with_session: Callable[[Any], Any], terminal: Callable[[Any], bool]
) -> StreamingResponse:
    cache = snapshot_cache(request)
    factory = request.app.state.read_session_factory
    shutting_down = getattr(request.app.state, "shutting_down", lambda: False)

    def load() -> Any:
        with factory() as session:
            return load_with_session(session)

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        last: Any = object()
        started = last_sent = time.monotonic()
        while True:
            snap = await cache.get(key, load)
            now = time.monotonic()
            if snap != last:
                if snap is not None:
                    yield sse(snap)
                last, last_sent = snap, now
            elif now - last_sent >= KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = now
            if terminal(snap):
                yield sse(snap if snap is not None else {"deleted": True}, event="end")
                return
            # A closed connection ends the stream at its next write (Starlette cancels it).
            if now - started >= MAX_STREAM_SECONDS or shutting_down():
                return  # the client reconnects (`retry:`), to this server or its successor
            await asyncio.sleep(cache.interval)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
