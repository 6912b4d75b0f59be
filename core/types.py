"""Public value types of flowsweep's science core: a point's configuration and its result.

These are the contract between `core`, `workers` and `service`: keep field names in step with
SPEC.md §3 (parameters) and §4 (result rows and curves).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from flowsweep.status import PointStatus

# The array types of the core: float64 values, int64 counts/iterations, boolean masks.
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
# PointConfig.shape_key(): points with equal keys run as one vectorised batch (workers group by it).
ShapeKey = tuple[Any, ...]


MODELS: tuple[str, ...] = ("asymmetric", "symmetric", "sigmoid", "deep")
INITS: tuple[str, ...] = ("gaussian", "spectral", "balanced")
INTEGRATORS: tuple[str, ...] = ("gd", "flow")


@dataclass(frozen=True)
class PointConfig:
    """Everything that determines one experiment (one point of a sweep).

    For `symmetric`, n == m. For `sigmoid`, m == n == d and `n_samples` is N.
    `data_seed` None draws Y from `seed`; an integer fixes Y independently of `seed`.
    `depth` is the number of layers L of the `deep` model (core/deep.py); None for the other models.
    """

    model: str
    m: int
    n: int
    k: int
    eta: float
    steps: int
    init: str = "gaussian"
    integrator: str = "gd"
    init_scale: float = 0.1
    lambda0: float = 0.0
    seed: int = 0
    record_every: int = 1
    tol: float = 0.01
    data_seed: int | None = None
    fit_lambda0: bool = False
    n_samples: int = 1000
    depth: int | None = None
    # asymmetric data spectrum: Y = Phi diag(y_singular_values) Psi^T (m values); None draws Y ~ N(0, 1)
    y_singular_values: tuple[float, ...] | None = None
    data_scale: float = 1.0  # Y is multiplied by it (SPEC §2)

    def __post_init__(self) -> None:
        if isinstance(self.y_singular_values, list):  # from JSON: hashable, one canonical form
            object.__setattr__(self, "y_singular_values", tuple(self.y_singular_values))

    def shape_key(self) -> ShapeKey:
        """Points with equal shape keys can run as one vectorised batch."""
        return (
            self.model,
            self.init,
            self.integrator,
            self.m,
            self.n,
            self.k,
            self.eta,
            self.steps,
            self.record_every,
            self.n_samples,
            self.depth,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PointConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# A point's parameters (SPEC §3) are PointConfig's fields, in its order: the service's columns,
# filters and point identity read these names, never a copy of them.
PARAM_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PointConfig))


def _params_typed(name: str) -> tuple[str, ...]:
    # field types are strings here (PEP 563): "int", "float", "int | None", ...
    return tuple(f.name for f in fields(PointConfig) if str(f.type).split("|")[0].strip() == name)


INT_PARAMS: tuple[str, ...] = _params_typed("int")  # m, n, k, steps, seed, record_every, ...
FLOAT_PARAMS: tuple[str, ...] = _params_typed("float")  # eta, init_scale, lambda0, tol, ...


# Result metrics, in SPEC §4 order; each is a float, an int (diverged_at) or None.
METRIC_FIELDS: tuple[str, ...] = (
    "q0_norm",
    "final_error",
    "final_error_linear",
    "time_to_tol",
    "time_to_tol_linear",
    "speedup",
    "rate_fit",
    "rate_pred",
    "rate_lin",
    "conservation_drift",
    "lambda0_fit",
    "lambda0_fit_error",
    "lambda0_fit_pos",
    "lambda0_fit_pos_error",
    "lambda0_fit_neg",
    "lambda0_fit_neg_error",
    "regularized_error",
    "closed_form_error",
    "eta_stability_limit",
    "diverged_at",
)


@dataclass
class Curves:
    """Trajectories on the record grid t = eta * i (i = 0, record_every, ...)."""

    t: FloatArray  # (T,)
    error: FloatArray  # (T,) e(t) of the two-layer model
    error_linear: FloatArray  # (T,) e(t) of the one-layer baseline
    singular_values: FloatArray  # (T, min(m, n)) singular values of X(t), descending
    error_regularized_fit: FloatArray | None = None  # (T,) e(t) of X_reg(t; lambda0_fit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t.tolist(),
            "error": self.error.tolist(),
            "error_linear": self.error_linear.tolist(),
            "singular_values": self.singular_values.tolist(),
            "error_regularized_fit": (
                None if self.error_regularized_fit is None else self.error_regularized_fit.tolist()
            ),
        }


@dataclass
class PointResult:
    """What running one point produced. `metrics` has exactly the keys of METRIC_FIELDS."""

    config: PointConfig
    status: PointStatus  # DONE, DIVERGED or FAILED
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    curves: Curves | None = None
    error: str | None = None  # message when status is FAILED
    wall_seconds: float = 0.0


@dataclass
class CurveBlock:
    """The curves of several points on one record grid, as arrays (a batch's, as computed): row j's
    curves are its first n_records[j] records (a diverged point's stop where it diverged);
    `curves(j)` is that row as a `Curves`."""

    t: FloatArray  # (T,)
    error: FloatArray  # (P, T)
    error_linear: FloatArray  # (P, T)
    singular_values: FloatArray  # (P, T, r)
    n_records: IntArray  # (P,) records of each row, <= T
    error_regularized_fit: FloatArray | None = None  # (P, T); row j only where has_fit[j]
    has_fit: BoolArray | None = None  # (P,)

    def __len__(self) -> int:
        return len(self.n_records)

    def all_curves(self) -> list[Curves]:
        """`curves(j)` of every row (rows of arrays taken at once: cheaper per row)."""
        if self.error_regularized_fit is not None or not (self.n_records == len(self.t)).all():
            return [self.curves(j) for j in range(len(self))]
        t = self.t
        return [
            Curves(t=t, error=e, error_linear=el, singular_values=sv)
            for e, el, sv in zip(list(self.error), list(self.error_linear), list(self.singular_values))
        ]

    def curves(self, j: int) -> Curves:
        n = int(self.n_records[j])
        fit = self.error_regularized_fit
        return Curves(
            t=self.t[:n],
            error=self.error[j, :n],
            error_linear=self.error_linear[j, :n],
            singular_values=self.singular_values[j, :n],
            error_regularized_fit=None if fit is None or self.has_fit is None or not self.has_fit[j] else fit[j, :n],
        )

    @classmethod
    def of(cls, curves: Curves) -> CurveBlock:
        """A block of one point."""
        fit = curves.error_regularized_fit
        return cls(
            t=curves.t,
            error=curves.error[None],
            error_linear=curves.error_linear[None],
            singular_values=curves.singular_values[None],
            n_records=np.array([len(curves.t)], dtype=np.int64),
            error_regularized_fit=None if fit is None else fit[None],
            has_fit=None if fit is None else np.ones(1, dtype=bool),
        )


@dataclass
class ResultColumns:
    """What `run_points` computed, as columns in input order (point i is entry i of each list):
    no per-point objects, for callers that turn results into rows (`results()` gives the
    PointResults). `metrics` holds every METRIC_FIELDS name, each value a finite float, an int
    (diverged_at) or None. Curves come in blocks: row j of blocks[k] belongs to point
    block_points[k][j]; failed points have none."""

    configs: list[PointConfig]
    status: list[PointStatus]
    error: list[str | None]
    wall_seconds: list[float]
    metrics: dict[str, list[float | int | None]]
    blocks: list[CurveBlock] = field(default_factory=list)
    block_points: list[IntArray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.status)

    def curve_rows(self) -> list[tuple[int, int] | None]:
        """(block, row) of each point's curves, None for a point without."""
        out: list[tuple[int, int] | None] = [None] * len(self)
        for k, pts in enumerate(self.block_points):
            for j, i in enumerate(pts.tolist()):
                out[i] = (k, j)
        return out

    def curves(self, i: int) -> Curves | None:
        """Point i's curves (None for a failed point)."""
        row = self.curve_rows()[i]
        return None if row is None else self.blocks[row[0]].curves(row[1])

    def results(self) -> list[PointResult]:
        """One PointResult per point, in input order (what `run_points` returns)."""
        curves: list[Curves | None] = [None] * len(self)
        for block, pts in zip(self.blocks, self.block_points):
            for i, cv in zip(pts.tolist(), block.all_curves()):
                curves[i] = cv
        names = list(self.metrics)
        rows = zip(*(self.metrics[f] for f in names))  # one tuple of metric values per point
        return [
            PointResult(
                config=c,
                status=st,
                metrics=dict(zip(names, row)),
                curves=cv,
                error=err,
                wall_seconds=w,
            )
            for c, st, row, cv, err, w in zip(self.configs, self.status, rows, curves, self.error, self.wall_seconds)
        ]
