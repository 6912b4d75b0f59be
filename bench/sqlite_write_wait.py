"""How long a small SQLite write (a POST, a take-up, the runner's claim) waits behind the result
writer's back-to-back batches, with the process's write lock (db.FairLock: the writer's batches are
background requests) and without it (SQLite's busy handler alone, whose sleeps grow to 100 ms and
which a writer re-taking the lock at once starves).

A writer thread commits transactions that hold the lock `--batch-ms` each, `--gap-ms` apart (its
next batch's rows are built in between); another thread makes a one-row write every 50 ms.

    .venv/bin/python bench/sqlite_write_wait.py [--batch-ms 30] [--gap-ms 2] [--writes 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from flowsweep.service import db


def run(locked: bool, batch: float, gap: float, writes: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="fswait") as tmp:
        url = f"sqlite:///{Path(tmp) / 'w.db'}"
        saved = db.sqlite_write_lock
        if not locked:  # engines made without the process's lock: SQLite's busy handler only
            db.sqlite_write_lock = lambda path: None  # type: ignore[assignment,return-value]
        try:
            engines = [db.make_engine(url), db.make_engine(url)]
        finally:
            db.sqlite_write_lock = saved
        bg, fg = (db.make_session_factory(e) for e in engines)
        with db.session_scope(bg) as s:
            s.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        stop = threading.Event()

        def writer() -> None:
            with db.background_writes():
                while not stop.is_set():
                    with db.session_scope(bg) as s:
                        s.execute(sa.text("INSERT INTO t VALUES (1)"))
                        time.sleep(batch)
                    time.sleep(gap)

        t = threading.Thread(target=writer)
        t.start()
        waits = []
        try:
            for _ in range(writes):
                time.sleep(0.05)
                t0 = time.perf_counter()
                with db.session_scope(fg) as s:
                    s.execute(sa.text("INSERT INTO t VALUES (2)"))
                waits.append(time.perf_counter() - t0)
        finally:
            stop.set()
            t.join()
            for e in engines:
                e.dispose()
        return waits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-ms", type=float, default=30.0)
    ap.add_argument("--gap-ms", type=float, default=2.0)
    ap.add_argument("--writes", type=int, default=40)
    args = ap.parse_args()
    out = {}
    for locked in (False, True, False, True):  # interleaved
        out.setdefault(locked, []).extend(run(locked, args.batch_ms / 1000, args.gap_ms / 1000, args.writes))
    for locked, waits in out.items():
        waits.sort()
        print(
            f"{'FairLock' if locked else 'busy handler only':18s}: small write behind {args.batch_ms:g} ms batches: "
            f"median {1000 * statistics.median(waits):.1f} ms, p90 {1000 * waits[int(0.9 * len(waits))]:.1f} ms, "
            f"max {1000 * waits[-1]:.1f} ms"
        )
    print(f"median without / with: {statistics.median(out[False]) / statistics.median(out[True]):.1f}x")


if __name__ == "__main__":
    main()
