from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowsweep.status import FINISHED_SWEEP_STATUSES, SweepStatus

from .. import curves as curves_mod
from .. import estimate, phase, queries, store
from ..db import session_scope
from ..deps import ReadAuth, RunnerDep, SessionDep, SettingsDep, WriteAuth
from ..events import event_stream
from ..expand import PointSpecError, expand, point_identity
from ..models import SWEEP_STATUSES, Sweep, utcnow
from ..progress import display_status, eta_of, progress_fraction
from ..schemas import NAME_PATTERN, SweepCreated, SweepList, SweepOut, SweepPatch, SweepSpec
from .common import DbId, found_or_404, json_response, json_safe, read_json_body, result_page, summary_response
from .results import FILE_RESPONSES

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
T = TypeVar("T")


# ----------------------------------------------------------------------------- helpers

CONFLICT_RETRIES = 3


def retry_conflicts(write: Callable[[], T]) -> T:
    """Run a write transaction, again when it lost a race (a POST reusing points that a concurrent
    DELETE removed, or the DELETE of a sweep whose points a concurrent POST just reused: a foreign
    key violation on commit); a fresh transaction sees the winner's rows. 409 if it keeps losing."""
    for attempt in range(CONFLICT_RETRIES):
        try:
            return write()
        except IntegrityError:
            if attempt == CONFLICT_RETRIES - 1:
                raise HTTPException(
                    status.HTTP_409_CONFLICT, "a concurrent change to the same points won repeatedly: retry the request"
                ) from None
    raise AssertionError("unreachable")


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
            path: list[str | int] = list(head.split("."))
            loc, msg = path, reason
        out.append(
            {"loc": [prefix, *loc], "field": ".".join(str(x) for x in loc) or prefix, "msg": msg, "type": e["type"]}
        )
    return out


def _unprocessable(field: tuple[str, ...] | list[str], msg: str, typ: str = "value_error") -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ["body", *field], "field": ".".join(field) or "body", "msg": msg, "type": typ}]
    )


def sweep_out(sweep: Sweep, counts: dict[str, int], runner: Any, tags: list[str] | None = None) -> dict:
    return json_safe(
        {
            "id": sweep.id,
            "name": sweep.name,
            "spec": sweep.spec,
            "status": display_status(sweep.status, sweep.cancel_requested),
            "n_points": sweep.n_points,
            "counts": counts,
            "progress": progress_fraction(counts, sweep.n_points),
            "created_at": sweep.created_at.isoformat(),
            "started_at": sweep.started_at.isoformat() if sweep.started_at else None,
            "finished_at": sweep.finished_at.isoformat() if sweep.finished_at else None,
            "eta_seconds": eta_of(sweep, runner),
            "error": sweep.error,
            "tags": tags or [],
            "notes": sweep.notes,
        }
    )


def sweep_state(session: Session, sweep_id: int, runner: Any) -> dict | None:
    """A sweep's progress snapshot (GET /sweeps/{id}, and each event of its stream), or None."""
    sweep = store.get_sweep(session, sweep_id)
    if sweep is None:
        return None
    return sweep_out(
        sweep, store.counts(session, [sweep_id])[sweep_id], runner, store.tags_of(session, [sweep_id])[sweep_id]
    )


