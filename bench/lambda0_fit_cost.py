"""Cost of the lambda0 fit (Fig. 2) against the simulation it fits, one core, measured side by side.

For each k: a batch of Fig. 2 points (m = 5, n = 10, s = 1, eta = 1e-5, 4000 gd steps, T = 201
records) is simulated (core's batched gd, CPU seconds per point), then `lambda0_fit` runs on every
point (CPU seconds per point); the ratio is fit / simulation. Rounds alternate the two; medians.
`--reference` also times core 2's search (tests/core/reference_lambda0.py, both signs) for the
ratio before/after.

    python bench/lambda0_fit_cost.py [--points 8] [--rounds 3] [--reference]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_v] = "1"  # one core, set before numpy is imported

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from flowsweep.core import PointConfig  # noqa: E402
from flowsweep.core.lambda0_fit import lambda0_fit  # noqa: E402
from flowsweep.core.run import _integrate, _problem  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, nargs="*", default=[50, 100, 200])
    ap.add_argument("--reference", action="store_true")
    a = ap.parse_args()
    if a.reference:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
        from reference_lambda0 import lambda0_fit_reference
    print("k     sim ms/pt   fit ms/pt   fit/sim   evaluations/fit" + ("   core-2 fit/sim" if a.reference else ""))
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
        sims, fits, refs, nev = [], [], [], []
        for _ in range(a.rounds):
            t0 = time.process_time()
            states, reduced, prob = _problem(cs)
            tr = _integrate(cs, prob)
            sims.append((time.process_time() - t0) / len(cs))
            t0 = time.process_time()
            for b in range(len(cs)):
                f = lambda0_fit(states[b].Y, *reduced[b], tr.t, tr.X[b])
                nev.append(f.n_evaluations)
            fits.append((time.process_time() - t0) / len(cs))
            if a.reference:
                t0 = time.process_time()
                lambda0_fit_reference(states[0].Y, *reduced[0], tr.t, tr.X[0])
                refs.append(time.process_time() - t0)
        sim, fit = np.median(sims), np.median(fits)
        line = f"{k:<5} {1e3 * sim:9.2f}   {1e3 * fit:9.2f}   {fit / sim:7.2f}   {np.mean(nev):8.1f}"
        if a.reference:
            line += f"   {np.median(refs) / sim:10.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
