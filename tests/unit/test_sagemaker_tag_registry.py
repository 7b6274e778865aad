"""The registry AddTags, ListTags and DeleteTags find SageMaker resources through, SageMaker's rules for tags,
and the tags of a pipeline's executions going with the pipeline."""

from __future__ import annotations

import importlib
import pkgutil
import threading
from types import SimpleNamespace

import pytest

import jobforge.api
from jobforge.api import sagemaker_tags as tagging
from jobforge.core import model_packages, pipelines, sagemaker_tags, tags
from jobforge.core.errors import ServiceError
from jobforge.core.store import open_store

ACCOUNT, REGION = "111111111111", "us-east-1"
CREATED_BY = {"UserProfileArn": f"arn:aws:iam::{ACCOUNT}:root"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    found = open_store(f"sqlite:///{tmp_path_factory.mktemp('sagemaker-tags') / 'store.db'}")
    yield found
    found.dispose()


def _pipeline(engine, name: str) -> pipelines.Pipeline:
    return pipelines.create(engine, ACCOUNT, REGION, name=name, display_name=None, description=None,
                            role_arn=f"arn:aws:iam::{ACCOUNT}:role/R", parallelism=None, definition="{}",
                            created_by=CREATED_BY, tag_list=[{"Key": "k", "Value": name}], token=None)


def _execution(engine, pipeline: pipelines.Pipeline) -> pipelines.Execution:
    return pipelines.start(engine, pipeline, version=1, display_name=None, description=None, parameters={},
                           role_arn=pipeline.role_arn, parallelism=None, created_by=CREATED_BY, token=None)


def test_every_resource_type_the_server_keeps_is_registered():
    for module in pkgutil.walk_packages(jobforge.api.__path__, "jobforge.api."):
        importlib.import_module(module.name)  # as the server does at start
    assert {"job", "compilation-job", "inference-recommendations-job", "model", "endpoint-config", "endpoint",
            "model-package-group", "model-package", "pipeline", "artifact", "action", "context",
            "mlflow-app"} <= set(sagemaker_tags._HOLDERS)


def test_resource_types_are_read_from_the_arn():
    assert sagemaker_tags.resource_type(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/P/execution/x") == "pipeline"
    assert sagemaker_tags.resource_type(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/c") == \
        "endpoint-config"
    assert sagemaker_tags.resource_type(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:job/Category/name") == "job"


def test_requested_tags_refuse_reserved_and_repeated_keys():
    assert sagemaker_tags.requested(None) == {}
    assert sagemaker_tags.requested([{"Key": "a", "Value": "1"}, {"Key": "A", "Value": "2"}]) == {"a": "1", "A": "2"}
    assert sagemaker_tags.requested([{"Key": "my-aws:key", "Value": "aws:value"}]) == {"my-aws:key": "aws:value"}
    for tag_list, needle in (([{"Key": "aws:x", "Value": ""}], "reserved"),
                             ([{"Key": "Aws:x", "Value": ""}], "reserved"),
                             ([{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "1"}], "Duplicate tag key")):
        with pytest.raises(ServiceError) as caught:
            sagemaker_tags.requested(tag_list)
        assert caught.value.code == "ValidationException" and needle in caught.value.message


def test_a_pipeline_and_its_executions_are_found_in_their_account_and_region_only(engine):
    pipeline = _pipeline(engine, "Found")
    execution = _execution(engine, pipeline)
    with engine.connect() as conn:
        for arn in (pipeline.arn, execution.arn):
            assert sagemaker_tags.exists(conn, ACCOUNT, REGION, arn)
            assert not sagemaker_tags.exists(conn, "222222222222", REGION, arn)
            assert not sagemaker_tags.exists(conn, ACCOUNT, "eu-west-1", arn)
        assert not sagemaker_tags.exists(conn, ACCOUNT, REGION, pipeline.arn + "/execution/none")


def test_deleting_a_pipeline_deletes_the_tags_of_its_executions_only(engine):
    doomed, kept = _pipeline(engine, "Doomed"), _pipeline(engine, "doomed")  # names differ only in case
    doomed_run, kept_run = _execution(engine, doomed), _execution(engine, kept)
    for execution in (doomed_run, kept_run):
        tags.put(engine, ACCOUNT, execution.arn, {"run": execution.execution_id})
    with engine.begin() as conn:
        conn.execute(pipelines.pipeline_executions.update().values(status="Succeeded"))
    pipelines.delete(engine, doomed, None)
    assert tags.of(engine, doomed.arn) == {} and tags.of(engine, doomed_run.arn) == {}
    assert tags.of(engine, kept.arn) == {"k": "doomed"}
    assert tags.of(engine, kept_run.arn) == {"run": kept_run.execution_id}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    found = open_store(url)
    yield found
    found.dispose()


def test_tags_added_while_a_resource_is_deleted_go_with_it(any_engine):
    """AddTags holds the resource's row: a deletion either comes first (AddTags then finds nothing) or waits and
    removes what AddTags wrote. Without the lock PostgreSQL leaves such tags behind in nearly every round."""
    ctx = SimpleNamespace(engine=any_engine, account_id=ACCOUNT, region=REGION)
    for round_ in range(10):
        group = model_packages.create_group(any_engine, ACCOUNT, REGION, f"raced-{round_}", None, CREATED_BY, [])
        start = threading.Barrier(5)

        def add(worker: int) -> None:
            start.wait()
            for attempt in range(5):
                try:
                    tagging.add_tags(ctx, {"ResourceArn": group.arn,
                                           "Tags": [{"Key": f"k{worker}-{attempt}", "Value": "v"}]})
                except ServiceError as err:
                    assert "Could not find resource" in err.message

        workers = [threading.Thread(target=add, args=(worker,)) for worker in range(4)]
        for worker in workers:
            worker.start()
        start.wait()
        model_packages.delete_group(any_engine, group)
        for worker in workers:
            worker.join()
        assert tags.of(any_engine, group.arn) == {}
