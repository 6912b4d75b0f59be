"""`python -m service.server` / `flowsweep serve`: the API on uvicorn at settings.host:settings.port."""

from __future__ import annotations

import logging
import sys

import uvicorn

from . import db
from .app import create_app, prepare_schema
from .settings import Settings, get_settings


def serve(settings: Settings | None = None) -> None:
    if settings is None:
        try:
            settings = get_settings()
        except ValueError as exc:  # pydantic's ValidationError: a setting that cannot be served
            print(f"flowsweep: invalid configuration: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Check the schema before starting anything heavy (Ray): an outdated database is a one-line refusal.
    engine = db.make_engine(settings.database_url)
    try:
        prepare_schema(engine, settings)
    except db.SchemaError as exc:
        print(f"flowsweep: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        engine.dispose()
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level=settings.log_level, timeout_graceful_shutdown=10
        )
    )
    # Open event streams (dashboards, `flowsweep wait`) end when this turns true, so that a stop does
    # not wait out the graceful timeout for them (service/events.py).
    app.state.shutting_down = lambda: server.should_exit
    server.run()


def main() -> None:
    serve()


if __name__ == "__main__":
    main()
