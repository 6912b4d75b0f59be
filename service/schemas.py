"""Request and response bodies of the REST API (SPEC §3, §4), validated with pydantic.

Every request model forbids unknown fields and non-finite numbers. Limits that depend on the
service's settings (`FLOWSWEEP_MAX_POINTS`, `FLOWSWEEP_MAX_STEPS`) come through the validation
context: `SweepSpec.model_validate(body, context={"max_points": ..., "max_steps": ...})`.
Errors name the field: pydantic's `loc` is the path (e.g. ("axes", "init_scale")) and `msg` the reason.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from flowsweep.core.cost import human_bytes, human_seconds, point_cost
from flowsweep.core.types import INITS, INTEGRATORS, METRIC_FIELDS, MODELS, PointConfig

# Bounds the service states in its 422s (sizes beyond these would not fit in a worker's memory).
MAX_DIM = 2_000  # m, n
MAX_K = 20_000  # width k
MAX_N_SAMPLES = 100_000  # sigmoid N
MAX_RECORDS = 100_000  # curve length steps / record_every
MAX_SEED = 2**31 - 1  # seeds are stored as 32-bit integers
MAX_DEPTH = 50  # layers of the deep model
MAX_LOGSPACE_EXP = 300  # 10**a stays a finite double
DEFAULT_MAX_POINTS = 100_000
DEFAULT_MAX_STEPS = 10_000_000
# Cost budget (core.cost estimates; FLOWSWEEP_MAX_POINT_CPU_SECONDS etc. override them).
DEFAULT_MAX_POINT_CPU_SECONDS = 3_600.0
DEFAULT_MAX_SWEEP_CPU_SECONDS = 86_400.0
DEFAULT_MAX_POINT_BYTES = 2e9
MAX_TAGS = 20  # tags per sweep
MAX_TAG_LENGTH = 64
MAX_NOTES_LENGTH = 20_000
# expansion order, seed fastest
AXIS_NAMES = ("init_scale", "k", "lambda0", "eta", "data_scale", "depth", "seed")
POSITIVE_AXES = ("init_scale", "eta", "data_scale")
FIELD_OR_AXIS = ("eta", "data_scale")  # given either as a field of the sweep or as an axis
INT_AXES = ("k", "seed", "depth")
# What a sweep's name, a tag and notes may hold: the OpenAPI document states these patterns and the
# validators below check the same ones (matched whole). Control characters never belong in a label,
# and NUL is refused by Postgres text columns (a 500 before); notes keep tab and line breaks; a tag
# has no comma (`tag=a,b` means a or b) and no space or control character at either end.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"
NOTES_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
TAG_PATTERN = r"^[^,\x00-\x20\x7f](?:[^,\x00-\x1f\x7f]*[^,\x00-\x20\x7f])?$"


def _err(message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError("value_error", message, ctx or None)


def _limit(info: ValidationInfo, name: str, default: int) -> int:
    ctx = info.context or {}
    return int(ctx.get(name) or default)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


# ----------------------------------------------------------------------------- axes


def _round12(x: float) -> float:
    """linspace/logspace values rounded to 12 significant digits, so that linspace(0.1, 1, 10) gives
    0.3 rather than 0.30000000000000004 and `?init_scale=0.3` finds it."""
    return float(f"{x:.12g}")


def _axis_length(form: str, args: list) -> int:
    if form == "range":
        if len(args) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise _err("range must be [start, stop] with integers (stop excluded)")
        start, stop = args
        if stop <= start:
            raise _err("range [{start}, {stop}] is empty: stop must be > start", start=start, stop=stop)
        return stop - start
    if len(args) != 3:
        raise _err("{form} must be [a, b, num]", form=form)
    a, b, num = args
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _err("{form} bounds must be finite numbers", form=form)
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise _err("{form} num must be an integer >= 1", form=form)
    if form == "logspace" and max(abs(a), abs(b)) > MAX_LOGSPACE_EXP:
        raise _err("logspace exponents must lie in [-{lim}, {lim}]", lim=MAX_LOGSPACE_EXP)
    return num


def _axis_values(name: str, raw: Any, max_points: int) -> list:
    """One axis of a sweep (SPEC §3): a list, or {"range": [start, stop]}, {"linspace": [a, b, num]},
    {"logspace": [a, b, num]}; returns its values as a list (checked, not yet bounded per axis kind)."""
    if isinstance(raw, dict):
        if len(raw) != 1 or next(iter(raw)) not in ("range", "linspace", "logspace"):
            raise _err(
                'an axis is a list or one of {{"range": [start, stop]}}, '
                '{{"linspace": [a, b, num]}}, {{"logspace": [a, b, num]}}'
            )
        form, args = next(iter(raw.items()))
        if not isinstance(args, list):
            raise _err("{form} must be a list", form=form)
        n = _axis_length(form, args)
        if n > max_points:
            raise _err(
                "{form} has {n} values; a sweep has at most {max} points (FLOWSWEEP_MAX_POINTS)",
                form=form,
                n=n,
                max=max_points,
            )
        if form == "range":
            values: list = list(range(args[0], args[1]))
        else:
            a, b, num = args
            arr = np.linspace(a, b, num) if form == "linspace" else np.logspace(a, b, num)
            if not np.all(np.isfinite(arr)):
                raise _err("{form} gives non-finite values", form=form)
            values = [_round12(float(x)) for x in arr]
            if name in INT_AXES:
                if any(v != round(v) for v in values):
                    raise _err("{form} gives non-integer values; {name} must be integers", form=form, name=name)
                values = [round(v) for v in values]
    elif isinstance(raw, list):
        if len(raw) > max_points:
            raise _err(
                "has {n} values; a sweep has at most {max} points (FLOWSWEEP_MAX_POINTS)", n=len(raw), max=max_points
            )
        values = list(raw)
    else:
        # A bare number is the commonest slip: say what to write instead.
        raise _err(
            "must be a list (e.g. [{v}]) or a range/linspace/logspace object",
            v=raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) else "...",
        )
    if not values:
        raise _err("must not be empty")
    for v in values:
        if name in INT_AXES:
            if isinstance(v, bool) or not isinstance(v, int):
                raise _err("values must be integers, got {v}", v=repr(v))
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _err("values must be finite numbers, got {v}", v=repr(v))
    if name not in INT_AXES:
        values = [float(v) for v in values]
    seen: set = set()
    for v in values:
        if v in seen:
            raise _err("duplicate value {v}: each value may appear once", v=v)
        seen.add(v)
    if name in POSITIVE_AXES and min(values) <= 0:
        raise _err("must be > 0 (got {v})", v=min(values))
    if name == "k" and (min(values) < 1 or max(values) > MAX_K):
        raise _err("must lie in [1, {max}] (got {v})", max=MAX_K, v=min(values) if min(values) < 1 else max(values))
    if name == "depth" and (min(values) < 1 or max(values) > MAX_DEPTH):
        raise _err("must lie in [1, {max}] (got {v})", max=MAX_DEPTH, v=min(values) if min(values) < 1 else max(values))
    if name == "seed" and (min(values) < 0 or max(values) > MAX_SEED):
        raise _err("must lie in [0, {max}] (got {v})", max=MAX_SEED, v=min(values) if min(values) < 0 else max(values))
    return values


class Axes(StrictModel):
    """The axes of a sweep; the sweep is their Cartesian product. Omitted axes take their default
    (`init_scale` [0.1], `k` [2·max(m, n)], `lambda0` [0], `seed` [0]; `eta` and `data_scale` the
    sweep's field, data_scale 1). A parameter given as an axis is not given as a field."""

    init_scale: Any = Field(
        None,
        description="list of floats > 0, or range/linspace/logspace",
        examples=[[0.01, 0.1, 1.0], {"logspace": [-2, 0, 3]}],
    )
    k: Any = Field(None, description="list of widths >= 1, or a range", examples=[[50]])
    lambda0: Any = Field(None, description="list of imbalance levels λ₀ (finite)", examples=[[0.0]])
    seed: Any = Field(None, description="list of integer seeds >= 0, or a range", examples=[{"range": [0, 100]}])
    depth: Any = Field(None, description="model deep: list of depths L >= 1, or a range", examples=[[1, 2, 3, 4]])
    eta: Any = Field(
        None, description="list of step sizes > 0 (gd: < 1), or linspace/logspace", examples=[{"logspace": [-3, -1, 3]}]
    )
    data_scale: Any = Field(None, description="list of factors > 0 that multiply Y", examples=[[0.1, 1.0]])

    @field_validator(*AXIS_NAMES, mode="before")
    @classmethod
    def _check_axis(cls, raw: Any, info: ValidationInfo) -> Any:
        if raw is None:
            return None
        name = info.field_name
        if name is None:  # pydantic sets it for a field validator
            raise TypeError("Axes._check_axis: called without a field name")
        return _axis_values(name, raw, _limit(info, "max_points", DEFAULT_MAX_POINTS))


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def check_printable(v: str | None) -> str | None:
    if v is not None and not _matches(NAME_PATTERN, v):
        raise _err("must not contain control characters (NUL, newline, tab, ...)")
    return v


def check_notes(v: str | None) -> str | None:
    if v is not None and not _matches(NOTES_PATTERN, v):
        raise _err("must not contain control characters other than tab and line breaks")
    return v


def check_tags(tags: list[str] | None) -> list[str] | None:
    """Tags are short labels: 1..64 characters, no commas, no control characters, no space at either
    end (TAG_PATTERN); given twice, kept once."""
    if tags is None:
        return None
    if len(tags) > MAX_TAGS:
        raise _err("at most {max} tags (got {n})", max=MAX_TAGS, n=len(tags))
    out: list[str] = []
    for t in tags:
        if not 1 <= len(t) <= MAX_TAG_LENGTH:
            raise _err("a tag has 1 to {max} characters (got {t})", max=MAX_TAG_LENGTH, t=repr(t[:100]))
        if not _matches(TAG_PATTERN, t):
            raise _err("a tag has no comma, no control character and no space at either end (got {t})", t=repr(t))
        if t not in out:
            out.append(t)
    return out


# JSON Schemas of the same rules, for the OpenAPI document (the validators above give the 422's words).
Name = Annotated[str, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200, "pattern": NAME_PATTERN})]
Notes = Annotated[str, WithJsonSchema({"type": "string", "maxLength": MAX_NOTES_LENGTH, "pattern": NOTES_PATTERN})]
Tag = Annotated[
    str, WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_TAG_LENGTH, "pattern": TAG_PATTERN})
]
Tags = Annotated[
    list[Tag],
    WithJsonSchema(
        {
            "type": "array",
            "maxItems": MAX_TAGS,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_TAG_LENGTH, "pattern": TAG_PATTERN},
        }
    ),
]


