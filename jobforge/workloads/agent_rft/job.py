"""Workload entry of AgentRFT and AgentRFTEvaluation jobs: ``run(ctx, spec)``.

Secondary statuses: Starting → Downloading (the base model, the datasets) → Training or Evaluating →
Uploading → Completed.
"""

from __future__ import annotations

import torch

from jobforge.execution.context import JobContext
from jobforge.workloads.customize.job import fetch_model

from . import dataset
from .evaluation import evaluate
from .session import Session
from .training import Training


def run(ctx: JobContext, spec: dict) -> None:
    ctx.status("Starting", "preparing the policy")
    torch.set_num_threads(max(1, int(ctx.resources.get("cpus", 1))))
    torch.manual_seed(spec["hyperparameters"]["seed"])
    training = spec["category"] == "AgentRFT"
    ctx.status("Downloading", "the base model and the datasets")
    model = spec["base_model"]
    model_dir = fetch_model(ctx, {"identifier": model["name"], "path": model["path"]}, "base")
    channels = {name: dataset.load(ctx, name, uri) for name, uri in spec["channels"].items()}
    session = Session(ctx, spec, model_dir, training)
    try:
        if not training:
            evaluate(ctx, spec, session, channels)
            return
        loop = Training(ctx, spec, session, channels)
        loop.run()
        outputs = loop.export()
        loop.report()
        ctx.result({"Outputs": outputs})
    finally:
        session.close()
