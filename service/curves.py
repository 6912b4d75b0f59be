"""The curves codec as the service sees it: one definition, in workers.codec (the workers encode
the blobs next to the computation; the service stores and decodes them)."""
from __future__ import annotations

from flowsweep.workers.codec import CURVES_FORMAT, NPZ_FORMAT, decode_curves, encode_curves  # noqa: F401
