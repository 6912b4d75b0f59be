from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import store
from ..schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger("flowsweep.health")


# Its own threads: a health probe never queues behind exports and queries in the shared pool.
_probe = ThreadPoolExecutor(max_workers=2, thread_name_prefix="healthz")


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(request: Request):
    """Database reachable (`SELECT 1`) and the Ray cluster seen by the service (alive nodes, CPUs)."""
    return await asyncio.get_running_loop().run_in_executor(_probe, _probe_health, request)


def _probe_health(request: Request) -> JSONResponse:
    from flowsweep.workers.runtime import ray_status

    try:
        with request.app.state.read_session_factory() as s:
            store.ping(s)
        database = "ok"
    except Exception as exc:  # the answer *is* the error
        # The exception's text names hosts and users: it goes to the log, the answer names its type.
        log.warning("healthz: database unreachable: %s", exc)
        database = f"error: {type(exc).__name__}"
    ok = database == "ok"
    body = {"status": "ok" if ok else "error", "database": database, "ray": ray_status()}
    return JSONResponse(body, status_code=200 if ok else 503)
