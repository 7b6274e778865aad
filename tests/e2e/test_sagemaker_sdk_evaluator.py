"""The SageMaker Python SDK v3's MultiTurnRLEvaluator, unmodified, against the real server: it renders its
evaluation pipeline (a Lineage step, AgentRFTEvaluation Job steps, a Lineage step reading their MLflow
details), creates or updates it and starts it; each mode (base model, fine-tuned model from a
MultiTurnRLTrainer, both side by side) reaches Succeeded, with pass@k in each evaluation's MLflow run and
results file. sagemaker-core's PipelineExecution and Job resources read the steps and jobs."""

from __future__ import annotations

import json
import random
import uuid

import boto3
import pytest

from sagemaker_sdk import sdk_environment
from signal_game import BASE_ARN, MODEL, jsonl, lambda_agent, register_model

BUCKET = "sdk-evaluator"
EXPERIMENT = f"mtrl-eval-{MODEL}"  # the SDK's default experiment for the model's evaluations
EVALUATED: list[str] = []  # the ARN of each evaluation this module ran


@pytest.fixture(scope="module")
def sdk_env(server, tmp_path_factory):
    """What a user sets for the SDK: endpoint, credentials, MLflow through the endpoint, telemetry opted out."""
    register_model(server.data_dir, tmp_path_factory.mktemp("digits"))
    with sdk_environment(server, tmp_path_factory.mktemp("sdk")) as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))  # evaluate() writes mtrl_eval_pipeline_input.json here
        yield


@pytest.fixture(scope="module")
def setup(server, role_arn, sdk_env):
    s3 = server.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(5)
    rows = lambda n: jsonl({"prompt": f"episode {s}", "seed": s}  # noqa: E731
                           for s in (rng.randrange(10 ** 6) for _ in range(n)))
    s3.put_object(Bucket=BUCKET, Key="train.jsonl", Body=rows(64))
    s3.put_object(Bucket=BUCKET, Key="eval.jsonl", Body=rows(8))
    agent = lambda_agent(server, role_arn, f"sdk-eval-agent-{uuid.uuid4().hex[:6]}")
    app = server.client("sagemaker").create_mlflow_app(Name="agent-rl", ArtifactStoreUri=f"s3://{BUCKET}/mlflow",
                                                       RoleArn=role_arn)["Arn"]
    return {"agent": agent, "app": app}


@pytest.fixture(scope="module")
def trainer(setup, role_arn):
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train.multi_turn_rl_trainer import MultiTurnRLTrainer

    trainer = MultiTurnRLTrainer(model=MODEL, agent_env=setup["agent"],
                                 training_dataset=f"s3://{BUCKET}/train.jsonl",
                                 sagemaker_session=Session(boto_session=boto3.Session()), role=role_arn)
    options = trainer.hyperparameters
    options.global_batch_size, options.group_size, options.max_steps = 32, 4, 2
    options.sampling_max_tokens, options.max_concurrent_rollouts = 512, 16
    trainer.train(wait=True)
    assert trainer.output_model_package_arn
    return trainer


def _evaluate(setup, role_arn, **model):
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train.evaluate import MultiTurnRLEvaluator

    evaluator = MultiTurnRLEvaluator(dataset=f"s3://{BUCKET}/eval.jsonl", s3_output_path=f"s3://{BUCKET}/evals/",
                                     mlflow_resource_arn=setup["app"], role=role_arn,
                                     sagemaker_session=Session(boto_session=boto3.Session()), **model)
    options = evaluator.hyperparameters  # read from the hub's MTRLEvaluation override file
    options.eval_group_size, options.max_tokens = 4, 1
    execution = evaluator.evaluate()
    execution.wait(poll=1, timeout=900)
    assert execution.status.overall_status == "Succeeded", execution.status
    EVALUATED.append(execution.arn)
    return execution


def _evaluations(server, execution, app: str) -> dict[str, dict]:
    """Each evaluation step's job, through sagemaker-core: its document, results file and MLflow run."""
    import mlflow
    from mlflow import MlflowClient
    from sagemaker.core.resources import Job, PipelineExecution

    mlflow.set_tracking_uri(app)
    s3 = server.client("s3")
    found = {}
    for step in PipelineExecution.get(pipeline_execution_arn=execution.arn).get_all_steps():
        job_step = step.metadata.job
        if type(job_step).__name__ == "Unassigned":
            continue
        job = Job.get(job_name=job_step.arn.rsplit("/", 1)[1], job_category="AgentRFTEvaluation")
        assert job.job_status == "Completed"
        document = json.loads(job.job_config_document)
        output = document["ServiceOutput"]
        bucket, key = output["ResultsS3Uri"].removeprefix("s3://").split("/", 1)
        results = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        run = MlflowClient(app).get_run(output["MlflowDetails"]["RunId"])
        found[step.step_name] = {"job": job, "document": document, "results": results, "run": run}
    return found


