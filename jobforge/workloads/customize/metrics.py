"""Bedrock's metric files and where they go.

Both CSVs use ``step_number`` starting at 0, as Bedrock's user guide documents the
columns (a validation row carries the step after which it was measured), and
``epoch_number`` starting at 0; ``perplexity`` = exp(loss).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

TRAINING_HEADER = ("step_number", "epoch_number", "training_loss", "perplexity")
VALIDATION_HEADER = ("step_number", "epoch_number", "validation_loss", "perplexity")
TRAINING_CSV = "training_artifacts/step_wise_training_metrics.csv"
VALIDATION_CSV = "validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv"


def job_output_prefix(output_s3_uri: str, job_id: str) -> str:
    return f"{output_s3_uri.rstrip('/')}/model-customization-job-{job_id}/"


def row(steps_done: int, epoch: int, loss: float) -> list:
    """The metric row after ``steps_done`` optimizer steps: its step_number counts from 0."""
    return [steps_done - 1, epoch, loss, perplexity(loss)]


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def write_csv(path: Path, header: tuple, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path
