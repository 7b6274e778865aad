"""How the console names each job family and which of the family's own operations stop or delete a job.

A family without a delete operation in its API (Bedrock customization, Braket hybrid jobs, inference
recommendations) has no Delete button: the console offers what the API offers, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from jobforge.api.sagemaker_jobs import PREFIX as SAGEMAKER_JOB
from jobforge.core.jobs import Job

Operation = tuple[str, str, Callable[[Job], dict]]  # (service, operation, job → its input)


@dataclass(frozen=True)
class Family:
    label: str
    stop: Operation | None
    delete: Operation | None = None


def _sagemaker_job(job: Job) -> dict:
    return {"JobName": job.name, "JobCategory": job.family.removeprefix(SAGEMAKER_JOB)}


FAMILIES = {
    "bedrock-customization": Family("Bedrock customization", ("bedrock", "StopModelCustomizationJob",
                                                              lambda job: {"jobIdentifier": job.arn})),
    "braket-job": Family("Braket hybrid job", ("braket", "CancelJob", lambda job: {"jobArn": job.arn})),
    "sagemaker-compilation": Family(
        "Compilation", ("sagemaker", "StopCompilationJob", lambda job: {"CompilationJobName": job.name}),
        ("sagemaker", "DeleteCompilationJob", lambda job: {"CompilationJobName": job.name})),
    "sagemaker-recommendation": Family(
        "Inference recommendation", ("sagemaker", "StopInferenceRecommendationsJob",
                                     lambda job: {"JobName": job.name})),
}
SAGEMAKER_JOB_LABELS = {"AgentRFT": "AgentRFT", "AgentRFTEvaluation": "AgentRFT evaluation"}


def family(name: str) -> Family:
    found = FAMILIES.get(name)
    if found is not None:
        return found
    if name.startswith(SAGEMAKER_JOB):  # every CreateJob category stops and deletes alike
        category = name.removeprefix(SAGEMAKER_JOB)
        return Family(SAGEMAKER_JOB_LABELS.get(category, f"SageMaker {category}"),
                      ("sagemaker", "StopJob", _sagemaker_job), ("sagemaker", "DeleteJob", _sagemaker_job))
    return Family(name, None)


def label(name: str) -> str:
    return family(name).label
