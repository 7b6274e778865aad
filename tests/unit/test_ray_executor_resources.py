"""The Ray executor's translation between jobforge's resource requests and Ray's resources."""

import pytest

pytest.importorskip("ray")

from jobforge.execution.ray_executor import bundle, node_capacity  # noqa: E402


def test_a_request_becomes_one_bundle_of_its_positive_resources():
    assert bundle({"cpus": 2, "memory_mb": 512, "gpus": 0, "resources": {"special": 1}}) == {
        "CPU": 2, "memory": 512 * 2**20, "special": 1}
    assert bundle({"cpus": 1, "gpus": 4}) == {"CPU": 1, "GPU": 4}


def test_a_nodes_resources_leave_out_ray_s_own_and_placement_groups():
    capacity = node_capacity({
        "CPU": 4.0, "GPU": 1.0, "memory": 2 * 2**30, "object_store_memory": 2**30, "node:10.0.0.2": 1.0,
        "accelerator_type:A10G": 1.0, "special": 1.0, "CPU_group_0_4f2a": 1.0, "CPU_group_4f2a": 1.0,
        "bundle_group_0_4f2a": 1000.0, "special_group_4f2a": 1.0})
    assert (capacity.cpus, capacity.memory_mb, capacity.gpus) == (4, 2048, 1)
    assert capacity.resources == {"special": 1.0}
