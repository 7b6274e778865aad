"""XGBoost models: ``xgboost-model`` as SageMaker's XGBoost container names it (XGBoost's own format, or a
pickled Booster), or a ``.json``/``.ubj``/``.bst`` file; answered with the booster's predictions."""

from __future__ import annotations

import pickle
from pathlib import Path

from jobforge.workloads.serving.frameworks import sklearn_file, xgboost_file
from jobforge.workloads.serving.predictor import ArrayPredictor


def load_booster(path: Path, threads: int):
    import xgboost

    booster = xgboost.Booster(params={"nthread": threads})
    try:
        booster.load_model(str(path))
    except xgboost.core.XGBoostError:
        with open(path, "rb") as handle:  # an older container's pickled Booster (inside the confined server only)
            booster = pickle.load(handle)
    return booster


def load(model_dir: Path, threads: int) -> ArrayPredictor:
    import xgboost

    booster = load_booster(xgboost_file(model_dir) or sklearn_file(model_dir), threads)
    return ArrayPredictor(lambda data: booster.predict(xgboost.DMatrix(data)))