def sweeps_page(
    session: Session,
    runner: Any,
    statuses: list[str] | None,
    limit: int,
    offset: int,
    tags: list[str] | None,
    name: str | None,
) -> dict:
    """GET /sweeps's body (and each event of the list's stream)."""
    total, sweeps = store.list_sweeps(session, statuses, limit, offset, tags=tags, name=name)
    ids = [s.id for s in sweeps]
    counts, tags_of = store.counts(session, ids), store.tags_of(session, ids)
    return {"data": [sweep_out(s, counts[s.id], runner, tags_of[s.id]) for s in sweeps], "count": total}


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


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepCreated,
    dependencies=[WriteAuth],
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(SweepSpec)}}}
    },
    responses={
        422: {"description": "invalid sweep: `detail` lists {loc, field, msg}"},
        200: {"description": "dry_run: `{valid, n_points, n_cached, n_new, estimate}`, nothing stored"},
    },
)
async def create_sweep(
    request: Request,
    settings: SettingsDep,
    runner: RunnerDep,
    dry_run: Annotated[
        bool, Query(description="validate, count the points and estimate the cost; store nothing (200)")
    ] = False,
):
    """Validate a sweep (SPEC §3), expand its axes, and store the sweep with all its points in one
    transaction; points already computed by any sweep are reused (`n_cached`) unless `recompute`.
    With `dry_run=true` nothing is stored: the answer says how many points would run and a rough
    CPU-time estimate."""
    body = await read_json_body(request, settings.max_body_bytes)
    if not isinstance(body, dict):
        raise _unprocessable((), "a JSON object describing the sweep is required", "dict_type")
    try:
        spec = SweepSpec.model_validate(
            body,
            context={
                "max_points": settings.max_points,
                "max_steps": settings.max_steps,
                "max_point_cpu_seconds": settings.max_point_cpu_seconds,
                "max_sweep_cpu_seconds": settings.max_sweep_cpu_seconds,
                "max_point_bytes": settings.max_point_bytes,
            },
        )
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from None
    stored = spec.model_dump(mode="json", exclude={"axes"})
    stored["axes"] = {k: v for k, v in (body.get("axes") or {}).items()}
    stored["name"] = spec.name or f"{spec.model}-{spec.init}-{spec.integrator}-{utcnow():%Y%m%dT%H%M%S}"
    if dry_run:
        return JSONResponse(await run_in_threadpool(_dry_run, request, spec, settings))

    def write() -> tuple[int, str, int, int]:
        with session_scope(request.app.state.session_factory) as session:
            sweep, n_cached = store.insert_sweep(session, spec, stored)
            out = sweep.id, sweep.status, sweep.n_points, n_cached
        if runner is not None and out[1] == SweepStatus.QUEUED:
            runner.wake()  # once committed, from this thread (not after a hop back to the event loop)
        return out

    try:
        sweep_id, st, n_points, n_cached = await run_in_threadpool(retry_conflicts, write)
    except PointSpecError as exc:
        raise _unprocessable(exc.field, exc.message) from None
    return {"id": sweep_id, "status": st, "n_points": n_points, "n_cached": n_cached}


def _dry_run(request: Request, spec: SweepSpec, settings: Any) -> dict:
    """What POST /sweeps would do, without storing anything: point counts and the cost estimate."""
    try:
        points = expand(spec)
    except PointSpecError as exc:
        raise _unprocessable(exc.field, exc.message) from None
    n_cached = 0
    if not spec.recompute:
        with request.app.state.read_session_factory() as session:
            n_cached = len(store.reusable_sources(session, [point_identity(p) for p in points]))
    cpus = settings.num_cpus or _cluster_cpus()
    return {
        "valid": True,
        "n_points": len(points),
        "n_cached": n_cached,
        "n_new": len(points) - n_cached,
        "estimate": estimate.estimate(points, len(points) - n_cached, cpus),
    }


def _cluster_cpus() -> int:
    try:
        from flowsweep.workers.runtime import ray_status

        return int(ray_status().get("cpus") or 1)
    except Exception:
        return 1


StatusFilter = Annotated[list[Literal[SWEEP_STATUSES]] | None, Query(alias="status")]  # type: ignore[valid-type]
# No control characters in filters either (no name or tag holds one; NUL was a Postgres 500).
TagFilter = Annotated[
    list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None,
    Query(alias="tag", description="sweeps carrying any of these tags (repeat or comma-separate)"),
]
NameFilter = Annotated[
    str | None, Query(max_length=200, pattern=NAME_PATTERN, description="name contains (case-insensitive)")
]


def _tags(tag: list[str] | None) -> list[str] | None:
    return [t.strip() for v in tag for t in v.split(",") if t.strip()] if tag else None


@router.get("", response_model=SweepList, dependencies=[ReadAuth])
def list_sweeps(
    session: SessionDep,
    runner: RunnerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    status_: StatusFilter = None,
    tag: TagFilter = None,
    name: NameFilter = None,
):
    """Sweeps, newest first; filtered by `status`, `tag` (any of) and `name` (contains)."""
    return sweeps_page(session, runner, status_, limit, offset, _tags(tag), name)


def _event_stream_response(data_schema: dict, description: str) -> dict:
    """An SSE answer in OpenAPI 3.1 terms: `schema` describes each event (`event`, and `data` holding
    one JSON document); comments, `retry:` and keep-alives are not events."""
    return {
        200: {
            "description": description,
            "content": {
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "required": ["data", "event"],
                        "properties": {
                            "event": {"type": "string", "enum": ["message", "end"]},
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": data_schema,
                            },
                        },
                    }
                }
            },
        }
    }