class SweepSpec(StrictModel):
    """Body of POST /sweeps (SPEC §3)."""

    name: Name | None = Field(None, min_length=1, max_length=200)
    tags: Tags | None = Field(
        None,
        description=f"short labels (at most {MAX_TAGS}, each 1..{MAX_TAG_LENGTH} characters, no commas)",
        examples=[["fig1", "paper"]],
    )
    model: Literal[MODELS]  # type: ignore[valid-type]
    init: Literal[INITS] = "gaussian"  # type: ignore[valid-type]
    integrator: Literal[INTEGRATORS] = "gd"  # type: ignore[valid-type]
    m: StrictInt = Field(ge=1, le=MAX_DIM)
    n: StrictInt | None = Field(None, ge=1, le=MAX_DIM, description="required unless model is symmetric")
    eta: float | None = Field(None, gt=0, description="required unless given as axes.eta")
    steps: StrictInt = Field(ge=1, description="bounded by FLOWSWEEP_MAX_STEPS")
    record_every: StrictInt | None = Field(None, ge=1, description="default max(1, steps // 200)")
    tol: float = Field(0.01, gt=0, lt=1)
    data_seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED)
    fit_lambda0: StrictBool = False
    recompute: StrictBool = False
    n_samples: StrictInt | None = Field(None, ge=1, le=MAX_N_SAMPLES, description="sigmoid only; default 1000")
    depth: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_DEPTH,
        description="model deep only (required there, as a field or as axes.depth): the number of layers L",
    )
    y_singular_values: list[float] | None = Field(
        None,
        description="asymmetric only: m singular values >= 0 of Y = Φ diag(σ) Ψᵀ (Φ, Ψ from the data seed)",
        examples=[[3.0, 1.0, 0.3]],
    )
    data_scale: float | None = Field(None, gt=0, description="Y is multiplied by it (default 1); or axes.data_scale")
    axes: Axes = Field(default_factory=Axes)

    _tags = field_validator("tags")(classmethod(lambda cls, v: check_tags(v)))

    @field_validator("name")
    @classmethod
    def _printable_name(cls, v: str | None) -> str | None:
        return check_printable(v)

    @field_validator("steps")
    @classmethod
    def _steps_bound(cls, v: int, info: ValidationInfo) -> int:
        max_steps = _limit(info, "max_steps", DEFAULT_MAX_STEPS)
        if v > max_steps:
            raise _err("must be <= {max} (FLOWSWEEP_MAX_STEPS), got {v}", max=max_steps, v=v)
        return v

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> SweepSpec:
        # Errors raised here carry the field in the message; app.py maps "<field>: <reason>" to loc.
        # The rules of a point (shapes per model, lambda0 of symmetric, spectral k >= m, ...) are
        # core.validation's alone: expand.validate_points applies them to the grid.
        if self.n is None:
            if self.model in ("asymmetric", "deep"):
                raise _err("n: field required for model {model}", model=self.model)
            self.n = self.m
        if self.n_samples is not None and self.model != "sigmoid":
            raise _err("n_samples: only applies to model sigmoid")
        if self.model == "deep":
            if self.depth is None and self.axes.depth is None:
                raise _err("depth: field required for model deep (give depth or axes.depth)")
            if self.depth is not None and self.axes.depth is not None:
                raise _err("depth: given both as a field and as axes.depth; give one")
            if self.m > self.n:
                raise _err(
                    "n: must be >= m for model deep (Y is m×n with m <= n; got m={m}, n={n})", m=self.m, n=self.n
                )
        elif self.depth is not None or self.axes.depth is not None:
            raise _err("{f}: only applies to model deep", f="depth" if self.depth is not None else "axes.depth")
        for name in FIELD_OR_AXIS:
            if getattr(self, name) is not None and getattr(self.axes, name) is not None:
                raise _err("{name}: given both as a field and as axes.{name}; give one", name=name)
        if self.eta is None and self.axes.eta is None:
            raise _err("eta: field required (or give axes.eta)")
        if self.y_singular_values is not None:
            if self.model != "asymmetric":
                raise _err("y_singular_values: only applies to model asymmetric")
            if len(self.y_singular_values) != self.m:
                raise _err(
                    "y_singular_values: must have m = {m} values (got {n})", m=self.m, n=len(self.y_singular_values)
                )
            if min(self.y_singular_values) < 0:
                raise _err("y_singular_values: must be >= 0 (got {v})", v=min(self.y_singular_values))
        if self.record_every is None:
            self.record_every = max(1, self.steps // 200)
        if self.record_every > self.steps:
            raise _err("record_every: must be <= steps ({steps})", steps=self.steps)
        if self.steps // self.record_every > MAX_RECORDS:
            raise _err(
                "record_every: steps / record_every must be <= {max} records per curve (got {n})",
                max=MAX_RECORDS,
                n=self.steps // self.record_every,
            )
        size = self.size
        max_points = _limit(info, "max_points", DEFAULT_MAX_POINTS)
        if size > max_points:
            raise _err(
                "axes: the sweep has {size} points; the maximum is {max} (FLOWSWEEP_MAX_POINTS)",
                size=size,
                max=max_points,
            )
        self._check_budget(info)
        return self

    def _check_budget(self, info: ValidationInfo) -> None:
        """core.cost's estimate of every distinct point (the seed changes no cost) against the
        service's budget: CPU seconds and peak memory per point, CPU seconds per sweep."""
        ctx = info.context or {}
        max_point_s = float(ctx.get("max_point_cpu_seconds") or DEFAULT_MAX_POINT_CPU_SECONDS)
        max_sweep_s = float(ctx.get("max_sweep_cpu_seconds") or DEFAULT_MAX_SWEEP_CPU_SECONDS)
        max_bytes = float(ctx.get("max_point_bytes") or DEFAULT_MAX_POINT_BYTES)
        n_seeds = len(self.axis("seed"))
        # gd's cost depends on k and depth alone among the axes; flow's on init_scale, lambda0 and eta too
        flow = self.integrator == "flow"
        scales = self.axis("init_scale") if flow else [max(self.axis("init_scale"))]
        lams = self.axis("lambda0") if flow else [0.0]
        etas = self.axis("eta") if flow else [max(self.axis("eta"))]
        depths = self.axis("depth")
        # points that cost the same as one that is estimated: the seeds, data_scale, and for gd the
        # axes it does not depend on
        per_combo = (
            n_seeds
            * len(self.axis("data_scale"))
            * (1 if flow else len(self.axis("init_scale")) * len(self.axis("lambda0")) * len(self.axis("eta")))
        )
        total = 0.0
        for k, s0, lam, eta, depth in itertools.product(self.axis("k"), scales, lams, etas, depths):
            c = PointConfig(
                model=self.model,
                m=self.m,
                n=self.n or self.m,
                k=int(k),
                eta=float(eta),
                steps=self.steps,
                init=self.init,
                integrator=self.integrator,
                init_scale=float(s0),
                lambda0=float(lam),
                record_every=self.record_every or 1,
                tol=self.tol,
                fit_lambda0=self.fit_lambda0,
                n_samples=self.n_samples or 1000,
                depth=None if depth is None else int(depth),
            )
            pc = point_cost(c)
            if pc.peak_bytes > max_bytes:
                raise _err(
                    "{field}: a point needs an estimated {need} of memory (k={k}); the budget is "
                    "{max} per point (FLOWSWEEP_MAX_POINT_BYTES)",
                    field=pc.memory_field,
                    need=human_bytes(pc.peak_bytes),
                    k=k,
                    max=human_bytes(max_bytes),
                )
            if pc.cpu_seconds > max_point_s:
                raise _err(
                    "{field}: a point needs an estimated {need} of CPU time (k={k}); the budget "
                    "is {max} per point (FLOWSWEEP_MAX_POINT_CPU_SECONDS)",
                    field=pc.cpu_field,
                    need=human_seconds(pc.cpu_seconds),
                    k=k,
                    max=human_seconds(max_point_s),
                )
            total += pc.cpu_seconds * per_combo
        if total > max_sweep_s:
            raise _err(
                "axes: the sweep needs an estimated {need} of CPU time in all; the budget is {max} per "
                "sweep (FLOWSWEEP_MAX_SWEEP_CPU_SECONDS)",
                need=human_seconds(total),
                max=human_seconds(max_sweep_s),
            )

    # Resolved axes (defaults filled in).
    def axis(self, name: str) -> list:
        v = getattr(self.axes, name)
        if v is not None:
            return v
        defaults: dict[str, list[Any]] = {
            "init_scale": [0.1],
            "k": [2 * max(self.m, self.n or self.m)],
            "lambda0": [0.0],
            "seed": [0],
            "depth": [self.depth],
            "eta": [self.eta],
            "data_scale": [1.0 if self.data_scale is None else self.data_scale],
        }
        return defaults[name]

    @property
    def size(self) -> int:
        return math.prod(len(self.axis(a)) for a in AXIS_NAMES)


# ----------------------------------------------------------------------------- responses


class SweepCreated(BaseModel):
    id: int
    status: str
    n_points: int
    n_cached: int


class Counts(BaseModel):
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    diverged: int = 0
    cached: int = 0


class SweepOut(BaseModel):
    id: int
    name: str
    status: str
    spec: dict
    n_points: int
    counts: Counts
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    eta_seconds: float | None
    error: str | None = None
    tags: list[str] = []
    notes: str | None = None


class SweepPatch(StrictModel):
    """Body of PATCH /sweeps/{id}: the fields given are replaced (`tags` as a whole list)."""

    name: Name | None = Field(None, min_length=1, max_length=200, description="null: unchanged")
    tags: Tags | None = Field(None, description="replaces the sweep's tags")
    notes: Notes | None = Field(None, max_length=MAX_NOTES_LENGTH, description='free text; "" clears it')

    _name = field_validator("name")(classmethod(lambda cls, v: check_printable(v)))
    _notes = field_validator("notes")(classmethod(lambda cls, v: check_notes(v)))
    _tags = field_validator("tags")(classmethod(lambda cls, v: check_tags(v)))


class SweepList(BaseModel):
    data: list[SweepOut]
    count: int


class Health(BaseModel):
    status: str
    database: str
    ray: dict


RESULT_FIELDS: tuple[str, ...] = (
    "point_id",
    "sweep_id",
    "status",
    "model",
    "init",
    "integrator",
    "m",
    "n",
    "k",
    "init_scale",
    "lambda0",
    "seed",
    "eta",
    "steps",
    "depth",
    "data_scale",
    *METRIC_FIELDS,
    "wall_seconds",
    "worker",
)
