"""flowsweep: sweeps of gradient-flow experiments on overparameterized linear models.

One import name for the whole distribution::

    from flowsweep import Client              # HTTP client (client side: no server dependencies)
    from flowsweep.core import run_points     # the science, numpy + scipy only

`flowsweep.core`, `flowsweep.workers` (Ray), `flowsweep.service` (FastAPI, database, runner, and the
client-side `client`, `cli`, `plots`) and `flowsweep.migrations` (Alembic) are its subpackages;
`flowsweep.status` (the point and sweep states) and `flowsweep.jsonsafe` (NaN -> null) are read by all.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("flowsweep")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Client", "__version__"]


def __getattr__(name: str):
    # lazy: importing flowsweep.core in a Ray worker must not pull in httpx and pandas
    if name == "Client":
        from flowsweep.service.client import Client

        return Client
    raise AttributeError(f"module 'flowsweep' has no attribute {name!r}")