# `/{sweep_id:int}` below: only digits reach the sweep routes, so /sweeps/events is the stream's path for
# every method (PATCH /sweeps/events is a 405, not a 422 about sweep_id); a non-numeric id is a 404.
@router.get(
    "/events",
    dependencies=[ReadAuth],
    response_class=StreamingResponse,
    responses=_event_stream_response(
        {"$ref": "#/components/schemas/SweepList"}, "`data:` GET /sweeps bodies whenever they change"
    ),
)
async def list_events(
    request: Request,
    runner: RunnerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    status_: StatusFilter = None,
    tag: TagFilter = None,
    name: NameFilter = None,
):
    """Server-Sent Events for the sweep list: the body of GET /sweeps (same filters) as a `data:` line
    each time it changes; one database read per interval, shared by every stream with the same query.
    The stream ends after a few minutes (`retry:` tells the browser to reconnect)."""
    tags = _tags(tag)
    key = ("list", limit, offset, tuple(status_ or ()), tuple(tags or ()), name)

    def load(session: Session) -> dict:  # serialised as GET /sweeps answers
        return SweepList.model_validate(sweeps_page(session, runner, status_, limit, offset, tags, name)).model_dump(
            mode="json"
        )

    return event_stream(request, key, load, terminal=lambda body: False)


@router.get("/{sweep_id:int}", response_model=SweepOut, dependencies=[ReadAuth])
def get_sweep(sweep_id: DbId, session: SessionDep, runner: RunnerDep):
    return found_or_404("sweep", sweep_id, lambda i: sweep_state(session, i, runner))


@router.patch(
    "/{sweep_id:int}",
    response_model=SweepOut,
    dependencies=[WriteAuth],
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(SweepPatch)}}}
    },
    responses={422: {"description": "invalid name, tags or notes"}},
)
async def patch_sweep(sweep_id: DbId, request: Request, settings: SettingsDep, runner: RunnerDep):
    """Rename a sweep, replace its `tags`, or set its `notes` (only the fields given change)."""
    # read like POST /sweeps's body: 415 unless JSON, 413 beyond the cap, huge integers a 422
    body = await read_json_body(request, settings.max_body_bytes)
    try:
        patch = SweepPatch.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc)) from None
    return await run_in_threadpool(_patch, request, sweep_id, patch, runner)


def _patch(request: Request, sweep_id: int, patch: SweepPatch, runner: Any) -> dict:
    with session_scope(request.app.state.session_factory) as session:
        sweep = _get_sweep(session, sweep_id, for_update=True)
        given = patch.model_fields_set
        if "name" in given and patch.name is not None:
            sweep.name = patch.name
        if "notes" in given:
            sweep.notes = patch.notes or None
        if "tags" in given:
            store.set_tags(session, sweep_id, patch.tags or [])
    with request.app.state.read_session_factory() as session:
        state = sweep_state(session, sweep_id, runner)
    if state is None:  # deleted by a concurrent request since the change above
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep_id} not found")
    return state


@router.get(
    "/{sweep_id:int}/events",
    dependencies=[ReadAuth],
    response_class=StreamingResponse,
    responses=_event_stream_response(
        {
            "anyOf": [
                {"$ref": "#/components/schemas/SweepOut"},
                {"type": "object", "properties": {"deleted": {"const": True}}, "required": ["deleted"]},
            ]
        },
        '`data:` GET /sweeps/{id} bodies, then `event: end` (with `{"deleted": true}` if it was deleted)',
    ),
)
async def sweep_events(sweep_id: DbId, request: Request, runner: RunnerDep):
    """Server-Sent Events: the sweep's progress snapshot (the body of GET /sweeps/{id}) as a `data:`
    line each time it changes, until the sweep is done, failed or cancelled; then `event: end`.
    One database read per interval, shared by every stream on the sweep."""
    with request.app.state.read_session_factory() as session:
        _get_sweep(session, sweep_id)

    def load(session: Session) -> dict | None:  # serialised as GET /sweeps/{id} answers
        state = sweep_state(session, sweep_id, runner)
        return None if state is None else SweepOut.model_validate(state).model_dump(mode="json")

    return event_stream(
        request,
        ("sweep", sweep_id),
        load,
        terminal=lambda body: body is None or body["status"] in FINISHED_SWEEP_STATUSES,
    )


