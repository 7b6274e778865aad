"""The executor seam's small parts: choosing an executor, local handles, instance types, advertised URLs."""

from __future__ import annotations

import botocore.session
import pytest

from jobforge.config import Settings
from jobforge.core.errors import ServiceError
from jobforge.core.instance_types import catalog, resources_for
from jobforge.execution.executor import EXECUTORS, open_executor
from jobforge.execution.local import LocalExecutor, local_pid
from jobforge.execution.resources import Capacity


def test_an_unknown_executor_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown executor 'slurm'; known executors: local, ray"):
        open_executor(Settings(data_dir=tmp_path, executor="slurm"))
    assert isinstance(open_executor(Settings(data_dir=tmp_path)), LocalExecutor)
    assert set(EXECUTORS) == {"local", "ray"}


def test_local_handles_name_a_pid_and_its_start_time():
    assert local_pid("local:4242:987654") == 4242
    assert local_pid("local:4242") == 4242  # recorded by an older server as a plain pid
    assert local_pid("ray:abc") is None


def test_every_instance_type_the_apis_accept_has_its_resources():
    braket = botocore.session.get_session().get_service_model("braket")
    assert set(braket.shape_for("InstanceType").enum) <= set(catalog())
    assert resources_for("ml.m5.large") == {"cpus": 2, "memory_mb": 8192, "gpus": 0, "instances": 1}
    assert resources_for("ml.g4dn.12xlarge", 2) == {"cpus": 48, "memory_mb": 196608, "gpus": 4, "instances": 2}
    assert resources_for("ml.c4.xlarge")["memory_mb"] == 7680
    # An accelerator's cores, under the names Ray's nodes declare them by
    assert resources_for("ml.trn1.2xlarge")["resources"] == {"neuron_cores": 2}
    assert resources_for("ml.inf1.6xlarge")["resources"] == {"neuron_cores": 16}
    assert resources_for("ml.dl1.24xlarge")["resources"] == {"HPU": 8}
    with pytest.raises(ServiceError):
        resources_for("ml.nope.large")


def test_a_shortfall_names_everything_no_node_can_give():
    node = Capacity(cpus=2, memory_mb=4096, gpus=0)
    assert node.shortfall({"cpus": 2, "memory_mb": 4096}) is None
    reason = node.shortfall(resources_for("ml.g4dn.xlarge"))
    assert "4 CPUs (a node offers at most 2)" in reason and "16384 MiB of memory" in reason
    assert "1 GPUs (a node offers at most 0)" in reason
    assert "2 instances" in node.shortfall({"cpus": 1, "instances": 2})
    assert "2 neuron_cores (a node offers at most 0)" in node.shortfall(resources_for("ml.trn1.2xlarge"))
    labelled = Capacity(cpus=2, memory_mb=4096, gpus=0, resources={"fast_disk": 1})
    assert labelled.shortfall({"cpus": 1, "resources": {"fast_disk": 1}}) is None
    assert labelled.fits({"cpus": 1, "resources": {"fast_disk": 1}}, Capacity(0, 0, 0))
    assert not labelled.fits({"cpus": 1, "resources": {"fast_disk": 1}}, Capacity(0, 0, 0, {"fast_disk": 1}))


def test_jobs_reach_the_server_by_the_advertised_url(tmp_path):
    assert Settings(data_dir=tmp_path, host="127.0.0.1", port=4566).advertised_url == "http://127.0.0.1:4566"
    assert Settings(data_dir=tmp_path, host="10.1.2.3", port=80).advertised_url == "http://10.1.2.3:80"
    given = Settings(data_dir=tmp_path, host="0.0.0.0", advertise_url="http://jobforge.internal:4566/")
    assert given.advertised_url == "http://jobforge.internal:4566"
    everywhere = Settings(data_dir=tmp_path, host="0.0.0.0", port=4566)
    assert everywhere.endpoint_url == "http://127.0.0.1:4566"  # what this host's own clients use
    assert everywhere.advertised_url.startswith("http://") and everywhere.advertised_url.endswith(":4566")
    assert "0.0.0.0" not in everywhere.advertised_url
    assert Settings(data_dir=tmp_path, host="::").advertised_url.startswith("http://[")
