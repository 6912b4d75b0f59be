"""Alembic environment for flowsweep (SQLite in batch mode, Postgres through psycopg 3).

Configured programmatically by service.db.alembic_config(url): no alembic.ini needed, any cwd works.
"""

from __future__ import annotations

from alembic import context

from flowsweep.service.db import make_engine
from flowsweep.service.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Foreign keys off on SQLite: batch mode recreates tables (copy, DROP, rename) and a DROP TABLE
    # with enforced foreign keys would cascade into or reject the referencing rows.
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: no sqlalchemy.url (configure it with service.db.alembic_config(url))")
    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