@router.post(
    "/{sweep_id:int}/cancel",
    response_model=SweepOut,
    dependencies=[WriteAuth],
    responses={409: {"description": "the sweep already finished"}},
)
def cancel_sweep(sweep_id: DbId, request: Request, runner: RunnerDep):
    """Pending points are not run, running ones are cancelled; computed results are kept."""
    with session_scope(request.app.state.session_factory) as session:
        sweep = _get_sweep(session, sweep_id, for_update=True)
        if sweep.status in (SweepStatus.DONE, SweepStatus.FAILED):
            raise HTTPException(status.HTTP_409_CONFLICT, f"sweep {sweep_id} already finished ({sweep.status})")
        store.request_cancel(sweep)  # a queued sweep is cancelled at once
    if runner is not None:
        runner.cancel(sweep_id)
    with request.app.state.read_session_factory() as session:
        return sweep_state(session, sweep_id, runner)


@router.delete(
    "/{sweep_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[WriteAuth],
    responses={409: {"description": "the sweep is still queued or running"}},
)
def delete_sweep(sweep_id: DbId, request: Request):
    """Delete a finished or cancelled sweep with its points, results and curves. Points of other
    sweeps that reused this sweep's results keep them: the curves move to one of those points,
    which becomes the source of the others."""

    def delete() -> None:
        with session_scope(request.app.state.session_factory) as session:
            sweep = _get_sweep(session, sweep_id, for_update=True)
            if sweep.status not in FINISHED_SWEEP_STATUSES:
                raise HTTPException(
                    status.HTTP_409_CONFLICT, f"sweep {sweep_id} is {sweep.status}: cancel it first, then delete it"
                )
            store.delete_sweep(session, sweep_id)

    retry_conflicts(delete)
    return None


@router.get("/{sweep_id:int}/results", responses=FILE_RESPONSES, dependencies=[ReadAuth])
def sweep_results(sweep_id: DbId, request: Request, session: SessionDep, q: Annotated[queries.ResultQuery, Query()]):
    """The sweep's result rows (one per finished point); same filters as GET /results."""
    _get_sweep(session, sweep_id)
    return result_page(request, session, q, sweep_id, f"sweep-{sweep_id}-results")


@router.get("/{sweep_id:int}/summary", dependencies=[ReadAuth])
def sweep_summary(sweep_id: DbId, session: SessionDep, q: Annotated[queries.SummaryQuery, Query()]):
    """One row per group of `by` keys: the keys, `count`, and <metric>_mean/_std/_sem/_min/_max/_count
    for every numeric metric (over seeds, typically), computed in the database; the result filters
    apply before grouping."""
    _get_sweep(session, sweep_id)
    try:
        rows = queries.summary(session, q, sweep_id)
    except queries.TooManyGroups as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    return summary_response(rows, q)


@router.get("/{sweep_id:int}/curves", dependencies=[ReadAuth])
def sweep_curves(
    sweep_id: DbId,
    session: SessionDep,
    by: Annotated[
        str | None, Query(description="group keys, comma separated (default: the parameters that vary, seed excepted)")
    ] = None,
    max_seeds: Annotated[int, Query(ge=1, le=1000, description="curves per group")] = 100,
):
    """The done points' curves aggregated per group over seeds on a common t grid: for `error`,
    `error_linear` and `error_regularized_fit`, `mean`, `std` (ddof 1) and `n` per record time; plus one
    representative point's `singular_values` (the lowest seed) and the means of q0_norm, lambda0_fit,
    speedup and final_error. The PNG plots and the dashboard draw these."""
    _get_sweep(session, sweep_id)
    keys = [k.strip() for k in by.split(",") if k.strip()] if by else None
    for k in keys or ():
        if k not in curves_mod.GROUPABLE:
            raise RequestValidationError(
                [
                    {
                        "loc": ["query", "by"],
                        "field": "by",
                        "type": "value_error",
                        "msg": f"unknown key '{k}'; group by any of: {', '.join(curves_mod.GROUPABLE)}",
                    }
                ]
            )
    return json_response(curves_mod.group_curves(session, sweep_id, keys, max_seeds))


@router.get("/{sweep_id}/phase", dependencies=[ReadAuth])
def sweep_phase(sweep_id: DbId, session: SessionDep):
    """Table 2 as a phase diagram over the done points: one cell per (σ, λ₀) with the `median`
    rate_fit over its points, `n` (points with a rate_fit), `points` and `above` (the fraction faster
    than the one-layer rate 1), and the boundary 4σ² + λ₀² = 1 of eq. (16). σ = σ_min(Y):
    data_scale · min(y_singular_values), else each point's own Y. The PNG plot and the dashboard draw
    these."""
    _get_sweep(session, sweep_id)
    return json_response(phase.sweep_phase(session, sweep_id))
