"""Shared Ray fixtures for tests/workers: one real local Ray (2 CPUs) per module that asks for it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from flowsweep.workers.runtime import init_ray, ray_status, refresh_auth_config, shutdown_ray


@pytest.fixture(scope="session")
def ray_tmpdir(tmp_path_factory) -> Path:
    """A private RAY_TMPDIR (sockets, logs, session dirs) so these tests never touch /tmp/ray."""
    d = tmp_path_factory.mktemp("ray")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = old


def _sentinel_sigterm(signum, frame):  # pragma: no cover - never delivered in tests
    raise AssertionError("sentinel SIGTERM handler called")


@pytest.fixture(scope="module")
def local_ray(ray_tmpdir):
    """A fresh embedded Ray with 2 CPUs, started through init_ray with a sentinel SIGTERM handler
    installed first; yields what the handler and ray_status were right after init_ray."""
    shutdown_ray()  # a Ray left by another module would make init_ray a no-op
    old = signal.signal(signal.SIGTERM, _sentinel_sigterm)
    try:
        init_ray(num_cpus=2)
        info = {
            "sigterm_after_init": signal.getsignal(signal.SIGTERM),
            "sentinel": _sentinel_sigterm,
            "status": ray_status(),
        }
        yield info
    finally:
        shutdown_ray()
        signal.signal(signal.SIGTERM, old)


@pytest.fixture(scope="module")
def token_auth_env():
    """RAY_AUTH_MODE=token with a fresh RAY_AUTH_TOKEN in this process's environment (what an
    operator sets on every node and driver of a token-auth cluster); restored afterwards."""
    import secrets

    names = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    old = {k: os.environ.get(k) for k in names}
    token = secrets.token_hex(32)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    refresh_auth_config()
    yield token
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    refresh_auth_config()
