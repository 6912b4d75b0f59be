from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from .. import queries, store
from ..db import session_scope
from ..expand import PointSpecError
from ..models import SWEEP_STATUSES, Sweep, utcnow
from ..progress import display_status, eta_of
from ..schemas import SweepCreated, SweepList, SweepOut, SweepSpec
from .common import DbId, found_or_404, json_safe, result_page
from .results import FILE_RESPONSES
from ..deps import ReadAuth, RunnerDep, SessionDep, SettingsDep, WriteAuth

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

MAX_BODY_BYTES = 10_000_000
_TERMINAL = ("done", "failed", "cancelled")


# ----------------------------------------------------------------------------- helpers

def validation_errors(exc: ValidationError, prefix: str = "body") -> list[dict]:
    """pydantic errors -> [{"loc", "field", "msg", "type"}], the path named in `loc` and `field`.

    Cross-field checks raise "<field path>: <reason>" at the model's root: the path is moved into loc.
    The rejected input is not echoed (it may hold NaN, which JSON cannot carry)."""
    out = []
    for e in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = [str(x) if not isinstance(x, int) else x for x in e["loc"]]
        msg = e["msg"]
        head, sep, reason = msg.partition(": ")
        if not loc and sep and all(p.isidentifier() for p in head.split(".")):
            loc, msg = head.split("."), reason
        out.append({"loc": [prefix, *loc], "field": ".".join(str(x) for x in loc) or prefix,
                    "msg": msg, "type": e["type"]})
    return out


def _unprocessable(field: tuple[str, ...] | list[str], msg: str, typ: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ["body", *field], "field": ".".join(field) or "body", "msg": msg,
                                    "type": typ}])


def sweep_out(sweep: Sweep, counts: dict[str, int], runner: Any) -> dict:
    finished = sum(counts[k] for k in ("done", "failed", "diverged", "cached"))
    return json_safe({
        "id": sweep.id, "name": sweep.name, "spec": sweep.spec,
        "status": display_status(sweep.status, sweep.cancel_requested),
        "n_points": sweep.n_points, "counts": counts,
        "progress": (finished / sweep.n_points) if sweep.n_points else 1.0,
        "created_at": sweep.created_at.isoformat(),
        "started_at": sweep.started_at.isoformat() if sweep.started_at else None,
        "finished_at": sweep.finished_at.isoformat() if sweep.finished_at else None,
        "eta_seconds": eta_of(sweep, runner), "error": sweep.error,
    })


def _get_sweep(session: Session, sweep_id: int, for_update: bool = False) -> Sweep:
    """The sweep, or 404."""
    return found_or_404("sweep", sweep_id, lambda i: store.get_sweep(session, i, for_update=for_update))


# ----------------------------------------------------------------------------- routes

def _inline_schema(model) -> dict:  # noqa: ANN001
    """The model's JSON schema with its $defs inlined (an OpenAPI requestBody schema has no $defs)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SweepCreated, dependencies=[WriteAuth],
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": _inline_schema(SweepSpec)}}}},
             responses={422: {"description": "invalid sweep: `detail` lists {loc, field, msg}"}})
async def create_sweep(request: Request, settings: SettingsDep, runner: RunnerDep):
    """Validate a sweep (SPEC §3), expand its axes, and store the sweep with all its points in one
    transaction; points already computed by any sweep are reused (`n_cached`) unless `recompute`."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body: larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _unprocessable((), f"invalid JSON: {exc}", "json_invalid") from None
    except RecursionError:
        raise _unprocessable((), "invalid JSON: nested too deeply", "json_invalid") from None
    if not isinstance(body, dict):
        raise _unprocessable((), "a JSON object describing the sweep is required", "dict_type")
    try:
        spec = SweepSpec.model_validate(body, context={"max_points": settings.max_points,
                                                       "max_steps": settings.max_steps})
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from None
    stored = spec.model_dump(mode="json", exclude={"axes"})
    stored["axes"] = {k: v for k, v in (body.get("axes") or {}).items()}
    stored["name"] = spec.name or f"{spec.model}-{spec.init}-{spec.integrator}-{utcnow():%Y%m%dT%H%M%S}"

    def write() -> tuple[int, str, int, int]:
        with session_scope(request.app.state.session_factory) as session:
            sweep, n_cached = store.insert_sweep(session, spec, stored)
            return sweep.id, sweep.status, sweep.n_points, n_cached

    try:
        sweep_id, st, n_points, n_cached = await run_in_threadpool(write)
    except PointSpecError as exc:
        raise _unprocessable(exc.field, exc.message) from None
    if runner is not None and st == "queued":
        runner.wake()
    return {"id": sweep_id, "status": st, "n_points": n_points, "n_cached": n_cached}


