"""jobforge models add | list | remove — the base-model catalog.

Writes the store directly, so it works while the server runs: the server
reads the catalog on every request.
"""

from __future__ import annotations

import sys

from jobforge.config import Settings
from jobforge.core import models_catalog
from jobforge.core.store import open_store


def _engine(args):
    return open_store(Settings(data_dir=args.data_dir, database_url=args.database_url).db_url)


def add_cmd(args) -> None:
    try:
        model = models_catalog.add(_engine(args), args.identifier, args.location, args.name, args.provider)
    except ValueError as err:
        sys.exit(str(err))
    print(f"{model.model_id} → {model.location} ({model.provider_name} {model.model_name})")


def list_cmd(args) -> None:
    from jobforge.workloads.customize import customization_support
    from jobforge.workloads.customize.families import on_demand_only

    print(f"{'MODEL ID':44} {'CUSTOMIZATIONS':44} LOCATION")
    for model in models_catalog.all_models(_engine(args)):
        if model.hub_model:
            print(f"{model.model_id:44} {'AgentRFT,AgentRFTEvaluation':44} {model.location}")
            continue
        # As ListFoundationModels: a family's plain id is served on demand only, its variants are customized.
        supported = "" if on_demand_only(model.model_id) else \
            ",".join(customization_support(model.model_id)["customizationsSupported"])
        supported = supported or "-"
        print(f"{model.model_id:44} {supported:44} {model.location}")


def remove_cmd(args) -> None:
    if not models_catalog.remove(_engine(args), args.identifier):
        sys.exit(f"No model {args.identifier!r} is registered")
    print(f"Removed {args.identifier}")


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="register base models (Hugging Face directories) under Bedrock ids or "
                                      "SageMaker JumpStart model ids")
    msub = p.add_subparsers(dest="models_command", required=True)
    q = msub.add_parser("add", help="register or re-point a base model")
    q.add_argument("identifier", help="Bedrock model id, e.g. meta.llama3-2-1b-instruct-v1:0; or a JumpStart model "
                                      "id or hub-content ARN, e.g. huggingface-reasoning-qwen3-32b, the base "
                                      "models of AgentRFT jobs")
    q.add_argument("location", help="a local Hugging Face model directory or an s3:// prefix")
    q.add_argument("--name", help="model name shown by ListFoundationModels (max 20 characters)")
    q.add_argument("--provider", help="provider name (default: from the identifier)")
    q.set_defaults(func=add_cmd)
    q = msub.add_parser("list", help="registered base models")
    q.set_defaults(func=list_cmd)
    q = msub.add_parser("remove", help="unregister a base model")
    q.add_argument("identifier")
    q.set_defaults(func=remove_cmd)
