"""The flowsweep FastAPI application (SPEC §4, §5).

`create_app(settings)` wires the database (schema checked or migrated at start), Ray and the
background Runner into a lifespan, and the routers of service/routes. Every error is JSON with a
`detail`; request validation errors are 422s whose `detail` items name the field (`loc`, `field`).
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

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
        field = e.get("field") or ".".join(str(x) for x in loc[1:] if not isinstance(x, int)) \
            or (str(loc[0]) if loc else "")
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
        app.state.read_session_factory = db.make_session_factory(
            engine.execution_options(sqlite_deferred=True))
        app.state.runner = None
        if start_ray:
            from flowsweep.workers.runtime import init_ray

            init_ray(settings.ray_address, settings.num_cpus)
        if start_runner:
            from .runner import Runner

            app.state.runner = Runner(app.state.session_factory, settings)
            app.state.runner.start()
        try:
            yield
        finally:
            if app.state.runner is not None:
                app.state.runner.stop()
            if start_ray:
                from flowsweep.workers.runtime import shutdown_ray

                shutdown_ray()
            engine.dispose()

    app = FastAPI(title="flowsweep", version="0.1.0", lifespan=lifespan,
                  description="Sweeps of gradient-flow experiments on overparameterized linear models, "
                              "with every result in a database.")
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _error_items(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    from .routes import router

    app.include_router(router)
    return app
