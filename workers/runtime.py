"""Starting, joining and stopping Ray for flowsweep.

Two modes, chosen by `init_ray(address)`:

* **embedded** (``address`` is None and ``RAY_ADDRESS`` is unset): a private local Ray is started
  in this process with all CPUs (or ``num_cpus``), without the dashboard, without forwarding
  worker logs to the driver, and with workers at normal priority (Ray's default niceness 15
  starves them whenever anything else runs on the machine).
* **join** (``address`` given, or ``RAY_ADDRESS`` set): connect to an existing cluster; the address
  has ``RAY_ADDRESS`` semantics (``"auto"``, ``"host:port"`` of the GCS, ``"ray://host:10001"``).
  ``address="local"`` forces the embedded mode even when ``RAY_ADDRESS`` is set.

Token authentication (Ray 2.60 turns it on by default for new clusters):

* embedded: if ``RAY_AUTH_MODE`` is unset, token mode is used; if no token is available
  (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), a random one is generated
  and put in this process's environment (``RAY_AUTH_TOKEN``), so the Ray processes we spawn inherit
  it and nothing is written to the home directory. ``RAY_AUTH_MODE=disabled`` is honoured.
* join: the head's settings must be mirrored by the client: set ``RAY_AUTH_MODE=token`` and give the
  head's token as ``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH``, or the head's ``~/.ray/auth_token``
  copied to this machine), or set ``RAY_AUTH_MODE=disabled`` on every process of a private network.
  As a convenience, when ``RAY_AUTH_MODE`` is unset but a token is provided (``RAY_AUTH_TOKEN`` /
  ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token`` exists), token mode is switched on — Ray itself
  only does that for ``address="auto"``, and otherwise fails after ~20 s with ``InvalidAuthToken``.

``ray.init`` replaces the SIGTERM handler (under uvicorn the lifespan shutdown would never run), so
SIGTERM and SIGINT handlers are saved before it and restored after it.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import ray

log = logging.getLogger(__name__)

_lock = threading.Lock()
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# what signal.getsignal returns (typeshed's signal._HANDLER, which exists only in the stubs)
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and Path(path).expanduser().is_file():
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def _prepare_auth(joining: bool) -> None:
    """Set RAY_AUTH_MODE / RAY_AUTH_TOKEN in os.environ before ray.init (see the module docstring)."""
    if os.environ.get("RAY_AUTH_MODE") is None:
        has_token = _token_available()
        if joining and has_token:
            os.environ["RAY_AUTH_MODE"] = "token"
        elif not joining and not has_token:
            # Process-private token, inherited by the GCS, raylet and workers ray.init
            # spawns; ray.init itself switches a new local cluster to token mode.
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    refresh_auth_config()


def refresh_auth_config() -> None:
    """Make this process's Ray follow the current RAY_AUTH_MODE / RAY_AUTH_TOKEN environment.

    Ray reads its config and token once per process (at import / first use), so changes made to
    os.environ afterwards (by `init_ray`, or by a test) need this, as Ray's own _enable_token_auth
    does it."""
    # both exist in the compiled module; ray's _raylet.pyi does not list them
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _embedded_system_config() -> dict[str, int]:
    """Ray starts workers at niceness 15 by default: on a machine with any other load they then
    get a fraction of the CPUs the sweep was promised (measured here: 2x slower than a plain
    process). The embedded service exists to run sweeps, so its workers run at normal priority;
    RAY_worker_niceness in the environment still wins."""
    if os.environ.get("RAY_worker_niceness") is not None:  # noqa: SIM112 (Ray's RAY_<config name>)
        return {}
    return {"worker_niceness": 0}


def _save_signal_handlers() -> dict[signal.Signals, _Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # signal handlers can only be read/set from the main thread
    return {s: signal.getsignal(s) for s in _SIGNALS}


def _restore_signal_handlers(saved: dict[signal.Signals, _Handler]) -> None:
    for sig, handler in saved.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (embedded) or join Ray; a no-op if Ray is already initialised in this process.

    address None -> RAY_ADDRESS if set, else a new local Ray with `num_cpus` (default: all CPUs).
    `num_cpus` is ignored when joining (the cluster decides). See the module docstring for token
    auth. SIGTERM/SIGINT handlers are restored after ray.init.
    """
    with _lock:
        if ray.is_initialized():
            return
        address = address or os.environ.get("RAY_ADDRESS") or None
        joining = address is not None and address != "local"
        _prepare_auth(joining)
        saved = _save_signal_handlers()
        try:
            if joining:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    _system_config=_embedded_system_config(),
                )
        finally:
            _restore_signal_handlers(saved)
        log.info("ray %s: %s", "joined" if joining else "started", ray_status())
        warm_workers()


def warm_workers() -> list[ray.ObjectRef[tuple[str, int]]]:
    """Submit one task per CPU of every node that imports core, so a sweep's first chunks run warm
    everywhere; returns their refs (init_ray does not wait for them). Each task is pinned (softly)
    to its node: left to the scheduler, the warm-ups can all queue on the node that answers first,
    and a short sweep then never reaches the others before it ends (worker start-up takes seconds
    on a loaded machine)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from flowsweep.workers.tasks import warm_up

    refs: list[ray.ObjectRef[tuple[str, int]]] = []
    for node_id, cpus in _node_cpus().items():
        pinned = warm_up.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=True))
        refs.extend(pinned.remote() for _ in range(cpus))
    return refs


def _node_cpus() -> dict[str, int]:
    """{node id: CPUs} of the cluster's alive nodes."""
    return {n["NodeID"]: int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")}  # type: ignore[no-untyped-call]  # ray.nodes is unannotated


def ray_status() -> dict[str, int]:
    """{"nodes": alive node count, "cpus": total CPUs}; zeros when Ray is not up or unreachable."""
    if not ray.is_initialized():
        return {"nodes": 0, "cpus": 0}
    try:
        cpus = _node_cpus()
    except Exception:  # GCS gone: report Ray as down rather than failing a health check
        return {"nodes": 0, "cpus": 0}
    return {"nodes": len(cpus), "cpus": sum(cpus.values())}


def shutdown_ray() -> None:
    """Disconnect (join mode) or stop the embedded Ray; a no-op if Ray is not up."""
    with _lock:
        if ray.is_initialized():
            saved = _save_signal_handlers()
            try:
                ray.shutdown()
            finally:
                _restore_signal_handlers(saved)


def cluster_cpus() -> int:
    """Total CPUs of the connected cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]  # unannotated in ray