def _listed_evaluations() -> dict[str, str]:
    """MultiTurnRLEvaluator.get_all(): each MTRL evaluation execution of the account, ARN → status. It finds the
    evaluation pipeline among the account's pipelines by the tag the SDK created it with, read with ListTags."""
    from sagemaker.train.evaluate import MultiTurnRLEvaluator

    return {execution.arn: execution.status.overall_status for execution in MultiTurnRLEvaluator.get_all()}


def _check_pass_at_k(evaluation: dict) -> None:
    results, metrics = evaluation["results"], evaluation["run"].data.metrics
    assert set(results["PassAtK"]) == {"1", "2", "4"} and results["SkippedK"] == [8]  # 4 samples per prompt
    for k, value in results["PassAtK"].items():
        assert 0.0 <= value <= 1.0
        assert metrics[f"eval/pass_at_{k}"] == pytest.approx(value)
    assert results["PassAtK"]["1"] <= results["PassAtK"]["2"] <= results["PassAtK"]["4"]
    assert metrics["eval/reward/mean"] == pytest.approx(results["MeanReward"])


def _lineage(server, execution, evaluations: dict) -> None:
    """The AssociateLineage step's reports: each named after the execution, its source the MLflow run."""
    sm = server.client("sagemaker")
    execution_id = execution.arn.rsplit("/", 1)[1]
    steps = {s["StepName"]: s for s in sm.list_pipeline_execution_steps(
        PipelineExecutionArn=execution.arn)["PipelineExecutionSteps"]}
    action = sm.describe_action(ActionName=execution_id)
    assert action["ActionType"] == "Evaluation"
    reports = steps["AssociateLineage"]["Metadata"]["Lineage"]["ArtifactArns"]
    into = {a["SourceArn"] for a in sm.list_associations(DestinationArn=action["ActionArn"])["AssociationSummaries"]}
    assert set(reports.values()) == into
    runs = {sm.describe_artifact(ArtifactArn=arn)["Source"]["SourceUri"] for arn in reports.values()}
    assert runs == {e["run"].info.run_id for e in evaluations.values()}


def test_base_model_evaluation(server, setup, role_arn):
    execution = _evaluate(setup, role_arn, model=MODEL, agent_config=setup["agent"])
    assert [s.name for s in execution.status.step_details] == [
        "CreateEvaluationAction", "EvaluateBaseModel", "AssociateLineage"]
    evaluations = _evaluations(server, execution, setup["app"])
    base = evaluations["EvaluateBaseModel"]
    assert base["document"]["EvaluationConfig"]["BaseModelArn"] == BASE_ARN
    assert "ModelPackageConfig" not in base["document"]
    assert base["run"].info.run_name == "base-model-eval"
    assert base["document"]["ServiceOutput"]["MlflowDetails"]["ExperimentName"] == EXPERIMENT
    _check_pass_at_k(base)
    _lineage(server, execution, evaluations)
    assert _listed_evaluations()[execution.arn] == "Succeeded"


def test_fine_tuned_evaluation(server, setup, role_arn, trainer):
    execution = _evaluate(setup, role_arn, model=trainer)  # the agent comes from the trainer
    assert [s.name for s in execution.status.step_details] == [
        "CreateEvaluationAction", "EvaluateFineTunedModel", "AssociateLineage"]
    evaluations = _evaluations(server, execution, setup["app"])
    tuned = evaluations["EvaluateFineTunedModel"]
    assert tuned["document"]["ModelPackageConfig"]["InputModelPackageArn"] == trainer.output_model_package_arn
    assert tuned["results"]["ModelPackageArn"] == trainer.output_model_package_arn
    assert tuned["run"].info.run_name == "fine-tuned-model-eval"
    _check_pass_at_k(tuned)
    _lineage(server, execution, evaluations)


def test_base_and_fine_tuned_side_by_side(server, setup, role_arn, trainer):
    from sagemaker.core.resources import Job

    execution = _evaluate(setup, role_arn, model=trainer, evaluate_base_model=True)
    assert [s.name for s in execution.status.step_details] == [
        "CreateEvaluationAction", "EvaluateBaseModel", "EvaluateFineTunedModel", "AssociateLineage"]
    evaluations = _evaluations(server, execution, setup["app"])
    base, tuned = evaluations["EvaluateBaseModel"], evaluations["EvaluateFineTunedModel"]
    assert base["run"].info.experiment_id == tuned["run"].info.experiment_id  # one experiment, two runs
    assert (base["run"].info.run_name, tuned["run"].info.run_name) == ("base-model-eval", "fine-tuned-model-eval")
    assert "ModelPackageArn" not in base["results"]
    for evaluation in (base, tuned):
        _check_pass_at_k(evaluation)
    _lineage(server, execution, evaluations)
    listed = {job.job_name for job in Job.get_all(job_category="AgentRFTEvaluation")}
    assert {e["job"].job_name for e in evaluations.values()} <= listed
    # Every evaluation ran in the one pipeline the SDK found again by its tag and updated: all are listed.
    assert {arn: "Succeeded" for arn in EVALUATED} == _listed_evaluations()
