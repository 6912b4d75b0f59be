"""The flowsweep FastAPI application (SPEC §4, §5).

`create_app(settings)` wires the database (schema checked or migrated at start), Ray and the
background Runner into a lifespan, and the routers of service/routes. Every error is JSON with a
`detail`; request validation errors are 422s whose `detail` items name the field (`loc`, `field`).
"""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowsweep import __version__

from . import db
from .settings import Settings, get_settings

log = logging.getLogger("flowsweep.app")


def prepare_schema(engine: Engine, settings: Settings) -> str:
    """Bring the schema to the code's head when allowed, else refuse with the upgrade command.

    Auto-migrated (settings.auto_migrate): an empty database on any backend and an SQLite file (the
    embedded default). An outdated Postgres schema is never changed behind the operator's back."""
    head = db.head_revision()
    current = db.current_revision(engine)
    if current == head:
        return head
    if settings.auto_migrate and (db.is_empty(engine) or engine.dialect.name == "sqlite"):
        log.info("migrating database from %s to %s", current or "<empty>", head)
        db.upgrade(settings.database_url)
    return db.check_schema(engine)


def _error_items(errors) -> list[dict]:  # noqa: ANN001
    out = []
    for e in errors:
        loc = list(e.get("loc", ()))
        msg = str(e.get("msg", ""))
        # A cross-field check raises "<field>: <reason>" at the model's root: name that field.
        head, sep, reason = msg.removeprefix("Value error, ").partition(": ")
        if len(loc) == 1 and sep and head.isidentifier():
            loc, e = [*loc, head], {**e, "msg": reason}
        # `field` is the dotted path without the location ("body", "query", "path") and list indices.
        field = (
            e.get("field")
            or ".".join(str(x) for x in loc[1:] if not isinstance(x, int))
            or (str(loc[0]) if loc else "")
        )
        out.append({"loc": loc, "field": str(field), "msg": str(e.get("msg", "")), "type": e.get("type", "")})
    return out


