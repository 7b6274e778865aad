"""SageMaker CreateJob's AgentRFT and AgentRFTEvaluation categories, and the job runtime API their agents call.

The categories are declared here (schemas, how a document becomes a job, their log groups); the
runtime API (``runtime``) forwards each call to the policy server of the running job it names.
"""

from __future__ import annotations

from jobforge.api import sagemaker_jobs
from jobforge.api.agent_rft import documents, schemas
from jobforge.core import kinds
from jobforge.core.kinds import LogGroup, Workload

WORKLOAD = "jobforge.workloads.agent_rft.job"


def _stream(job) -> str:
    return f"{job.name}/{job.id}"


TRAINING = kinds.register(sagemaker_jobs.job_category(
    documents.TRAINING, Workload(WORKLOAD, resumable=True), {schemas.VERSION: schemas.TRAINING},
    documents.build_training, admit=documents.admit,
    log_group=LogGroup("/aws/sagemaker/Job/AgentRFT", _stream)))
EVALUATION = kinds.register(sagemaker_jobs.job_category(
    documents.EVALUATION, Workload(WORKLOAD, resumable=True), {schemas.VERSION: schemas.EVALUATION},
    documents.build_evaluation, admit=documents.admit,
    log_group=LogGroup("/aws/sagemaker/Job/AgentRFTEvaluation", _stream)))
