"""The `flowsweep` command line.

    flowsweep serve                                  run the API (SQLite + local Ray by default)
    flowsweep db upgrade                             apply database migrations
    flowsweep submit examples/fig1.json --wait       submit a sweep, follow it with a progress bar
    flowsweep list | status ID | cancel ID
    flowsweep results ID --format csv -o out.csv k=50 init_scale_min=0.01 status=done
    flowsweep summary ID --by init_scale,k
    flowsweep plot ID --kind error -o fig1.png

Client commands talk to the REST API at --url (default $FLOWSWEEP_URL or http://127.0.0.1:8000) and
send $FLOWSWEEP_API_TOKEN as a bearer token when it is set. Failures print one line and exit 1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowsweep.service.client import (DEFAULT_URL, EXPORT_FORMATS, SWEEP_FINAL_STATUSES, URL_ENV, Client,
                            FlowsweepError, ServerUnavailable, finished_count, frame_json, load_sweeps, write_frame)

PROG = "flowsweep"
RECONNECT_SECONDS = 120.0   # `submit --wait` rides out a service restart this long
# service.plots.KINDS (not imported here: matplotlib would slow every command's start)
PLOT_KINDS = ("error", "singular_values", "regularized", "lambda0", "speedup", "phase")


# ------------------------------------------------------------------------------------- helpers
class UsageError(FlowsweepError):
    pass


def _client(args: argparse.Namespace) -> Client:
    return Client(url=args.url, timeout=args.timeout)


def _split_csv(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_filters(pairs: Sequence[str]) -> dict[str, str]:
    """`key=value` words (and --filter key=value) into API query parameters, passed as given:
    equality on any parameter (k=50), ranges with _min/_max (k_min=50), status=done."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"filter {pair!r} is not key=value (e.g. k=50, init_scale_min=0.01, status=done)")
        out[key.strip()] = value.strip()
    return out


def _fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def _counts_text(state: dict[str, Any]) -> str:
    counts = state.get("counts") or {}
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v)


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


