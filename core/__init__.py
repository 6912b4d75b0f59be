"""flowsweep's science core: the paper's dynamics, closed forms and fits (numpy + scipy only)."""
from .types import (INITS, INTEGRATORS, METRIC_FIELDS, MODELS, Curves, PointConfig,  # noqa: F401
                    PointResult)
from .validation import validate_config  # noqa: F401
from .run import initial_state, run_point, run_points, simulate  # noqa: F401

# Part of a point's identity: bump whenever the numbers a config produces change.
CORE_VERSION = "1"

__all__ = ["PointConfig", "PointResult", "Curves", "METRIC_FIELDS", "MODELS", "INITS", "INTEGRATORS",
           "run_points", "run_point", "initial_state", "validate_config", "CORE_VERSION",
           "simulate"]
