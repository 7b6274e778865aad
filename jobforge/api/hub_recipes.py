"""The recipe files a registered hub model's HubContentDocument points at, generated from the AgentRFT
engine's hyperparameter tables and kept in the caller's object store, where the SageMaker SDK downloads them.

SageMaker's public hub keeps these files in buckets of its own that every account may read; jobforge's buckets
belong to one account each, so each account gets its own copy in a bucket named after the account and region
(``jobforge-hub-<account>-<region>``), written when a model's content is described and rewritten only when
the tables change.
"""

from __future__ import annotations

import hashlib
import json

from jobforge.core.errors import ServiceError
from jobforge.core.objects import ObjectStore
from jobforge.workloads.agent_rft import hyperparameters

TRAINING_TECHNIQUE = "MTRL"
EVALUATION_TYPE = "MTRLEvaluation"
# The longest sequence the engine's recipe serves: its ceiling on generated tokens per turn.
SEQUENCE_LENGTH = f"{hyperparameters.TRAINING['sampling_max_tokens'].high // 1024}K"
SEARCH_KEYWORDS = ("@recipe:finetuning_mtrl_lora", "@recipe:evaluation_mtrlevaluation")


def bucket_name(account_id: str, region: str) -> str:
    return f"jobforge-hub-{account_id}-{region}"


def _template(model_name: str, job_category: str, section: str, table: dict) -> bytes:
    """A recipe template: every hyperparameter as the ``{{name}}`` placeholder the SDK renders (JSON, which
    is YAML too)."""
    recipe = {"run": {"model": model_name, "job_category": job_category, "peft": "lora"},
              section: {name: "{{" + name + "}}" for name in table}}
    return json.dumps(recipe, indent=2).encode()


def _files(model_name: str) -> dict[str, bytes]:
    prefix = f"recipes/{model_name}"
    return {
        f"{prefix}/mtrl/recipe.yaml": _template(model_name, "AgentRFT", "training_config", hyperparameters.TRAINING),
        f"{prefix}/mtrl/override_params.json": json.dumps(hyperparameters.spec(hyperparameters.TRAINING),
                                                          indent=2).encode(),
        f"{prefix}/mtrl-evaluation/recipe.yaml": _template(model_name, "AgentRFTEvaluation", "evaluation_config",
                                                           hyperparameters.EVALUATION),
        f"{prefix}/mtrl-evaluation/override_params.json": json.dumps(
            hyperparameters.spec(hyperparameters.EVALUATION), indent=2).encode(),
    }


def _ensure_bucket(store: ObjectStore, account_id: str, region: str) -> str:
    name = bucket_name(account_id, region)
    try:
        store.create_bucket(account_id, name, region)
    except ServiceError as e:
        if e.code == "BucketAlreadyExists":
            raise ServiceError("ResourceNotFound", f"The hub's recipe files are kept in the bucket {name}, which "
                               "another account owns; this account's hub content cannot be served.") from None
        if e.code != "BucketAlreadyOwnedByYou":
            raise
    return name


def _put_if_changed(store: ObjectStore, account_id: str, bucket: str, key: str, data: bytes) -> None:
    try:
        if store.head(account_id, bucket, key).etag == hashlib.md5(data).hexdigest():
            return
    except ServiceError as e:
        if e.code != "NoSuchKey":
            raise
    content_type = "application/json" if key.endswith(".json") else "application/yaml"
    store.put_bytes(account_id, bucket, key, data, content_type)


def recipe_collection(store: ObjectStore, account_id: str, region: str, model_name: str) -> list[dict]:
    """The document's RecipeCollection for a registered model, its files placed in the caller's store."""
    bucket = _ensure_bucket(store, account_id, region)
    for key, data in _files(model_name).items():
        _put_if_changed(store, account_id, bucket, key, data)
    base = f"s3://{bucket}/recipes/{model_name}"
    return [
        {"Name": f"{model_name}-mtrl-lora", "Type": "FineTuning", "CustomizationTechnique": TRAINING_TECHNIQUE,
         "Peft": "LORA", "SequenceLength": SEQUENCE_LENGTH,
         "SmtjRecipeTemplateS3Uri": f"{base}/mtrl/recipe.yaml",
         "SmtjOverrideParamsS3Uri": f"{base}/mtrl/override_params.json"},
        {"Name": f"{model_name}-mtrl-evaluation", "Type": "Evaluation", "EvaluationType": EVALUATION_TYPE,
         "SequenceLength": SEQUENCE_LENGTH,
         "SmtjRecipeTemplateS3Uri": f"{base}/mtrl-evaluation/recipe.yaml",
         "SmtjOverrideParamsS3Uri": f"{base}/mtrl-evaluation/override_params.json"},
    ]
