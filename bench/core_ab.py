"""core.run_points of this tree against a baseline tree, per point, on the paper's Fig. 1 points
(bench/e2e_throughput.configs: 201 points of 4000 gd steps, 201 records) and on tiny points
(bench/tiny_points.py's: 10 steps, every one recorded).

One persistent process per tree (single-threaded BLAS, kernels loaded, one warm call), asked in
turn, the order alternating per round, for one `run_points` call each; CPU time of that call
(time.process_time) per point. Prints the medians and the ratio this / baseline (of the medians,
and the median of the rounds' paired ratios). The machine is shared: only ratios from one run mean
anything.

    .venv/bin/python bench/core_ab.py --baseline /work/main/.venv/bin/python /work/main [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_POINTS = 2000


def worker() -> None:
    """Answer each line naming a point set with the CPU seconds per point of one run_points call."""
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = "1"
    sys.path.insert(0, os.getcwd())
    from bench.e2e_throughput import configs  # the source tree's own (cwd)
    from flowsweep import core

    core.warm_up()
    sets = {
        "fig1": configs(67, 4000),
        "tiny": [
            core.PointConfig(
                model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=10, init_scale=0.1, seed=s, record_every=1
            )
            for s in range(TINY_POINTS)
        ],
    }
    for points in sets.values():
        core.run_points(points)
    print("ready", flush=True)
    for line in sys.stdin:
        points = sets[line.strip()]
        t0 = time.process_time()
        core.run_points(points)
        print((time.process_time() - t0) / len(points), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", nargs=2, metavar=("PYTHON", "SOURCE"), required=True)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    me = Path(__file__).resolve()
    trees = {"this": (sys.executable, str(REPO)), "baseline": tuple(args.baseline)}
    procs = {
        name: subprocess.Popen(
            [python, str(me), "--worker"], cwd=source, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for name, (python, source) in trees.items()
    }
    try:
        for p in procs.values():
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        seconds: dict[tuple[str, str], list[float]] = {(t, s): [] for t in procs for s in ("fig1", "tiny")}
        for r in range(args.rounds):
            for s in ("fig1", "tiny"):
                for t in ("this", "baseline") if r % 2 == 0 else ("baseline", "this"):
                    p = procs[t]
                    assert p.stdin is not None and p.stdout is not None
                    p.stdin.write(s + "\n")
                    p.stdin.flush()
                    seconds[t, s].append(float(p.stdout.readline()))
    finally:
        for p in procs.values():
            if p.stdin is not None:
                p.stdin.close()
            p.wait()
    for s in ("fig1", "tiny"):
        a, b = statistics.median(seconds["this", s]), statistics.median(seconds["baseline", s])
        paired = statistics.median(x / y for x, y in zip(seconds["this", s], seconds["baseline", s]))
        print(
            f"{s}: this {1e6 * a:.0f} us/point, baseline {1e6 * b:.0f} us/point, this / baseline = {a / b:.3f} "
            f"(median of paired rounds {paired:.3f}, {args.rounds} rounds)"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()
