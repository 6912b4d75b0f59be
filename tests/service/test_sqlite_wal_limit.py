"""The SQLite WAL file is cut back after it outgrew its limit (PRAGMA journal_size_limit, set by
service.db.make_engine): a checkpoint held off by a long read must not leave the grown file on disk."""

from __future__ import annotations

import os

from flowsweep.service.db import (
    SQLITE_WAL_AUTOCHECKPOINT_PAGES,
    SQLITE_WAL_LIMIT_BYTES,
    checkpoint,
    make_engine,
)

LIMIT = 1024 * 1024


def _grow_wal_behind_a_reader(path, limit: int) -> tuple[int, int]:
    """WAL bytes after ~4 MB written while a read transaction pins the first snapshot, and after the
    reader has gone, a checkpoint has run and one more small write has committed."""
    engine = make_engine(f"sqlite:///{path}", sqlite_wal_limit_bytes=limit)
    try:
        with engine.begin() as c:
            c.exec_driver_sql("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
        reader = engine.connect().execution_options(sqlite_deferred=True)
        reader.begin()
        reader.exec_driver_sql("SELECT count(*) FROM blobs").scalar()  # holds its snapshot from here
        for _ in range(16):
            with engine.begin() as c:
                c.exec_driver_sql("INSERT INTO blobs (b) VALUES (?)", (os.urandom(256 * 1024),))
        grown = os.path.getsize(f"{path}-wal")
        reader.rollback()
        reader.close()
        busy, _, _ = checkpoint(engine)
        assert busy == 0
        with engine.begin() as c:  # the WAL restarts from its start here, and is cut at this commit
            c.exec_driver_sql("INSERT INTO blobs (b) VALUES (x'00')")
        return grown, os.path.getsize(f"{path}-wal")
    finally:
        engine.dispose()


def test_the_wal_is_cut_back_to_its_limit_once_it_can_restart(tmp_path):
    grown, after = _grow_wal_behind_a_reader(tmp_path / "a.db", LIMIT)
    assert grown > 3 * LIMIT  # the reader kept every frame in the WAL
    assert after <= LIMIT


def test_without_a_limit_the_grown_wal_stays_on_disk(tmp_path):
    """What the limit is for: SQLite's own default (-1) keeps the file at its largest size."""
    grown, after = _grow_wal_behind_a_reader(tmp_path / "b.db", -1)
    assert after == grown > 3 * LIMIT


def test_the_usual_checkpoint_cycle_stays_under_the_limit(tmp_path):
    """The autocheckpoint's WAL (its pages x the file's page size, plus frame headers) fits under the
    default limit: the file is not cut and re-extended in the usual cycle, only after an outgrown one."""
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with engine.connect() as c:
            page_size = c.exec_driver_sql("PRAGMA page_size").scalar()
            assert c.exec_driver_sql("PRAGMA journal_size_limit").scalar() == SQLITE_WAL_LIMIT_BYTES
    finally:
        engine.dispose()
    assert SQLITE_WAL_AUTOCHECKPOINT_PAGES * (page_size + 24) < SQLITE_WAL_LIMIT_BYTES
