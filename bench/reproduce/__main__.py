"""Reproduce the paper's experiments through flowsweep itself and write docs/reproduction.md.

    .venv/bin/python bench/reproduce                 # embedded service, fresh SQLite, ~3 min on 2 cores
    .venv/bin/python bench/reproduce --quick         # a few seeds per item: a smoke run
    .venv/bin/python bench/reproduce --url http://127.0.0.1:8000   # use a running service
    .venv/bin/python bench/reproduce --only deep     # one section's sweeps: a partial report in out/reproduce/

Every number in the report goes through the product: the sweeps are POSTed over REST
(`flowsweep.Client`), run by the service's Ray workers, stored in the database, and read back through
the API (result rows, `/summary`, `/points/{id}/curves`, `/points/{id}/state`). Figures are drawn with
`flowsweep.service.plots`. Nothing here is tuned toward the paper's numbers: the sweep parameters are
the paper's where it states them, and the report says where a choice had to be made and why.

One module per figure: `specs` (the sweeps), `fig1` (‖Q0‖, error curves with balanced controls,
sequential learning, predicted rates, gd vs flow), `table2` (the phase diagram), `fig2`, `fig3`,
`symmetric`, `step_size` (Appendix G), and beyond the paper `deep` (deep linear networks, issue 15);
`common` holds the service, statistics and the report writer.
Without `--url`, `flowsweep serve` runs as a subprocess on a free port with a SQLite file in a temporary
directory (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/reproduce`: import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "bench.reproduce"

from bench.reproduce import deep, fig1, fig2, fig3, step_size, symmetric, table2  # noqa: E402
from bench.reproduce.common import (  # noqa: E402
    REPO,
    Client,
    EmbeddedService,
    FlowsweepError,
    Item,
    failed_item,
    git_commit,
    run_sweeps,
    write_report,
)
from bench.reproduce.specs import SEEDS, sweep_specs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", help="use a running flowsweep service instead of starting one")
    ap.add_argument(
        "--out", default=None, help="directory for the report and PNGs (default: docs, or out/reproduce with --only)"
    )
    ap.add_argument("--quick", action="store_true", help="a few seeds per item (smoke run)")
    ap.add_argument("--cpus", type=int, default=None, help="Ray CPUs of the embedded service (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the embedded service's temporary directory")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the sweeps")
    ap.add_argument(
        "--only",
        nargs="*",
        help="run and analyse only the sweeps whose keys start with these "
        "(e.g. deep, fig2, phase): a fast rerun of one section, written as reproduction-partial.md",
    )
    args = ap.parse_args(argv)

    seeds = {k: max(3, v // 10) for k, v in SEEDS.items()} if args.quick else dict(SEEDS)
    specs = sweep_specs(seeds)
    if args.only:
        specs = {k: v for k, v in specs.items() if any(k.startswith(o) for o in args.only)}
    # a partial run never overwrites the full report (nor, by default, its figures)
    out = Path(args.out) if args.out else (REPO / "out" / "reproduce" if args.only else REPO / "docs")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    service = workdir = None
    written: list[Path] = []
    items: list[Item] = []
    report = out / ("reproduction-partial.md" if args.only else "reproduction.md")
    if not args.url:
        workdir = Path(tempfile.mkdtemp(prefix="flowsweep-repro-"))
        service = EmbeddedService(workdir, args.cpus)
        url = service.url
        print(f"starting flowsweep serve on {url} (SQLite in {workdir})", flush=True)
    else:
        url = args.url
    try:
        with Client(url, timeout=120) as client:
            health = service.wait_ready(client) if service else client.health()
            print(f"service ready: {health}", flush=True)
            t0 = time.monotonic()
            sw = run_sweeps(client, specs, args.timeout)
            sweep_seconds = time.monotonic() - t0
            print(f"sweeps finished in {sweep_seconds:.0f} s; analysing", flush=True)
            t1 = time.monotonic()
            gd_curves = None
            if {"fig1_gd", "fig1_balanced", "fig1_flow"} <= sw.keys():
                try:
                    items, gd_curves = fig1.fig1_items(client, sw, out, written)
                except Exception as exc:  # keep going: the report says what could not be measured
                    items = [failed_item("Fig. 1", exc)]
                print(f"  Fig. 1 analysed in {time.monotonic() - t1:.1f} s", flush=True)
            # (label, the sweeps it reads, its items): a step whose sweeps were not run (--only) is skipped
            steps = (
                ("gd vs flow", ("fig1_gd", "fig1_flow"), lambda: [fig1.gd_flow_item(client, sw, gd_curves)]),
                ("Table 2", ("phase",), lambda: [table2.table2_item(client, sw, out, written)]),
                ("Fig. 2", ("fig2",), lambda: [fig2.fig2_item(client, sw, out, written)]),
                ("Fig. 3", ("fig3_balanced", "fig3_gaussian"), lambda: [fig3.fig3_item(client, sw, out, written)]),
                (
                    "symmetric",
                    ("sym_spectral", "sym_gaussian"),
                    lambda: [symmetric.symmetric_item(client, sw, out, written)],
                ),
                ("step size", ("step",), lambda: [step_size.step_item(client, sw, out, written)]),
                (
                    "deep networks",
                    ("deep_balanced", "deep_spectral", "deep_gaussian"),
                    lambda: deep.deep_items(client, sw, out, written),
                ),
            )
            for label, keys, fn in steps:
                if not set(keys) <= sw.keys():
                    continue
                t1 = time.monotonic()
                try:
                    if label == "gd vs flow" and gd_curves is None:
                        raise RuntimeError("the Fig. 1 gd curves are missing")
                    items.extend(fn())
                except Exception as exc:
                    items.append(failed_item(label, exc))
                print(f"  {label} analysed in {time.monotonic() - t1:.1f} s", flush=True)
            meta = {
                "minutes": (time.monotonic() - t_start) / 60,
                "points": sum(s["n_points"] for s in sw.values()),
                "n_sweeps": len(sw),
                "sweep_seconds": sweep_seconds,
                "cpus": (health.get("ray") or {}).get("cpus", "?"),
                "commit": git_commit(),
                "seeds": seeds,
                "specs": specs,
            }
            write_report(report, items, meta)
    except FlowsweepError as exc:  # the service is unreachable or refused a sweep: one line
        print(f"reproduce: {exc}", file=sys.stderr)
        if service:
            print(f"server log tail:\n{service.log_tail()}", file=sys.stderr)
        return 2
    except BaseException:
        if service:
            print(f"server log tail:\n{service.log_tail()}", file=sys.stderr)
        raise
    finally:
        if service:
            service.stop()
            if args.keep:
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    for p in written:
        kb = p.stat().st_size / 1024
        print(
            f"  {p.relative_to(REPO) if p.is_relative_to(REPO) else p}: {kb:.0f} KB"
            + ("  (over 300 KB!)" if kb > 300 else "")
        )
    print(f"wrote {report} in {(time.monotonic() - t_start) / 60:.1f} min")
    for it in items:
        print(f"  [{it.verdict}] {it.name}: {it.measured}")
    return 1 if any(it.verdict == "not measured" for it in items) else 0


if __name__ == "__main__":
    sys.exit(main())
