"""scikit-learn models saved with joblib or pickle (``model.joblib``, ``model.pkl``), answered with
``predict``."""

from __future__ import annotations

from pathlib import Path

from jobforge.workloads.serving.frameworks import sklearn_file
from jobforge.workloads.serving.predictor import ArrayPredictor


def load_model(path: Path):
    import joblib

    return joblib.load(path)  # unpickles the user's model: this runs only inside the confined model server


def load(model_dir: Path, threads: int) -> ArrayPredictor:
    model = load_model(sklearn_file(model_dir))
    return ArrayPredictor(model.predict)
