"""A real two-node Ray cluster (ray.cluster_utils.Cluster) with token auth on: the dispatcher joins
it through init_ray() with RAY_ADDRESS set, and the `worker` of the outcomes shows both nodes."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import ray
from ray.cluster_utils import Cluster

from flowsweep.core import PointConfig
from flowsweep.workers.dispatch import Dispatcher
from flowsweep.workers.runtime import init_ray, ray_status, shutdown_ray, warm_workers


@pytest.fixture(scope="module")
def two_node_cluster(ray_tmpdir, token_auth_env):
    shutdown_ray()
    # The head gets no CPUs, so every task runs on one of the two 1-CPU worker nodes.
    # Workers at normal priority as in the embedded mode (Ray's niceness 15 starves them on this
    # shared machine).
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": {"worker_niceness": 0}},
    )
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    old_address = os.environ.get("RAY_ADDRESS")
    try:
        cluster.wait_for_nodes()
        os.environ["RAY_ADDRESS"] = cluster.address  # what `RAY_ADDRESS=... flowsweep serve` does
        init_ray()
        # init_ray's warm-ups, pinned one per CPU of each node: awaited here so that the test of
        # the dispatcher below does not depend on how fast a loaded machine starts Ray workers.
        warmed = ray.get(warm_workers(), timeout=120)
        yield cluster, [n.node_id for n in nodes], warmed
    finally:
        if old_address is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = old_address
        shutdown_ray()
        cluster.shutdown()


def test_warm_up_reaches_every_node(two_node_cluster):
    _, worker_node_ids, warmed = two_node_cluster
    assert sorted(node for node, _ in warmed) == sorted(worker_node_ids)


def test_two_nodes_both_run_points(two_node_cluster):
    cluster, worker_node_ids, _ = two_node_cluster
    assert ray_status() == {"nodes": 3, "cpus": 2}
    # Several waves of tasks (600 > 2 x 128 points starts with 16-point probes), and seconds of
    # work per CPU, so one node cannot finish it all before the other takes a task.
    points = [(i, PointConfig("asymmetric", 5, 10, 50, 1e-3, 4000, record_every=20, seed=i)) for i in range(600)]
    outcomes = []
    stats = Dispatcher().run(points, outcomes.extend)
    assert stats.n_tasks >= 4
    assert sorted(o.point_id for o in outcomes) == list(range(600))
    assert all(o.result.status == "done" for o in outcomes)
    per_node = Counter(o.worker for o in outcomes)
    assert set(per_node) == set(worker_node_ids), (per_node, worker_node_ids)
    assert stats.workers == dict(per_node)


def test_cluster_requires_the_token(two_node_cluster):
    """The cluster really runs token auth: a GCS client without the right token is refused."""
    from ray._raylet import GcsClient

    from flowsweep.workers.runtime import refresh_auth_config

    cluster, _, _ = two_node_cluster
    good = os.environ["RAY_AUTH_TOKEN"]
    GcsClient(address=cluster.address).internal_kv_keys(b"", namespace=None, timeout=10)
    os.environ["RAY_AUTH_TOKEN"] = "0" * 64
    refresh_auth_config()
    try:
        with pytest.raises(ray.exceptions.AuthenticationError, match="InvalidAuthToken"):
            GcsClient(address=cluster.address).internal_kv_keys(b"", namespace=None, timeout=10)
    finally:
        os.environ["RAY_AUTH_TOKEN"] = good
        refresh_auth_config()


def test_ray_status_is_zero_when_ray_is_down(two_node_cluster):
    shutdown_ray()
    assert not ray.is_initialized()
    assert ray_status() == {"nodes": 0, "cpus": 0}


def test_the_express_lane_runs_a_chunk_while_both_nodes_cpus_are_held(two_node_cluster, tmp_path):
    from test_stream import chunk, collect_until, gated_remote, open_gate, wait_for_express

    from flowsweep.workers.dispatch import TaskStream

    stream = TaskStream(remote=gated_remote(tmp_path))
    stream.submit(chunk([50, 51]), "A")
    stream.submit(chunk([52, 53]), "A")  # one on each node's CPU, held until their gates open
    wait_for_express(stream)
    assert stream.running() == 2 == stream.cpus()
    stream.submit(chunk([54, 55]), "B", express=True)
    open_gate(tmp_path, 54)
    dones = collect_until(stream, lambda d: any(x.tag == "B" for x in d), [], "the express chunk")
    assert [(d.tag, [o.point_id for o in d.outcomes]) for d in dones] == [("B", [1054, 1055])]
    assert stream.in_flight("A") == 2  # still held
    for seed in (50, 52):
        open_gate(tmp_path, seed)
    dones = collect_until(stream, lambda d: stream.in_flight() == 0, [], "A's chunks")
    assert sorted(o.point_id for d in dones for o in d.outcomes) == [1050, 1051, 1052, 1053]
    stream.close()
