"""Bedrock model customization: fine-tuning, continued pre-training, distillation, and reinforcement
fine-tuning (``rft``: the agent-RL engine trained on a grader Lambda's scores).

Workload entry point: ``run(ctx, spec)``. The spec, built by the Bedrock API
handler from a CreateModelCustomizationJob request::

    {
      "jobId": "ge8i3cybectl",              # last ARN segment; names the output folder
      "customizationType": "FINE_TUNING" | "CONTINUED_PRE_TRAINING" | "DISTILLATION"
                           | "REINFORCEMENT_FINE_TUNING",
      "baseModel": {"identifier": "meta.llama3-2-1b-instruct-v1:0",
                    "path": "/models/llama-1b" or "s3://bucket/models/llama-1b/"},
      "teacherModel": {"identifier": ..., "path": ...,           # DISTILLATION only, from
                       "maxResponseLengthForInference": 1000},   # customizationConfig.distillationConfig
      "trainingDataConfig": {"s3Uri": "s3://bucket/train.jsonl"}
          or {"invocationLogsConfig": {"invocationLogSource": {"s3Uri": "s3://bucket/logs/"},
                                       "usePromptResponse": false,
                                       "requestMetadataFilters": {"equals": {"project": "x"}}}},
      "validationDataConfig": {"validators": [{"s3Uri": "s3://bucket/valid.jsonl"}]},   # optional
      "outputDataConfig": {"s3Uri": "s3://bucket/output"},
      "hyperParameters": {"epochCount": "3", "learningRate": "0.0001", ...},   # strings, as sent
      "outputModelUri": "s3://bucket/custom-models/<id>/",   # where the custom model goes
      "rftConfig": {"graderConfig": {"lambdaGrader": {"lambdaArn": ...}},   # REINFORCEMENT_FINE_TUNING only,
                    "hyperParameters": {"epochCount": 2, ...}},             # customizationConfig's (rft/job.py)
    }

Hyperparameters: Bedrock's names per model family (``epochCount``,
``batchSize``, ``learningRate``, ``learningRateWarmupSteps``,
``learningRateMultiplier`` (× 1e-4), ``earlyStoppingThreshold``,
``earlyStoppingPatience``, ``evalPercentage``) with the family's ranges and
defaults, plus extras accepted for every family: ``loraRank`` (16),
``loraAlpha`` (2 × rank), ``fullFineTuning`` ("false"),
``maxSequenceLength`` (the family's token limit), ``gradientAccumulationSteps``
(1), ``checkpointInterval`` (50 optimizer steps), ``seed`` (0).
``batchSize`` counts sequences per micro-batch. The learning rate warms up
linearly over ``learningRateWarmupSteps`` and then decays linearly to zero.
Validation loss is measured after every epoch; early stopping compares those.

Checkpoints (trainable weights, optimizer, scheduler, data position, metric
rows) go to ``ctx.checkpoint_dir`` every ``checkpointInterval`` steps and at
each epoch end; a rerun of the same job continues from the newest one, and a
distillation job also reuses the teacher's answers. On ``ctx.should_stop()``
the job raises ``JobStopped`` and writes no metrics files and no model.

Phases reported with ``ctx.status(phase, message)``, matching
statusDetails: ``Validation`` (hyperparameters, data format, record counts,
token limits), ``DataProcessing`` (distillation only: teacher generation),
``Training`` (training, validation, saving). A phase starts when first
reported and completes when the next begins or the job ends; a
``WorkloadError`` fails the current one.

Outputs: ``<outputDataConfig.s3Uri>/model-customization-job-<jobId>/``
``training_artifacts/step_wise_training_metrics.csv`` and, with validation
data, ``validation_artifacts/post_fine_tuning_validation/validation/
validation_metrics.csv``; distillation adds ``distillation_artifacts/``
``synthetic_data.jsonl`` and ``prompt_insights.jsonl``. The merged model
(safetensors, tokenizer and chat template) goes to ``outputModelUri``, the
LoRA adapter to ``<outputModelUri>adapter/``. ``ctx.result`` receives
``trainingLoss``, ``validationLoss``, ``validationMetrics``
(``[{"validationLoss"}]``), ``outputModelUri``, ``adapterUri``,
``trainingMetricsUri``, ``validationMetricsUri``, ``stepCount``,
``epochsCompleted``, ``earlyStopped``, ``trainedTokens``,
``tokensPerSecond``, and for distillation ``acceptedPromptCount``,
``rejectedPromptCount``, ``syntheticDataUri``, ``promptInsightsUri``.

This package imports without torch: ``validate_hyperparameters`` and
``customization_support`` are safe to call from the API server.
"""

from .families import REINFORCEMENT_FINE_TUNING
from .hyperparams import customization_support, validate_hyperparameters, validate_rft_hyperparameters

__all__ = ["run", "validate_hyperparameters", "validate_rft_hyperparameters", "customization_support"]


def run(ctx, spec: dict) -> None:
    if spec["customizationType"] == REINFORCEMENT_FINE_TUNING:
        from .rft.job import run as run_job
    else:
        from .job import run as run_job

    run_job(ctx, spec)
