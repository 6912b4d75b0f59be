"""A real two-node Ray cluster (ray.cluster_utils.Cluster): the dispatcher joins it through
init_ray(address) and the `worker` of the outcomes shows both nodes."""
from __future__ import annotations

from collections import Counter

import pytest
import ray
from ray.cluster_utils import Cluster

from core import PointConfig
from workers.dispatch import Dispatcher
from workers.runtime import init_ray, ray_status, shutdown_ray


@pytest.fixture(scope="module")
def two_node_cluster(ray_tmpdir):
    shutdown_ray()
    # The head gets no CPUs, so every task runs on one of the two 1-CPU worker nodes.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        init_ray(address=cluster.address)
        yield cluster, [n.node_id for n in nodes]
    finally:
        shutdown_ray()
        cluster.shutdown()


def test_two_nodes_both_run_points(two_node_cluster):
    cluster, worker_node_ids = two_node_cluster
    assert ray_status() == {"nodes": 3, "cpus": 2}
    # enough points for several waves of tasks (the first wave is 2 x 128 points)
    points = [(i, PointConfig("asymmetric", 5, 10, 50, 1e-3, 400, record_every=20, seed=i))
              for i in range(600)]
    outcomes = []
    stats = Dispatcher().run(points, outcomes.extend)
    assert stats.n_tasks >= 4
    assert sorted(o.point_id for o in outcomes) == list(range(600))
    assert all(o.result.status == "done" for o in outcomes)
    per_node = Counter(o.worker for o in outcomes)
    assert set(per_node) == set(worker_node_ids), (per_node, worker_node_ids)
    assert stats.workers == dict(per_node)


def test_ray_status_is_zero_when_ray_is_down(two_node_cluster):
    shutdown_ray()
    assert not ray.is_initialized()
    assert ray_status() == {"nodes": 0, "cpus": 0}