# ------------------------------------------------------------------------------------- server side
def cmd_serve(args: argparse.Namespace) -> int:
    from flowsweep.service.server import serve
    from flowsweep.service.settings import get_settings

    settings = get_settings()
    update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if update:
        settings = settings.model_copy(update=update)
    serve(settings)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from flowsweep.service.db import upgrade
    from flowsweep.service.settings import get_settings

    url = args.database_url or get_settings().database_url
    try:
        upgrade(url)
    except Exception as e:  # an unreachable database or a failed migration: one line, no traceback
        raise FlowsweepError(f"database upgrade failed for {_redact(url)}: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None
    print(f"database {_redact(url)} is at the latest schema")
    return 0


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


# ------------------------------------------------------------------------------------- client side
def cmd_submit(args: argparse.Namespace) -> int:
    specs = load_sweeps(args.file)
    with _client(args) as c:
        ids = []
        for spec in specs:
            if args.name:
                spec["name"] = args.name if len(specs) == 1 else f"{args.name}-{len(ids) + 1}"
            if args.recompute:
                spec["recompute"] = True
            created = c.submit(spec)
            ids.append(created["id"])
            cached = created.get("n_cached") or 0
            print(f"submitted sweep {created['id']}: {created.get('n_points')} points"
                  + (f" ({cached} reused from earlier sweeps)" if cached else ""), flush=True)
        if not args.wait:
            return 0
        return _wait(c, ids, poll=args.poll, quiet=args.quiet)


def _wait(c: Client, ids: Sequence[int], *, poll: float, quiet: bool) -> int:
    """Poll the sweeps until each is done/failed/cancelled, with one tqdm bar over all their points
    (done/total, rate and ETA from tqdm; the server's own ETA in the postfix)."""
    from tqdm import tqdm

    desc = f"sweep {ids[0]}" if len(ids) == 1 else "sweeps " + ",".join(map(str, ids))
    bar = None
    last_ok = time.monotonic()
    try:
        while True:
            try:
                states = [c.sweep(i) for i in ids]
                last_ok = time.monotonic()
            except ServerUnavailable:
                # the service may be restarting (sweeps survive restarts): keep waiting a while
                if time.monotonic() - last_ok > RECONNECT_SECONDS:
                    raise
                if bar is not None:
                    bar.set_postfix_str("server unreachable, retrying", refresh=True)
                time.sleep(max(poll, 1.0))
                continue
            total = sum(int(s.get("n_points") or 0) for s in states)
            done = sum(finished_count(s) for s in states)
            if bar is None:
                # initial= points already finished (e.g. reused from cache): the rate counts new work only
                bar = tqdm(total=total, initial=done, unit="pt", desc=desc, dynamic_ncols=True,
                           file=sys.stderr, disable=quiet, mininterval=0.2)
            if done > bar.n:
                bar.update(done - bar.n)
            statuses = sorted({str(s.get("status")) for s in states})
            etas = [s.get("eta_seconds") for s in states if s.get("status") in ("queued", "running")]
            eta = max((e for e in etas if isinstance(e, (int, float))), default=None)
            bar.set_postfix_str(",".join(statuses) + (f", server ETA {_fmt_seconds(eta)}" if eta else ""),
                                refresh=True)
            if all(s.get("status") in SWEEP_FINAL_STATUSES for s in states):
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"{PROG}: stopped waiting; the sweeps go on on the server "
              f"(`{PROG} status ID`, `{PROG} cancel ID`)", file=sys.stderr)
        return 130
    if bar is not None:
        bar.close()
    for s in states:
        print(f"sweep {s.get('id')} {s.get('status')}: {_counts_text(s)}")
    return 0 if all(s.get("status") == "done" for s in states) else 1


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as c:
        body = c.sweeps(limit=args.limit, offset=args.offset, status=args.status)
    rows = body.get("data", [])
    if args.json:
        print(json.dumps(body, indent=1))
        return 0
    if not rows:
        print("no sweeps")
        return 0
    for r in rows:
        p = r.get("progress")
        r["progress"] = f"{100 * p:.0f}%" if isinstance(p, (int, float)) else p
        r["created_at"] = str(r.get("created_at") or "")[:19]
    _print_table(rows, ["id", "name", "status", "n_points", "progress", "created_at"])
    if body.get("count") is not None and body["count"] > len(rows) + args.offset:
        print(f"({body['count']} sweeps in all; --limit/--offset for more)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        s = c.sweep(args.id)
    if args.json:
        print(json.dumps(s, indent=1))
        return 0
    p = s.get("progress")
    print(f"sweep {s.get('id')} {s.get('name')!r}: {s.get('status')}")
    print(f"  points    {finished_count(s)}/{s.get('n_points')} finished"
          + (f" ({100 * p:.1f}%)" if isinstance(p, (int, float)) else ""))
    print(f"  counts    {_counts_text(s) or '-'}")
    for key in ("created_at", "started_at", "finished_at"):
        if s.get(key):
            print(f"  {key:<9} {s[key]}")
    if s.get("eta_seconds") is not None and s.get("status") in ("queued", "running"):
        print(f"  eta       {_fmt_seconds(s['eta_seconds'])}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as c:
        c.cancel(args.id)
        s = c.sweep(args.id)
    print(f"sweep {args.id}: cancel requested, status {s.get('status')} ({_counts_text(s)})")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    words = list(args.filters or [])
    sweep_id = None
    if args.id is not None:  # `flowsweep results k=50` (no id): the first word is a filter
        if "=" in args.id:
            words.insert(0, args.id)
        elif args.id.isdigit():
            sweep_id = int(args.id)
        else:
            raise UsageError(f"{args.id!r} is neither a sweep id nor a KEY=VALUE filter")
    filters = parse_filters([*(args.filter or []), *words])
    fmt = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output else None) or "csv"
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    with _client(args) as c:
        df = c.results(sweep_id, filters, order_by=args.order_by, limit=args.limit)
    if args.output in (None, "-"):
        if fmt == "parquet":
            raise UsageError("parquet needs a file: add -o FILE.parquet")
        if fmt == "csv":
            df.to_csv(sys.stdout, index=False)
        else:
            sys.stdout.write(frame_json(df))
        return 0
    out = Path(args.output)
    write_frame(df, out, fmt)
    print(f"wrote {len(df)} rows to {out} ({fmt})", file=sys.stderr)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    import pandas as pd

    by = _split_csv(args.by)
    with _client(args) as c:
        df = c.summary(args.id, by)
    if args.output:
        out = Path(args.output)
        write_frame(df, out, args.format or out.suffix.lstrip(".").lower() or "csv")
        print(f"wrote {len(df)} groups to {out}", file=sys.stderr)
        return 0
    if args.format == "json":
        sys.stdout.write(frame_json(df))
        return 0
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
        return 0
    # Screen: group keys, count and the means (plus std) of the metrics asked for.
    metrics = _split_csv(args.metrics) or ["final_error", "speedup", "q0_norm", "lambda0_fit"]
    keys = [k for k in (df.attrs.get("by") or by or []) if k in df.columns]
    cols = keys + [c for c in ["count"] if c in df.columns]
    for m in metrics:
        cols += [c for c in (f"{m}_mean", f"{m}_std") if c in df.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 50,
                           "display.float_format", "{:.4g}".format):
        print(df[cols].to_string(index=False) if cols else df.to_string(index=False))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from flowsweep.service.plots import PlotError, save_png, sweep_figure

    with _client(args) as c:
        c.sweep(args.id)  # a clear "sweep N not found" before anything else
        try:
            fig = sweep_figure(c, args.id, args.kind, by=_split_csv(args.by), x=args.x,
                               max_seeds=args.max_seeds)
        except PlotError as e:
            raise FlowsweepError(str(e)) from None
    out = Path(args.output or f"sweep{args.id}-{args.kind}.png")
    save_png(fig, out, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    # --url/--timeout are accepted before or after the sub-command; SUPPRESS keeps a sub-command's
    # absent option from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"API base URL (default ${URL_ENV} or {DEFAULT_URL})")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds to wait for one HTTP answer (default 60)")

    p = argparse.ArgumentParser(prog=PROG, description="Sweeps of gradient-flow experiments on "
                                "overparameterized linear models (see README.md).")
    p.add_argument("--url", default=None, help=f"API base URL (default ${URL_ENV} or {DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("serve", help="run the REST API (uvicorn) with the runner and Ray")
    s.add_argument("--host", help="listen address (default $FLOWSWEEP_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, help="listen port (default $FLOWSWEEP_PORT or 8000)")
    s.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="apply Alembic migrations up to the latest revision")
    up.add_argument("--database-url", help="default $FLOWSWEEP_DATABASE_URL or sqlite:///./flowsweep.db")
    up.set_defaults(func=cmd_db_upgrade)

    s = sub.add_parser("submit", parents=[common], help="submit a sweep file (JSON, SPEC §3; or a list of sweeps)")
    s.add_argument("file", help="sweep JSON file, or - for standard input")
    s.add_argument("--wait", action="store_true", help="follow the sweep with a progress bar until it ends")
    s.add_argument("--name", help="override the sweep's name")
    s.add_argument("--recompute", action="store_true", help="recompute points that have cached results")
    s.add_argument("--poll", type=float, default=1.0, help="seconds between status polls (default 1)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_submit)

    s = sub.add_parser("list", parents=[common], help="list sweeps, newest first")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("--status", choices=("queued", "running", "done", "failed", "cancelled"),
                   help="only sweeps with this status")
    s.add_argument("--json", action="store_true", help="print the API's JSON")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("status", parents=[common], help="show a sweep's status and counts")
    s.add_argument("id", type=int)
    s.add_argument("--json", action="store_true", help="print the API's JSON")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("cancel", parents=[common], help="cancel a sweep (pending points are not run)")
    s.add_argument("id", type=int)
    s.set_defaults(func=cmd_cancel)

    s = sub.add_parser("results", parents=[common], help="export result rows",
                       description="Export result rows of one sweep (ID) or of all sweeps. Filters are "
                       "the API's query parameters as key=value: equality on any parameter (k=50, "
                       "init=spectral), ranges on numeric ones (k_min=50, init_scale_max=0.1), status=done.",
                       epilog="example: flowsweep results 3 k=50 init_scale_min=0.01 -o fig1.csv")
    s.add_argument("id", nargs="?", help="sweep id (omit: rows of every sweep)")
    s.add_argument("filters", nargs="*", metavar="KEY=VALUE", help="API filters, e.g. k=50 seed_max=9")
    s.add_argument("--filter", action="append", metavar="KEY=VALUE", help="same as a KEY=VALUE word")
    s.add_argument("--format", choices=EXPORT_FORMATS, help="csv (default), parquet or json; "
                   "default from the -o suffix")
    s.add_argument("-o", "--output", help="file to write (default: standard output; parquet needs a file)")
    s.add_argument("--order-by", help="a result field, - in front for descending (e.g. -speedup)")
    s.add_argument("--limit", type=int, help="at most this many rows")
    s.set_defaults(func=cmd_results)

    s = sub.add_parser("summary", parents=[common], help="aggregate metrics over seeds per group")
    s.add_argument("id", type=int)
    s.add_argument("--by", help="comma-separated group keys, e.g. init_scale,k (default: the server's, "
                   "init_scale,k,lambda0)")
    s.add_argument("--metrics", help="metrics to show on screen (default final_error,speedup,q0_norm,"
                   "lambda0_fit); files get every column")
    s.add_argument("--format", choices=EXPORT_FORMATS, help="print or write csv/json/parquet instead of a table")
    s.add_argument("-o", "--output", help="write the summary to a file")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("plot", parents=[common], help="draw one of the paper's figures as PNG",
                       description="error: Fig. 1 top (error vs iterations, mean and band over seeds, "
                       "one-layer dashed); singular_values: Fig. 1 bottom; regularized: Fig. 2 (needs "
                       "fit_lambda0); lambda0: lambda0_fit vs k; speedup: speedup vs init_scale or lambda0.")
    s.add_argument("id", type=int)
    s.add_argument("--kind", choices=PLOT_KINDS, default="error")
    s.add_argument("-o", "--output", help="PNG file (default sweep<ID>-<kind>.png)")
    s.add_argument("--by", help="comma-separated group keys (default: the sweep axes that vary)")
    s.add_argument("--x", help="x axis of lambda0/speedup plots (default k / the axis that varies)")
    s.add_argument("--max-seeds", type=int, default=100, help="curves fetched per group (default 100)")
    s.add_argument("--dpi", type=int, default=100)
    s.set_defaults(func=cmd_plot)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """argparse plus two conveniences: `--order-by -speedup` (a value that starts with -) and
    KEY=VALUE filters of `results` after its options (`results 3 -o x.csv k=50`)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):
        if argv[i] == "--order-by" and argv[i + 1].startswith("-"):
            argv[i:i + 2] = [f"--order-by={argv[i + 1]}", ""]
    argv = [a for a in argv if a != ""]
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) == "results" and all(
                "=" in e and not e.startswith("-") for e in extra):
            args.filters = [*(args.filters or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rc = args.func(args)
    except FlowsweepError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `flowsweep results 3 | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