def create_app(settings: Settings | None = None, *, start_runner: bool = True, start_ray: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = db.make_engine(settings.database_url)
        try:
            prepare_schema(engine, settings)
        except db.SchemaError as exc:
            log.error("flowsweep: %s", exc)
            engine.dispose()
            raise
        app.state.engine = engine
        app.state.session_factory = db.make_session_factory(engine)
        app.state.read_session_factory = db.make_read_session_factory(engine)
        app.state.runner = None
        if start_ray:
            from flowsweep.workers.runtime import init_ray

            init_ray(settings.ray_address, settings.num_cpus)
        if start_runner:
            from .runner import Runner

            app.state.runner = Runner(app.state.session_factory, settings)
            app.state.runner.start()
        # Start-up's objects (modules, Ray, FastAPI, SQLAlchemy: ~10^5-10^6 of them) out of the
        # collector's sight: else every full collection, which a sweep's many small objects (rows,
        # configs) trigger again and again, traverses all of them (bench/service_stages.py: the
        # collector's share ~11 -> ~3 us of CPU per point with a 2.5e5-object heap). Garbage first.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # an app of a longer-lived process (tests): its objects collectable again
            if app.state.runner is not None:
                app.state.runner.stop()
            if start_ray:
                from flowsweep.workers.runtime import shutdown_ray

                shutdown_ray()
            engine.dispose()

    # /docs is served from local assets (routes/dashboard.py): FastAPI's own pages load them from a CDN.
    app = FastAPI(
        title="flowsweep",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Sweeps of gradient-flow experiments on overparameterized linear models, "
        "with every result in a database.",
    )
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _error_items(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette's Allow lists the first route matching the path; a path served by several
            # routes (GET and DELETE /sweeps/{id}) allows all their methods.
            methods = allowed_methods(app, request.url.path)
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    from .routes import dashboard, router

    app.include_router(router, dependencies=[Depends(single_query_values)])
    app.add_middleware(HostAndOriginCheck, settings=settings)
    app.openapi = lambda: openapi_document(app, settings)  # type: ignore[method-assign]
    dashboard.mount(app)
    return app


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method the app's routes serve on `path`, matched as the router matches them (the literal
    /sweeps/events is not also /sweeps/{sweep_id:int})."""
    import fastapi.routing

    # FastAPI >= 0.16x keeps included routers as branches; iter_route_contexts flattens them
    routes = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)(app.routes)
    out: set[str] = set()
    for route in routes:
        methods, regex = getattr(route, "methods", None), getattr(route, "path_regex", None)
        if methods and regex is not None and regex.match(path):
            out |= methods
    return out


def single_query_values(request: Request) -> None:
    """A query parameter that takes one value (not an array in the OpenAPI document) given more than
    once is a 422 naming it: FastAPI would silently keep the last one (`name=a&name=b` means "b")."""
    route = request.scope.get("route")
    key = (request.method.lower(), getattr(route, "path_format", ""))
    table = getattr(request.app.state, "scalar_query_params", None)
    if table is None:
        table = request.app.state.scalar_query_params = {
            (method, path): [
                p["name"]
                for p in op.get("parameters", [])
                if p.get("in") == "query" and not _takes_list(p.get("schema", {}))
            ]
            for path, item in request.app.openapi().get("paths", {}).items()
            for method, op in item.items()
            if isinstance(op, dict)
        }
    repeated = [n for n in table.get(key, ()) if len(request.query_params.getlist(n)) > 1]
    if repeated:
        raise RequestValidationError(
            [
                {
                    "loc": ["query", n],
                    "field": n,
                    "type": "value_error",
                    "msg": "given more than once; it takes one value",
                }
                for n in repeated
            ]
        )


def _takes_list(schema: dict) -> bool:
    return schema.get("type") == "array" or any(_takes_list(s) for s in schema.get("anyOf", ()))


# ----------------------------------------------------------------------------- request checks

_WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class HostAndOriginCheck:
    """Pure ASGI middleware (streaming responses pass through untouched):

    - Host header: one of settings.trusted_hosts() (a DNS-rebinding page reaches a loopback server
      under its own host name), else 400;
    - Origin header on writes: same host as the request, or one of FLOWSWEEP_ALLOWED_ORIGINS, else
      403 (a page of another site cannot post to the API even where no token is set)."""

    def __init__(self, app, settings: Settings) -> None:  # noqa: ANN001
        self.app = app
        self.hosts = settings.trusted_hosts()
        self.origins = settings.write_origins()

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.hosts is not None and _host_name(host) not in self.hosts:
            return await _reject(
                send, 400, f"host: {host[:100]!r} is not a host name this service answers to (FLOWSWEEP_ALLOWED_HOSTS)"
            )
        origin = headers.get("origin")
        if scope["method"] in _WRITE_METHODS and origin is not None:
            o = origin.rstrip("/").lower()
            same = o.split("://", 1)[-1] == host.lower()
            if not same and o not in self.origins:
                return await _reject(
                    send, 403, f"origin: writes from {origin[:100]!r} are not allowed (FLOWSWEEP_ALLOWED_ORIGINS)"
                )
        return await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _reject(send, status_code: int, detail: str) -> None:  # noqa: ANN001
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status_code,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- OpenAPI

_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}}}
# Status codes beyond FastAPI's own (200/201/204, 422), by (method, path): what the routes raise.
_EXTRA_STATUS = {
    ("post", "/sweeps"): {
        413: "body larger than FLOWSWEEP_MAX_BODY_BYTES",
        415: "Content-Type is not application/json",
        409: "a concurrent change to the same points won repeatedly",
    },
    ("delete", "/sweeps/{sweep_id}"): {
        404: "sweep not found",
        409: "the sweep is still queued or running, or a concurrent change won repeatedly",
    },
    ("post", "/sweeps/{sweep_id}/cancel"): {404: "sweep not found", 409: "the sweep already finished"},
    ("get", "/sweeps/{sweep_id}"): {404: "sweep not found"},
    ("patch", "/sweeps/{sweep_id}"): {
        404: "sweep not found",
        413: "body larger than FLOWSWEEP_MAX_BODY_BYTES",
        415: "Content-Type is not application/json",
    },
    ("get", "/sweeps/{sweep_id}/events"): {404: "sweep not found"},
    ("get", "/sweeps/{sweep_id}/curves"): {404: "sweep not found"},
    ("get", "/sweeps/{sweep_id}/results"): {404: "sweep not found"},
    ("get", "/sweeps/{sweep_id}/summary"): {404: "sweep not found", 413: "more groups than the service builds"},
    ("get", "/sweeps/{sweep_id}/phase"): {404: "sweep not found"},
    ("get", "/summary"): {413: "more groups than the service builds"},
    ("get", "/points/{point_id}"): {404: "point not found"},
    ("get", "/points/{point_id}/curves"): {404: "point not found, or it has no curves"},
    ("get", "/points/{point_id}/state"): {
        404: "point not found",
        413: "the state is larger than FLOWSWEEP_MAX_ANSWER_BYTES",
    },
}


def openapi_document(app: FastAPI, settings: Settings) -> dict:
    """FastAPI's document, made exact: bearer auth only where this configuration asks for it, and
    every status code each route can answer."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            write = method.upper() in _WRITE_METHODS
            guarded = bool(settings.api_token) and (write or (settings.read_token_required and path != "/healthz"))
            if guarded:
                op["security"] = [{"HTTPBearer": []}]
            else:
                op.pop("security", None)
            responses = op.setdefault("responses", {})
            extra = dict(_EXTRA_STATUS.get((method, path), {}))
            extra[400] = "Host header not allowed (FLOWSWEEP_ALLOWED_HOSTS)"
            if write:
                extra[403] = "Origin not allowed (FLOWSWEEP_ALLOWED_ORIGINS)"
            if guarded:
                extra[401] = "missing or invalid bearer token"
            if any(p.get("in") == "query" for p in op.get("parameters", [])) or write:
                extra.setdefault(422, "invalid request: `detail` lists {loc, field, msg, type}")
            for code, description in extra.items():
                responses.setdefault(str(code), {"description": description, "content": _ERROR})
    body = doc["paths"].get("/sweeps", {}).get("post", {}).get("requestBody", {})
    steps = body.get("content", {}).get("application/json", {}).get("schema", {}).get("properties", {}).get("steps")
    if steps is not None:
        steps["maximum"] = settings.max_steps  # FLOWSWEEP_MAX_STEPS, as configured
    schemes = doc.get("components", {}).get("securitySchemes")
    if schemes is not None and not settings.api_token:
        del doc["components"]["securitySchemes"]
    app.openapi_schema = doc
    return doc
