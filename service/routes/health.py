from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import store
from ..schemas import Health

router = APIRouter(tags=["health"])
log = logging.getLogger("flowsweep.health")


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(request: Request):
    """Database reachable (`SELECT 1`) and the Ray cluster seen by the service (alive nodes, CPUs)."""
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
