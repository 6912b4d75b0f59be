"""Checks of a PointConfig; each failure names the field: ValueError("<field>: <reason>")."""

from __future__ import annotations

import math
import numbers

from .types import INITS, INTEGRATORS, MODELS, PointConfig


def _is_int(x: object) -> bool:
    # the exact type first: isinstance against the numbers ABCs costs ~0.3 us, per field, per point
    return type(x) is int or (isinstance(x, numbers.Integral) and not isinstance(x, bool))


def _is_real(x: object) -> bool:
    if type(x) is float:
        return math.isfinite(x)
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


def validate_config(config: PointConfig) -> None:
    """Raise ValueError("<field>: <reason>") for the first problem found; return None if valid."""
    c = config
    if c.model not in MODELS:
        raise ValueError(f"model: must be one of {', '.join(MODELS)}, got {c.model!r}")
    if c.init not in INITS:
        raise ValueError(f"init: must be one of {', '.join(INITS)}, got {c.init!r}")
    if c.integrator not in INTEGRATORS:
        raise ValueError(f"integrator: must be one of {', '.join(INTEGRATORS)}, got {c.integrator!r}")
    for name in ("m", "n", "k", "steps", "record_every", "n_samples"):
        v = getattr(c, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
    for name in ("eta", "init_scale", "lambda0", "tol", "data_scale"):
        v = getattr(c, name)
        if not _is_real(v):
            raise ValueError(f"{name}: must be a finite number, got {v!r}")
    for name in ("seed", "data_seed"):
        v = getattr(c, name)
        if v is None and name == "data_seed":
            continue
        if not _is_int(v) or v < 0:
            raise ValueError(f"{name}: must be an integer >= 0, got {v!r}")
    if c.eta <= 0:
        raise ValueError(f"eta: must be > 0, got {c.eta!r}")
    if c.integrator == "gd" and c.eta >= 1:
        # gd on the one-layer baseline contracts by (1 - eta) per step: eta >= 1 overshoots Y
        raise ValueError(f"eta: gradient descent needs 0 < eta < 1, got {c.eta!r}")
    if c.init_scale <= 0:
        raise ValueError(f"init_scale: must be > 0, got {c.init_scale!r}")
    if c.data_scale <= 0:
        raise ValueError(f"data_scale: must be > 0, got {c.data_scale!r}")
    if c.model == "sigmoid" and c.data_scale != 1:
        raise ValueError("data_scale: the sigmoid model's targets lie in (0, 1); must be 1")
    if c.y_singular_values is not None:
        sv = c.y_singular_values
        if c.model != "asymmetric":
            raise ValueError(f"y_singular_values: only applies to model asymmetric, got {c.model!r}")
        if not isinstance(sv, (tuple, list)) or len(sv) != c.m:
            raise ValueError(f"y_singular_values: must be a list of m = {c.m} numbers, got {sv!r}")
        if not all(_is_real(v) and v >= 0 for v in sv):
            raise ValueError(f"y_singular_values: must be finite numbers >= 0, got {list(sv)!r}")
    if not 0 < c.tol < 1:
        raise ValueError(f"tol: must lie in (0, 1), got {c.tol!r}")
    if not isinstance(c.fit_lambda0, bool):
        raise ValueError(f"fit_lambda0: must be a boolean, got {c.fit_lambda0!r}")
    if c.model in ("asymmetric", "deep") and c.m > c.n:
        raise ValueError(f"n: {c.model} model needs n >= m (Y is m×n with m <= n), got m={c.m}, n={c.n}")
    if c.model == "deep" and (c.depth is None or not _is_int(c.depth) or c.depth < 1):
        raise ValueError(f"depth: the deep model needs an integer depth >= 1, got {c.depth!r}")
    if c.model != "deep" and c.depth is not None:
        raise ValueError(f"depth: only applies to model deep, got {c.depth!r} for model {c.model}")
    if c.model in ("symmetric", "sigmoid") and c.n != c.m:
        raise ValueError(f"n: {c.model} model needs n == m, got m={c.m}, n={c.n}")
    if c.model == "symmetric" and c.lambda0 != 0:
        raise ValueError("lambda0: has no meaning for the symmetric model; must be 0")
    if c.model == "symmetric" and c.init == "balanced":
        raise ValueError("init: balanced needs two factors U, V (asymmetric or sigmoid model)")
    if c.model == "sigmoid" and c.init == "spectral":
        raise ValueError("init: spectral initialisation is not defined for the sigmoid model")
    if c.init == "spectral" and c.k < c.m:
        raise ValueError(f"k: spectral init needs k >= m, got k={c.k}, m={c.m}")
