"""The `flowsweep` command line.

    flowsweep serve                                  run the API (SQLite + local Ray by default)
    flowsweep db upgrade                             apply database migrations
    flowsweep submit examples/fig1.json --wait       submit a sweep, follow it with a progress bar
    flowsweep wait SWEEP                             follow a sweep (again) until it ends
    flowsweep list | status SWEEP | cancel SWEEP | delete SWEEP | open [SWEEP]
    flowsweep results SWEEP --format csv -o out.csv k=50 init_scale_min=0.01 status=done
    flowsweep summary SWEEP --by init_scale,k
    flowsweep plot SWEEP --kind error -o fig1.pdf   (png, pdf or svg from the suffix)

SWEEP is a sweep's id or its name (the newest sweep of that name). Sweep files are JSON, YAML or TOML.
Every command that writes data takes `--format` and `-o/--output` (the format defaults to the suffix).

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

from flowsweep import __version__
from flowsweep.service.client import (
    DEFAULT_URL,
    EXPORT_FORMATS,
    SWEEP_FINAL_STATUSES,
    URL_ENV,
    Client,
    FlowsweepError,
    ServerUnavailable,
    finished_count,
    frame_json,
    load_sweeps,
    write_frame,
)
from flowsweep.status import ACTIVE_SWEEP_STATUSES, SweepStatus

PROG = "flowsweep"
RECONNECT_SECONDS = 120.0  # `submit --wait` rides out a service restart this long
# service.plots.KINDS (not imported here: matplotlib would slow every command's start)
PLOT_KINDS = ("error", "singular_values", "regularized", "lambda0", "speedup", "phase", "depth", "plateau")
# service.plots.FIGURE_FORMATS
FIGURE_FORMATS = ("png", "pdf", "svg")


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
    s = round(s)
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
# The server's own dependencies (pyproject's `server` extra): a client-only install lacks them.
SERVER_DEPENDENCIES = frozenset(
    {
        "ray",
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "alembic",
        "psycopg",
        "pydantic",
        "pydantic_settings",
        "pydantic_core",
        "plotly",
        "swagger_ui",
    }
)


def _server_missing(command: str, exc: ModuleNotFoundError) -> FlowsweepError:
    """The one-line answer of `serve`/`db` on a client-only install; any other missing module is a bug."""
    if (exc.name or "").split(".")[0] not in SERVER_DEPENDENCIES:
        raise exc
    return FlowsweepError(
        f"`{PROG} {command}` runs the server, which needs the server extra: "
        f"pip install 'flowsweep[server]' (missing module {exc.name!r}); "
        "the client commands work without it"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    try:  # imported here: the client commands never load the server or its dependencies
        from flowsweep.service.server import serve
        from flowsweep.service.settings import get_settings
    except ModuleNotFoundError as e:
        raise _server_missing("serve", e) from None

    settings = get_settings()
    update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if update:
        settings = settings.model_copy(update=update)
    serve(settings)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    try:
        from flowsweep.service.db import upgrade
        from flowsweep.service.settings import get_settings
    except ModuleNotFoundError as e:
        raise _server_missing("db upgrade", e) from None

    url = args.database_url or get_settings().database_url
    try:
        upgrade(url)
    except Exception as e:  # an unreachable database or a failed migration: one line, no traceback
        raise FlowsweepError(
            f"database upgrade failed for {_redact(url)}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
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
        ids: list[int] = []
        for spec in specs:
            if args.name:
                spec["name"] = args.name if len(specs) == 1 else f"{args.name}-{len(ids) + 1}"
            if args.recompute:
                spec["recompute"] = True
            if args.tag:
                spec["tags"] = list(dict.fromkeys([*(spec.get("tags") or []), *args.tag]))
            created = c.submit(spec)
            ids.append(created["id"])
            cached = created.get("n_cached") or 0
            print(
                f"submitted sweep {created['id']}: {created.get('n_points')} points"
                + (f" ({cached} reused from earlier sweeps)" if cached else ""),
                flush=True,
            )
        if not args.wait:
            return 0
        return _wait(c, ids, poll=args.poll, quiet=args.quiet)


def _retrying(call):  # noqa: ANN001, ANN202
    """call(), retried while the service is unreachable for up to RECONNECT_SECONDS (it may be
    restarting: sweeps survive restarts)."""
    first = time.monotonic()
    while True:
        try:
            return call()
        except ServerUnavailable:
            if time.monotonic() - first > RECONNECT_SECONDS:
                raise
            time.sleep(min(1.0, RECONNECT_SECONDS / 4))


def _follow(c: Client, sweep_id: int, on_state) -> dict:  # noqa: ANN001
    """Follow one sweep over its event stream (GET /sweeps/{id}/events) until it is terminal,
    calling on_state(state) for each snapshot; rides out a restart of the service for
    RECONNECT_SECONDS (sweeps survive restarts)."""
    last_ok = time.monotonic()
    state: dict = {}
    while True:
        try:
            for state in c.events(sweep_id):
                last_ok = time.monotonic()
                on_state(state)
            if state.get("status") in SWEEP_FINAL_STATUSES:
                return state
            state = c.sweep(sweep_id)  # the stream closed early: look, then reconnect
            on_state(state)
            if state.get("status") in SWEEP_FINAL_STATUSES:
                return state
        except ServerUnavailable:
            if time.monotonic() - last_ok > RECONNECT_SECONDS:
                raise
            on_state(None)
            time.sleep(1.0)


def _wait(c: Client, ids: Sequence[int], *, poll: float = 1.0, quiet: bool) -> int:
    """Follow the sweeps (one after the other, each over its event stream) until each is
    done/failed/cancelled, with one tqdm bar over all their points (done/total, rate and ETA from
    tqdm; the server's own ETA in the postfix)."""
    from tqdm import tqdm

    desc = f"sweep {ids[0]}" if len(ids) == 1 else "sweeps " + ",".join(map(str, ids))
    states = {i: _retrying(lambda i=i: c.sweep(i)) for i in ids}
    total = sum(int(s.get("n_points") or 0) for s in states.values())
    # initial= points already finished (e.g. reused from cache): the rate counts new work only
    bar = tqdm(
        total=total,
        initial=sum(finished_count(s) for s in states.values()),
        unit="pt",
        desc=desc,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=quiet,
        mininterval=0.2,
    )

    def show(state: dict | None) -> None:
        if state is None:
            bar.set_postfix_str("server unreachable, retrying", refresh=True)
            return
        states[int(state["id"])] = state
        done = sum(finished_count(s) for s in states.values())
        if done > bar.n:
            bar.update(done - bar.n)
        statuses = sorted({str(s.get("status")) for s in states.values()})
        etas = [s.get("eta_seconds") for s in states.values() if s.get("status") in ACTIVE_SWEEP_STATUSES]
        eta = max((e for e in etas if isinstance(e, (int, float))), default=None)
        bar.set_postfix_str(",".join(statuses) + (f", server ETA {_fmt_seconds(eta)}" if eta else ""), refresh=True)

    try:
        for i in ids:
            if states[i].get("status") not in SWEEP_FINAL_STATUSES:
                _follow(c, i, show)
    except KeyboardInterrupt:
        bar.close()
        follow = " ".join(str(i) for i in ids)
        print(
            f"{PROG}: stopped waiting; the sweeps go on on the server: `{PROG} wait {follow}` follows them "
            f"again, `{PROG} cancel ID` stops one",
            file=sys.stderr,
        )
        return 130
    bar.close()
    for s in states.values():
        print(f"sweep {s.get('id')} {s.get('status')}: {_counts_text(s)}")
    return 0 if all(s.get("status") == SweepStatus.DONE for s in states.values()) else 1


def cmd_wait(args: argparse.Namespace) -> int:
    with _client(args) as c:
        ids = [c.resolve(ref) for ref in args.sweeps]
        return _wait(c, ids, quiet=args.quiet)


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as c:
        sid = c.resolve(args.sweep)
        s = c.sweep(sid)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError(f"delete sweep {sid} {s.get('name')!r} and its results? add --yes to confirm")
            answer = input(
                f"delete sweep {sid} {s.get('name')!r} ({s.get('n_points')} points, "
                f"{s.get('status')}) and its results? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                print("not deleted")
                return 1
        c.delete(sid)
    print(f"deleted sweep {sid} {s.get('name')!r}")
    return 0


def dashboard_url(base: str, sweep_id: int | None = None) -> str:
    return f"{base.rstrip('/')}/" + (f"#/sweeps/{sweep_id}" if sweep_id is not None else "")


def cmd_open(args: argparse.Namespace) -> int:
    with _client(args) as c:
        url = dashboard_url(c.url, c.resolve(args.sweep) if args.sweep else None)
    print(url)
    if not args.print_only and (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")
    ):
        import webbrowser

        webbrowser.open(url)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as c:
        body = c.sweeps(limit=args.limit, offset=args.offset, status=args.status, tag=args.tag, name=args.name)
    rows = body.get("data", [])
    if _fmt(args) == "json":
        print(json.dumps(body, indent=1))
        return 0
    if not rows:
        print("no sweeps")
        return 0
    for r in rows:
        p = r.get("progress")
        r["progress"] = f"{100 * p:.0f}%" if isinstance(p, (int, float)) else p
        r["created_at"] = str(r.get("created_at") or "")[:19]
    for r in rows:
        r["tags"] = ",".join(r.get("tags") or [])
    _print_table(rows, ["id", "name", "status", "n_points", "progress", "created_at", "tags"])
    if body.get("count") is not None and body["count"] > len(rows) + args.offset:
        print(f"({body['count']} sweeps in all; --limit/--offset for more)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        s = c.sweep(c.resolve(args.id))
    if _fmt(args) == "json":
        print(json.dumps(s, indent=1))
        return 0
    p = s.get("progress")
    print(f"sweep {s.get('id')} {s.get('name')!r}: {s.get('status')}")
    print(
        f"  points    {finished_count(s)}/{s.get('n_points')} finished"
        + (f" ({100 * p:.1f}%)" if isinstance(p, (int, float)) else "")
    )
    print(f"  counts    {_counts_text(s) or '-'}")
    for key in ("created_at", "started_at", "finished_at"):
        if s.get(key):
            print(f"  {key:<9} {s[key]}")
    if s.get("tags"):
        print(f"  tags      {', '.join(s['tags'])}")
    if s.get("notes"):
        print(f"  notes     {s['notes']}")
    if s.get("eta_seconds") is not None and s.get("status") in ACTIVE_SWEEP_STATUSES:
        print(f"  eta       {_fmt_seconds(s['eta_seconds'])}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as c:
        sid = c.resolve(args.id)
        c.cancel(sid)
        s = c.sweep(sid)
    print(f"sweep {sid}: cancel requested, status {s.get('status')} ({_counts_text(s)})")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    words = list(args.filters or [])
    sweep_id = None
    name = None
    if args.id is not None:  # `flowsweep results k=50` (no id): the first word is a filter
        if "=" in args.id:
            words.insert(0, args.id)
        elif args.id.isdigit():
            sweep_id = int(args.id)
        else:
            name = args.id  # a sweep's name
    filters = parse_filters([*(args.filter or []), *words])
    fmt = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output else None) or "csv"
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    with _client(args) as c:
        if name is not None:
            sweep_id = c.resolve(name)
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
        df = c.summary(c.resolve(args.id), by)
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
    if args.format == "parquet":
        raise UsageError("parquet needs a file: add -o FILE.parquet")
    # Screen: group keys, count and the means (plus std) of the metrics asked for.
    metrics = _split_csv(args.metrics) or ["final_error", "speedup", "q0_norm", "lambda0_fit"]
    keys = [k for k in (df.attrs.get("by") or by or []) if k in df.columns]
    cols = keys + [c for c in ["count"] if c in df.columns]
    for m in metrics:
        cols += [c for c in (f"{m}_mean", f"{m}_std") if c in df.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.4g}".format):
        print(df[cols].to_string(index=False) if cols else df.to_string(index=False))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    fmt = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output else "") or "png"
    if fmt not in FIGURE_FORMATS:
        raise UsageError(
            f"cannot draw a figure as {fmt!r}: choose one of {', '.join(FIGURE_FORMATS)} (--format or the -o suffix)"
        )
    from flowsweep.service.plots import PlotError, save_figure, sweep_figure

    with _client(args) as c:
        sid = c.resolve(args.id)
        c.sweep(sid)  # a clear "sweep N not found" before anything else
        try:
            fig = sweep_figure(c, sid, args.kind, by=_split_csv(args.by), x=args.x, max_seeds=args.max_seeds)
        except PlotError as e:
            raise FlowsweepError(str(e)) from None
    out = Path(args.output or f"sweep{sid}-{args.kind}.{fmt}")
    save_figure(fig, out, dpi=args.dpi, fmt=fmt)
    print(f"wrote {out}")
    return 0


def _fmt(args: argparse.Namespace) -> str | None:
    """--format, with the hidden --json of earlier versions as its alias."""
    return "json" if getattr(args, "json", False) else getattr(args, "format", None)


# ------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    # --url/--timeout are accepted before or after the sub-command; SUPPRESS keeps a sub-command's
    # absent option from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"API base URL (default ${URL_ENV} or {DEFAULT_URL})")
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help="seconds to wait for one HTTP answer (default 60)"
    )

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Sweeps of gradient-flow experiments on "
        "overparameterized linear models (see README.md). SWEEP is a sweep's id or "
        "name.",
    )
    p.add_argument("--url", default=None, help=f"API base URL (default ${URL_ENV} or {DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
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

    s = sub.add_parser(
        "submit", parents=[common], help="submit a sweep file (JSON, YAML or TOML; one sweep or several)"
    )
    s.add_argument("file", help="sweep file (.json, .yaml/.yml, .toml), or - for standard input (JSON or YAML)")
    s.add_argument("--tag", action="append", metavar="TAG", help="tag every sweep of the file (repeatable)")
    s.add_argument("--wait", action="store_true", help="follow the sweep with a progress bar until it ends")
    s.add_argument("--name", help="override the sweep's name")
    s.add_argument("--recompute", action="store_true", help="recompute points that have cached results")
    s.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)  # progress comes as events now
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_submit)

    s = sub.add_parser("wait", parents=[common], help="follow sweeps until they end (again after Ctrl-C)")
    s.add_argument("sweeps", nargs="+", metavar="SWEEP", help="sweep ids or names")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_wait)

    s = sub.add_parser("list", parents=[common], help="list sweeps, newest first")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("--status", choices=[s.value for s in SweepStatus], help="only sweeps with this status")
    s.add_argument("--tag", help="only sweeps with this tag (comma separated: any of them)")
    s.add_argument("--name", help="only sweeps whose name contains this")
    s.add_argument("--format", choices=("table", "json"), help="table (default) or the API's JSON")
    s.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("status", parents=[common], help="show a sweep's status and counts")
    s.add_argument("id", metavar="SWEEP")
    s.add_argument("--format", choices=("table", "json"), help="table (default) or the API's JSON")
    s.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("cancel", parents=[common], help="cancel a sweep (pending points are not run)")
    s.add_argument("id", metavar="SWEEP")
    s.set_defaults(func=cmd_cancel)

    s = sub.add_parser("delete", parents=[common], help="delete a finished or cancelled sweep and its results")
    s.add_argument("sweep", metavar="SWEEP")
    s.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser("open", parents=[common], help="print (and open, with a display) the dashboard's URL")
    s.add_argument("sweep", nargs="?", metavar="SWEEP", help="a sweep's page instead of the sweep list")
    s.add_argument("--print-only", action="store_true", help="print the URL, do not start a browser")
    s.set_defaults(func=cmd_open)

    s = sub.add_parser(
        "results",
        parents=[common],
        help="export result rows",
        description="Export result rows of one sweep (ID) or of all sweeps. Filters are "
        "the API's query parameters as key=value: equality on any parameter (k=50, "
        "init=spectral), ranges on numeric ones (k_min=50, init_scale_max=0.1), status=done.",
        epilog="example: flowsweep results 3 k=50 init_scale_min=0.01 -o fig1.csv",
    )
    s.add_argument("id", nargs="?", metavar="SWEEP", help="sweep id or name (omit: rows of every sweep)")
    s.add_argument("filters", nargs="*", metavar="KEY=VALUE", help="API filters, e.g. k=50 seed_max=9")
    s.add_argument("--filter", action="append", metavar="KEY=VALUE", help="same as a KEY=VALUE word")
    s.add_argument(
        "--format", choices=EXPORT_FORMATS, help="csv (default), parquet or json; default from the -o suffix"
    )
    s.add_argument("-o", "--output", help="file to write (default: standard output; parquet needs a file)")
    s.add_argument("--order-by", help="a result field, - in front for descending (e.g. -speedup)")
    s.add_argument("--limit", type=int, help="at most this many rows")
    s.set_defaults(func=cmd_results)

    s = sub.add_parser("summary", parents=[common], help="aggregate metrics over seeds per group")
    s.add_argument("id", metavar="SWEEP")
    s.add_argument(
        "--by", help="comma-separated group keys, e.g. init_scale,k (default: the server's, init_scale,k,lambda0)"
    )
    s.add_argument(
        "--metrics",
        help="metrics to show on screen (default final_error,speedup,q0_norm,lambda0_fit); files get every column",
    )
    s.add_argument(
        "--format",
        choices=("table", *EXPORT_FORMATS),
        help="table (default on screen), csv, json or parquet; default from the -o suffix",
    )
    s.add_argument("-o", "--output", help="write the summary to a file")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser(
        "plot",
        parents=[common],
        help="draw one of the paper's figures (PNG, PDF or SVG)",
        description="error: Fig. 1 top (error vs iterations, mean and band over seeds, "
        "one-layer dashed); singular_values: Fig. 1 bottom; regularized: Fig. 2 (needs "
        "fit_lambda0); lambda0: lambda0_fit vs k; speedup: speedup vs init_scale or lambda0.",
    )
    s.add_argument("id", metavar="SWEEP")
    s.add_argument("--kind", choices=PLOT_KINDS, default="error")
    s.add_argument("--format", choices=FIGURE_FORMATS, help="png (default), pdf or svg; default from the -o suffix")
    s.add_argument("-o", "--output", help="file (default sweep<ID>-<kind>.<format>)")
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
            argv[i : i + 2] = [f"--order-by={argv[i + 1]}", ""]
    argv = [a for a in argv if a != ""]
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) == "results" and all("=" in e and not e.startswith("-") for e in extra):
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
