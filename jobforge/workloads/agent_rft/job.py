"""Workload entry of AgentRFT and AgentRFTEvaluation jobs: ``run(ctx, spec)``.

Secondary statuses: Starting → Downloading (the base model, the input model package if any, the datasets) →
Training or Evaluating → Uploading → Completed.
"""

from __future__ import annotations

import os
from pathlib import Path

# The policy shares its cores with the server and the agents it drives: OpenMP threads that spin while they
# wait would take those cores from them and turn each small forward pass into tens of milliseconds. Read by
# OpenMP when torch loads, which this module is the first to do in the worker.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from jobforge.execution.context import JobContext, JobStopped, WorkloadError
from jobforge.workloads.customize.job import fetch_model

from . import dataset, mlflow_run
from .evaluation import evaluate
from .session import Session
from .training import Training


def _input_package(ctx: JobContext, spec: dict, base_dir: Path) -> tuple[Path, Path | None]:
    """(model, adapter) directories the policy starts from: the base model, or the model of
    ``InputModelPackageArn`` (a merged model replaces the base; a checkpoint's LoRA adapter goes on it)."""
    package = spec.get("input_package")
    if package is None:
        return base_dir, None
    folder = Path(ctx.work_dir) / "models" / "package"
    ctx.download(package["uri"].rstrip("/") + "/", folder)
    if (folder / "adapter_config.json").is_file():
        return base_dir, folder
    if (folder / "config.json").is_file():
        return folder, None
    raise WorkloadError(f"The model package {package['arn']} holds neither a Hugging Face model nor a LoRA adapter "
                        f"at {package['uri']}.")


def run(ctx: JobContext, spec: dict) -> None:
    ctx.status("Starting", "preparing the policy")
    torch.set_num_threads(max(1, int(ctx.resources.get("cpus", 1))))
    torch.manual_seed(spec["hyperparameters"]["seed"])
    training = spec["category"] == "AgentRFT"
    tracker = mlflow_run.start(ctx, spec)
    if tracker:
        ctx.result({"ServiceOutput": {"MlflowDetails": tracker.details}})
    try:
        _run(ctx, spec, training, tracker)
    except BaseException as err:
        if tracker:
            stopped = isinstance(err, JobStopped) or ctx.should_stop()
            tracker.end(mlflow_run.KILLED if stopped else mlflow_run.FAILED)
        raise
    if tracker:
        tracker.end(mlflow_run.KILLED if ctx.should_stop() else mlflow_run.FINISHED)


def _run(ctx: JobContext, spec: dict, training: bool, tracker: mlflow_run.MlflowRun | None) -> None:
    ctx.status("Downloading", "the base model and the datasets")
    model = spec["base_model"]
    model_dir = fetch_model(ctx, {"identifier": model["name"], "path": model["path"]}, "base")
    model_dir, adapter_dir = _input_package(ctx, spec, model_dir)
    channels = {name: dataset.load(ctx, name, uri) for name, uri in spec["channels"].items()}
    session = Session(ctx, spec, model_dir, training, adapter_dir)
    try:
        if not training:
            evaluate(ctx, spec, session, channels, tracker)
            return
        loop = Training(ctx, spec, session, channels, tracker)
        loop.run()
        outputs = loop.export()
        loop.report()
        ctx.result({"Outputs": outputs})
    finally:
        session.close()
