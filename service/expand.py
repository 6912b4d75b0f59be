"""A validated sweep spec -> its points (SPEC §3): the Cartesian product of the four axes.

Each point is a core.types.PointConfig; its `identity` is the sha256 of the canonical JSON of every
PointConfig field plus core's version, so a finished point with the same identity from any sweep can
be reused (`cached`) unless the sweep asks to `recompute`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from flowsweep import core
from flowsweep.core.types import FLOAT_PARAMS, PointConfig

from .models import PARAM_FIELDS
from .schemas import AXIS_NAMES, FIELD_OR_AXIS, SweepSpec

DEFAULT_N_SAMPLES = 1000
# How each axis's values are stored (as PointConfig's fields): exact Python floats and ints.
_AXIS_TYPE = {
    "init_scale": float,
    "k": int,
    "lambda0": float,
    "eta": float,
    "data_scale": float,
    "depth": int,
    "seed": int,
}


class PointSpecError(ValueError):
    """A point of the sweep is invalid: `field` is the path in the request body."""

    def __init__(self, field: tuple[str, ...], message: str):
        super().__init__(f"{'.'.join(field)}: {message}")
        self.field = field
        self.message = message


def core_version() -> str:
    return str(core.CORE_VERSION)


_FLOAT_FIELDS = FLOAT_PARAMS


def _canonical(params: dict[str, Any], version: str | None) -> dict[str, Any]:
    """The canonical form of a point's parameters (PointConfig field -> value) that its identity
    hashes: every field plus core's version, depth left out when None."""
    d = dict(params)
    if d["depth"] is None:  # not a parameter of this model: identities stored before it existed hold
        del d["depth"]
    # Canonical types: 1 and 1.0 are the same init_scale; json renders floats as shortest repr.
    for name in _FLOAT_FIELDS:
        d[name] = float(d[name])
    if d["y_singular_values"] is not None:
        d["y_singular_values"] = [float(v) for v in d["y_singular_values"]]
    d["core_version"] = version if version is not None else core_version()
    return d


def _canonical_json(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


def point_identity(config: PointConfig, version: str | None = None) -> str:
    """sha256 of the canonical JSON of every PointConfig field plus core's version."""
    payload = _canonical_json(_canonical({name: getattr(config, name) for name in PARAM_FIELDS}, version))
    return hashlib.sha256(payload.encode()).hexdigest()


class _IdentityTemplate:
    """point_identity of points that share every field but `varying` (whose values are exact
    Python ints, or floats, never None): the canonical JSON is rendered once with a marker per
    varying field and filled in per point with each value's repr (json's own rendering of an int
    or a float), instead of a json.dumps of the whole dict per point."""

    def __init__(self, fixed: dict[str, Any], varying: tuple[str, ...], version: str | None):
        d = _canonical({**fixed, **dict.fromkeys(varying, 0)}, version)
        for i, name in enumerate(varying):
            d[name] = f"@@{i}@@"
        pieces = re.split(r'"@@(\d+)@@"', _canonical_json(d))
        self._format = "%r".join(p.replace("%", "%%") for p in pieces[::2])
        order = [int(i) for i in pieces[1::2]]
        self._pick = (lambda v: (v[order[0]],)) if len(order) == 1 else itemgetter(*order)

    def __call__(self, values: tuple) -> str:
        return hashlib.sha256((self._format % self._pick(values)).encode()).hexdigest()


@dataclass
class Grid:
    """A sweep's points (SPEC §3) as the service stores them: the parameters that every point
    shares (`fixed`, PointConfig field -> value) and, per point, the values of the axes with more
    than one value (`axes`, in AXIS_NAMES order; `values`, seed varying fastest)."""

    fixed: dict[str, Any]
    axes: tuple[str, ...]
    values: list[tuple]

    def __len__(self) -> int:
        return len(self.values)

    def configs(self) -> Iterator[PointConfig]:
        for v in self.values:
            yield PointConfig(**self.fixed, **dict(zip(self.axes, v)))

    def identities(self, version: str | None = None) -> list[str]:
        """point_identity of every point, in order (the same strings, without a PointConfig each)."""
        if not self.values:
            return []
        if not self.axes:  # one point
            return [point_identity(PointConfig(**self.fixed), version)]
        if any(None in v for v in self.values):  # not a template's case (depth None next to depths)
            return [point_identity(c, version) for c in self.configs()]
        identity = _IdentityTemplate(self.fixed, self.axes, version)
        out = [identity(v) for v in self.values]
        # The template renders what point_identity renders; checked on the first point all the same.
        if out[0] != point_identity(next(self.configs()), version):
            raise AssertionError("expand: the identity template disagrees with point_identity")
        return out


def expand_grid(spec: SweepSpec) -> Grid:
    """The sweep's points as a Grid, validated (PointSpecError names the field of a bad point)."""
    # n and record_every: their defaults were filled in by SweepSpec's validation.
    if spec.n is None or spec.record_every is None:
        raise ValueError("expand: the sweep spec has no n or record_every; validate it with SweepSpec first")
    sv = None if spec.y_singular_values is None else tuple(float(v) for v in spec.y_singular_values)
    fixed: dict[str, Any] = dict(
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
    axes = {name: [_AXIS_TYPE[name](v) if v is not None else None for v in spec.axis(name)] for name in AXIS_NAMES}
    varying = tuple(name for name in AXIS_NAMES if len(axes[name]) != 1)
    fixed.update((name, axes[name][0]) for name in AXIS_NAMES if name not in varying)
    grid = Grid(fixed, varying, list(itertools.product(*(axes[name] for name in varying))))
    # core.validate_config on every distinct configuration up to the seed (the seed changes no constraint)
    others = [name for name in AXIS_NAMES if name != "seed"]
    seed0 = axes["seed"][:1]
    combos = [
        PointConfig(**{**fixed, **dict(zip(others, c)), "seed": s})
        for c in itertools.product(*(axes[name] for name in others))
        for s in seed0
    ]
    validate_points(combos, tuple(a for a in AXIS_NAMES if getattr(spec.axes, a) is not None))
    return grid


def expand(spec: SweepSpec) -> list[PointConfig]:
    """Points in AXIS_NAMES order (init_scale, k, lambda0, eta, data_scale, depth, seed; seed varies fastest)."""
    return list(expand_grid(spec).configs())


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
