"""flowsweep's science core: the paper's dynamics, closed forms and fits (numpy + scipy only).

From a notebook::

    from flowsweep.core import PointConfig, run_points, initial_state, simulate
    c = PointConfig(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=4000,
                    record_every=20, init_scale=1.0, fit_lambda0=True)
    (r,) = run_points([c])          # r.status, r.metrics (every METRIC_FIELDS key), r.curves
    s = initial_state(c)            # the exact Y, U0, V0 the run started from
    tr = simulate(c)                # raw trajectory: tr.t, tr.X (B, T, m, n), tr.error, ...

Modules: `data` (Y, initialisations, seeding), `dynamics` (batched gd and flow), `closed_forms`
(eq. (4), (6)/(32), (41), (7), (15)/(51), (21)), `lambda0_fit` (Fig. 2's fit, both branches),
`fits` (rate_fit, rate_pred, rate_lin, eta_stability_limit; re-exports lambda0_fit),
`metrics` (per-point metrics and curves), `run` (run_points, grouping and batching), `deep` (the
deep linear network X = W_L⋯W_1 of model `deep`: starts, batched gd and flow, metrics).
"""

from .run import initial_state, run_point, run_points, run_points_columns, simulate, warm_up  # noqa: F401
from .types import INITS, INTEGRATORS, METRIC_FIELDS, MODELS, Curves, PointConfig, PointResult  # noqa: F401
from .validation import validate_config  # noqa: F401

# Part of a point's identity: bump whenever the numbers a config produces change.
CORE_VERSION = "3"

__all__ = [
    "CORE_VERSION",
    "INITS",
    "INTEGRATORS",
    "METRIC_FIELDS",
    "MODELS",
    "Curves",
    "PointConfig",
    "PointResult",
    "initial_state",
    "run_point",
    "run_points",
    "run_points_columns",
    "simulate",
    "validate_config",
    "warm_up",
]
