"""A validated sweep spec -> its points (SPEC §3): the Cartesian product of the four axes.

Each point is a core.types.PointConfig; its `identity` is the sha256 of the canonical JSON of every
PointConfig field plus core's version, so a finished point with the same identity from any sweep can
be reused (`cached`) unless the sweep asks to `recompute`.
"""

from __future__ import annotations

import hashlib
import itertools
import json

from flowsweep import core
from flowsweep.core.types import FLOAT_PARAMS, PointConfig

from .models import PARAM_FIELDS
from .schemas import AXIS_NAMES, FIELD_OR_AXIS, SweepSpec

DEFAULT_N_SAMPLES = 1000


class PointSpecError(ValueError):
    """A point of the sweep is invalid: `field` is the path in the request body."""

    def __init__(self, field: tuple[str, ...], message: str):
        super().__init__(f"{'.'.join(field)}: {message}")
        self.field = field
        self.message = message


def core_version() -> str:
    return str(core.CORE_VERSION)


_FLOAT_FIELDS = FLOAT_PARAMS


def point_identity(config: PointConfig, version: str | None = None) -> str:
    """sha256 of the canonical JSON of every PointConfig field plus core's version."""
    d = {name: getattr(config, name) for name in PARAM_FIELDS}
    if d["depth"] is None:  # not a parameter of this model: identities stored before it existed hold
        del d["depth"]
    # Canonical types: 1 and 1.0 are the same init_scale; json renders floats as shortest repr.
    for name in _FLOAT_FIELDS:
        d[name] = float(d[name])
    if d["y_singular_values"] is not None:
        d["y_singular_values"] = [float(v) for v in d["y_singular_values"]]
    d["core_version"] = version if version is not None else core_version()
    payload = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def expand(spec: SweepSpec) -> list[PointConfig]:
    """Points in AXIS_NAMES order (init_scale, k, lambda0, eta, data_scale, depth, seed; seed varies fastest)."""
    # n and record_every: their defaults were filled in by SweepSpec's validation.
    if spec.n is None or spec.record_every is None:
        raise ValueError("expand: the sweep spec has no n or record_every; validate it with SweepSpec first")
    sv = None if spec.y_singular_values is None else tuple(float(v) for v in spec.y_singular_values)
    fixed = dict(
        model=spec.model,
        m=int(spec.m),
        n=int(spec.n),
        steps=int(spec.steps),
        y_singular_values=sv,
        init=spec.init,
        integrator=spec.integrator,
        record_every=int(spec.record_every),
        tol=float(spec.tol),
        data_seed=spec.data_seed,
        fit_lambda0=bool(spec.fit_lambda0),
        n_samples=int(spec.n_samples or DEFAULT_N_SAMPLES),
    )
    axes = [spec.axis(a) for a in AXIS_NAMES]
    points = []
    for values in itertools.product(*axes):
        p = dict(zip(AXIS_NAMES, values))
        points.append(
            PointConfig(
                init_scale=float(p["init_scale"]),
                k=int(p["k"]),
                lambda0=float(p["lambda0"]),
                eta=float(p["eta"]),
                data_scale=float(p["data_scale"]),
                depth=None if p["depth"] is None else int(p["depth"]),
                seed=int(p["seed"]),
                **fixed,
            )
        )
    validate_points(points, tuple(a for a in AXIS_NAMES if getattr(spec.axes, a) is not None))
    return points


def validate_points(points: list[PointConfig], axes_given: tuple[str, ...] = AXIS_NAMES) -> None:
    """core.validate_config on every distinct configuration up to the seed (the seed changes no
    constraint); its ValueError("<field>: <reason>") becomes a PointSpecError at the body path."""
    seen: set = set()
    for p in points:
        key = (p.init_scale, p.k, p.lambda0, p.eta, p.data_scale, p.depth)
        if key in seen:
            continue
        seen.add(key)
        try:
            core.validate_config(p)
        except (ValueError, TypeError) as exc:
            field, sep, reason = str(exc).partition(": ")
            if not sep or not field.isidentifier():
                field, reason = "axes", str(exc)
            if field in AXIS_NAMES and (field not in FIELD_OR_AXIS or field in axes_given):
                raise PointSpecError(
                    ("axes", field),
                    f"{reason} (point init_scale={p.init_scale}, k={p.k}, "
                    f"lambda0={p.lambda0}, eta={p.eta}, data_scale={p.data_scale}"
                    f"{'' if p.depth is None else f', depth={p.depth}'})",
                ) from exc
            raise PointSpecError((field,), reason) from exc
