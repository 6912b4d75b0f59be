"""Cost of the lambda0 fit (Fig. 2) against the simulation it fits, one core, measured side by side.

For each k: a batch of Fig. 2 points (m = 5, n = 10, s = 1, eta = 1e-5, 4000 gd steps, T = 201
records) is simulated (core's batched gd, CPU seconds per point), then `lambda0_fit` runs on every
point (CPU seconds per point); the ratio is fit / simulation. Rounds alternate the two; medians.
Also printed per fit: closed-form evaluations (lambdas, any number of records each) and the
(lambda, record) pairs they cover in units of the full grid (one pair is one 15 x 15 solve).
`--stages` splits the fit's time: evaluations on the coarse records, on the subsample, on the full
grid, and the rest (setup: SVD of Y, P0 in its basis; the search's own logic). It sees the stages of
the numpy path only (FLOWSWEEP_NUMBA=0): with numba the whole fit is one call of
core/_lambda0_fused.fit, counted as the rest. `--against REV` also times core/lambda0_fit.py and
its kernel core/_lambda0_fused.py as they were at git revision REV on the same points in the same
rounds (its fit/sim and its evaluations per fit), and prints the largest relative difference of the
two fits' minima and errors per branch. `--reference` also times core 2's search
(tests/core/reference_lambda0.py, both signs).

    python bench/lambda0_fit_cost.py [--points 8] [--rounds 3] [--stages] [--against REV] [--reference]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_v] = "1"  # one core, set before numpy is imported

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from flowsweep.core import PointConfig  # noqa: E402
from flowsweep.core import lambda0_fit as lf  # noqa: E402
from flowsweep.core.run import _integrate, _stacked_problem  # noqa: E402

STAGE_TIME: dict[str, float] = defaultdict(float)
TIMING = [True]  # off while the bench compares fits outside the timed rounds


def _timed_evaluate(original):  # type: ignore[no-untyped-def]
    """`RegularizedObjective._evaluate` that adds its CPU time to STAGE_TIME by the records it covers."""

    coarse: dict[int, int] = {}

    def wrapper(self, lams, idx, want_X):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = original(self, lams, idx, want_X)
        t1 = time.process_time()
        T = len(self.t)
        if T not in coarse:
            coarse[T] = len(lf._subsample(T, 4, max(1, T // (lf.SUB_TIMES - 4))))
        n = T if idx is None else len(idx)
        stage = "full grid" if n == T else ("coarse records" if n == coarse[T] else "subsample")
        if TIMING[0]:
            STAGE_TIME[stage] += t1 - t0
        return out

    return wrapper


def _source_at(rev: str, path: str) -> str | None:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return out.stdout.replace("from .", "from flowsweep.core.") if out.returncode == 0 else None


def _import(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _module_at(rev: str):  # type: ignore[no-untyped-def]
    """core/lambda0_fit.py at git revision `rev`, imported as a module of its own, with the compiled
    kernel core/_lambda0_fused.py of the same revision (in a directory per revision, so that numba's
    cache of it outlives the run)."""
    src = _source_at(rev, "core/lambda0_fit.py")
    assert src is not None
    folder = Path(tempfile.gettempdir()) / f"flowsweep_lambda0_at_{rev}"
    folder.mkdir(exist_ok=True)
    kernel_src = _source_at(rev, "core/_lambda0_fused.py")
    kernel = None
    if kernel_src is not None:
        kpath = folder / "lambda0_fused_at_rev.py"
        if not kpath.exists() or kpath.read_text() != kernel_src:
            kpath.write_text(kernel_src)
        kernel = _import("lambda0_fused_at_rev", kpath)
    path = folder / "lambda0_fit_at_rev.py"
    path.write_text(src)
    mod = _import("lambda0_fit_at_rev", path)
    if hasattr(mod, "compiled_module"):  # the revision's own kernel, under the same switch
        current = mod.compiled_module

        def compiled_module(name: str):  # type: ignore[no-untyped-def]
            if name == "flowsweep.core._lambda0_fused" and current(name) is not None:
                return kernel
            return current(name)

        mod.compiled_module = compiled_module
    return mod


def _rel(a: float, b: float) -> float:
    """Relative difference, or 0 when both are a hair from lambda0 = 0 (a branch's end)."""
    if abs(a) < 1e-9 and abs(b) < 1e-9:
        return 0.0
    return abs(a - b) / max(abs(a), 1e-300)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, nargs="*", default=[50, 100, 200])
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--against", metavar="REV")
    ap.add_argument("--reference", action="store_true")
    a = ap.parse_args()
    old = _module_at(a.against) if a.against else None
    if a.reference:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
        from reference_lambda0 import lambda0_fit_reference
    if a.stages:
        lf.RegularizedObjective._evaluate = _timed_evaluate(lf.RegularizedObjective._evaluate)  # type: ignore[method-assign]
    print(
        "k     sim ms/pt   fit ms/pt   fit/sim   evaluations/fit   full grids/fit"
        + (f"   {a.against} fit/sim  evaluations/fit" if old else "")
        + ("   core-2 fit/sim" if a.reference else "")
    )
    diffs = {"pos": [0.0, 0.0], "neg": [0.0, 0.0]}
    for k in a.k:
        cs = [
            PointConfig(
                model="asymmetric",
                m=5,
                n=10,
                k=k,
                eta=1e-5,
                steps=4000,
                record_every=20,
                init_scale=1.0,
                seed=s,
                fit_lambda0=True,
            )
            for s in range(a.points)
        ]
        sims, fits, refs, nev, grids, olds, old_nev = [], [], [], [], [], [], []
        STAGE_TIME.clear()
        for _ in range(a.rounds):
            t0 = time.process_time()
            prob = _stacked_problem(cs)  # the simulation's own setup, nothing more
            tr = _integrate(cs, prob)
            sims.append((time.process_time() - t0) / len(cs))
            t0 = time.process_time()
            for b in range(len(cs)):
                f = lf.lambda0_fit(prob.Y[b], prob.U0[b], prob.V0[b], tr.t, tr.X[b])
                nev.append(f.n_evaluations)
                grids.append(f.n_records / len(tr.t))
            fits.append((time.process_time() - t0) / len(cs))
            if old is not None:
                t0 = time.process_time()
                for b in range(len(cs)):
                    g = old.lambda0_fit(prob.Y[b], prob.U0[b], prob.V0[b], tr.t, tr.X[b])
                    old_nev.append(g.n_evaluations)
                olds.append((time.process_time() - t0) / len(cs))
                TIMING[0] = False
                for b in range(len(cs)):  # outside the timing: both fits of every point, compared
                    f = lf.lambda0_fit(prob.Y[b], prob.U0[b], prob.V0[b], tr.t, tr.X[b])
                    g = old.lambda0_fit(prob.Y[b], prob.U0[b], prob.V0[b], tr.t, tr.X[b])
                    for name, x, y in (("pos", f.pos, g.pos), ("neg", f.neg, g.neg)):
                        d = diffs[name]
                        d[0], d[1] = max(d[0], _rel(y.lambda0, x.lambda0)), max(d[1], _rel(y.error, x.error))
                TIMING[0] = True
            if a.reference:
                t0 = time.process_time()
                lambda0_fit_reference(prob.Y[0], prob.U0[0], prob.V0[0], tr.t, tr.X[0])
                refs.append(time.process_time() - t0)
        sim, fit = np.median(sims), np.median(fits)
        line = f"{k:<5} {1e3 * sim:9.2f}   {1e3 * fit:9.2f}   {fit / sim:7.2f}"
        line += f"   {np.mean(nev):13.1f}   {np.mean(grids):14.2f}"
        if old is not None:
            line += f"   {np.median(olds) / sim:12.2f}  {np.mean(old_nev):15.1f}"
        if a.reference:
            line += f"   {np.median(refs) / sim:14.2f}"
        print(line, flush=True)
        if a.stages:
            total = float(np.sum(fits)) * len(cs)
            parts = dict(STAGE_TIME)
            parts["setup and search logic"] = total - sum(parts.values())
            print("      " + ", ".join(f"{name} {100 * v / total:.0f}%" for name, v in parts.items()), flush=True)
    if old is not None:
        for name, (dl, de) in diffs.items():
            print(f"largest relative difference from {a.against}, {name} branch: lambda0 {dl:.1e}, error {de:.1e}")


if __name__ == "__main__":
    main()