@router.get("", response_model=SweepList, dependencies=[ReadAuth])
def list_sweeps(session: SessionDep, runner: RunnerDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
                status_: Annotated[list[Literal[SWEEP_STATUSES]] | None,  # type: ignore[valid-type]
                                   Query(alias="status")] = None):
    """Sweeps, newest first."""
    total, sweeps = store.list_sweeps(session, status_, limit, offset)
    counts = store.counts(session, [s.id for s in sweeps])
    return {"data": [sweep_out(s, counts[s.id], runner) for s in sweeps], "count": total}


@router.get("/{sweep_id}", response_model=SweepOut, dependencies=[ReadAuth])
def get_sweep(sweep_id: DbId, session: SessionDep, runner: RunnerDep):
    sweep = _get_sweep(session, sweep_id)
    return sweep_out(sweep, store.counts(session, [sweep.id])[sweep.id], runner)


@router.post("/{sweep_id}/cancel", response_model=SweepOut, dependencies=[WriteAuth],
             responses={409: {"description": "the sweep already finished"}})
def cancel_sweep(sweep_id: DbId, request: Request, runner: RunnerDep):
    """Pending points are not run, running ones are cancelled; computed results are kept."""
    with session_scope(request.app.state.session_factory) as session:
        sweep = _get_sweep(session, sweep_id, for_update=True)
        if sweep.status in ("done", "failed"):
            raise HTTPException(status.HTTP_409_CONFLICT, f"sweep {sweep_id} already finished ({sweep.status})")
        store.request_cancel(sweep)  # a queued sweep is cancelled at once
    if runner is not None:
        runner.cancel(sweep_id)
    with request.app.state.read_session_factory() as session:
        sweep = _get_sweep(session, sweep_id)
        return sweep_out(sweep, store.counts(session, [sweep_id])[sweep_id], runner)


@router.delete("/{sweep_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[WriteAuth],
               responses={409: {"description": "the sweep is still queued or running"}})
def delete_sweep(sweep_id: DbId, request: Request):
    """Delete a finished or cancelled sweep with its points, results and curves. Points of other
    sweeps that reused this sweep's results keep them: the curves move to one of those points,
    which becomes the source of the others."""
    with session_scope(request.app.state.session_factory) as session:
        sweep = _get_sweep(session, sweep_id, for_update=True)
        if sweep.status not in _TERMINAL:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"sweep {sweep_id} is {sweep.status}: cancel it first, then delete it")
        store.delete_sweep(session, sweep_id)
    return None


@router.get("/{sweep_id}/results", responses=FILE_RESPONSES, dependencies=[ReadAuth])
def sweep_results(sweep_id: DbId, session: SessionDep, q: Annotated[queries.ResultQuery, Query()]):
    """The sweep's result rows (one per finished point); same filters as GET /results."""
    _get_sweep(session, sweep_id)
    return result_page(session, q, sweep_id, f"sweep-{sweep_id}-results")


@router.get("/{sweep_id}/summary", dependencies=[ReadAuth])
def sweep_summary(sweep_id: DbId, session: SessionDep, q: Annotated[queries.SummaryQuery, Query()]):
    """One row per group of `by` keys: the keys, `count`, and <metric>_mean/_std/_sem/_min/_max for
    every numeric metric (over seeds, typically); the result filters apply before grouping."""
    _get_sweep(session, sweep_id)
    rows = queries.summary(session, q, sweep_id)
    return {"data": rows, "count": len(rows), "by": q.group_keys()}
