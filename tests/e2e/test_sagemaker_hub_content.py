"""SageMaker hub content through boto3 and the SageMaker SDK against the real server: the registered models
are the public hub's Model contents, each described with the recipes the AgentRFT engine runs for it, whose
override files (downloaded from the caller's S3, as the SDK does) state the engine's real hyperparameters."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from jobforge.workloads.agent_rft import hyperparameters
from signal_game import BASE_ARN, MODEL, register_model

HUB = "SageMakerPublicHub"


@pytest.fixture(scope="module")
def sm(server, tmp_path_factory):
    register_model(server.data_dir, tmp_path_factory.mktemp("digits"))
    return server.client("sagemaker")


def s3_json(server, uri: str) -> dict:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return json.loads(server.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_hub_and_its_contents(sm):
    hub = sm.describe_hub(HubName=HUB)
    assert hub["HubArn"] == f"arn:aws:sagemaker:us-east-1:aws:hub/{HUB}" and hub["HubStatus"] == "InService"
    assert [h["HubName"] for h in sm.list_hubs()["HubSummaries"]] == [HUB]
    assert sm.list_hubs(NameContains="Private")["HubSummaries"] == []

    contents = sm.list_hub_contents(HubName=HUB, HubContentType="Model")["HubContentSummaries"]
    assert [c["HubContentName"] for c in contents] == [MODEL]
    assert contents[0]["HubContentArn"] == BASE_ARN and "@recipe:finetuning_mtrl_lora" in \
        contents[0]["HubContentSearchKeywords"]
    assert sm.list_hub_contents(HubName=HUB, HubContentType="Notebook")["HubContentSummaries"] == []
    assert sm.list_hub_contents(HubName=HUB, HubContentType="Model", NameContains="nothing")[
        "HubContentSummaries"] == []
    versions = sm.list_hub_content_versions(HubName=HUB, HubContentType="Model", HubContentName=MODEL)
    assert [v["HubContentVersion"] for v in versions["HubContentSummaries"]] == ["1.0.0"]


def test_content_document_names_the_engine_recipes(server, sm):
    content = sm.describe_hub_content(HubName=HUB, HubContentType="Model", HubContentName=MODEL)
    assert content["HubContentArn"] == BASE_ARN and content["HubContentStatus"] == "Available"
    document = json.loads(content["HubContentDocument"])
    assert document["GatedBucket"] is False
    training = next(r for r in document["RecipeCollection"] if r.get("CustomizationTechnique") == "MTRL")
    assert training["Peft"] and training["SequenceLength"] == "8K"
    spec = s3_json(server, training["SmtjOverrideParamsS3Uri"])
    assert spec == json.loads(json.dumps(hyperparameters.spec(hyperparameters.TRAINING)))
    assert spec["group_size"] == {"default": 8, "type": "integer", "min": 2, "max": 32}
    assert spec["loss_fn"]["enum"] == ["importance_sampling", "ppo", "cispo"]
    template = s3_json(server, training["SmtjRecipeTemplateS3Uri"])  # JSON is YAML too
    assert template["training_config"]["max_steps"] == "{{max_steps}}"

    evaluation = next(r for r in document["RecipeCollection"] if r.get("Type") == "Evaluation")
    assert evaluation["EvaluationType"] == "MTRLEvaluation"
    eval_spec = s3_json(server, evaluation["SmtjOverrideParamsS3Uri"])
    for name in ("eval_group_size", "sampling_temperature", "top_p", "max_tokens", "pass_k_values",
                 "success_threshold"):
        assert name in eval_spec
    assert eval_spec["pass_k_values"]["default"] == "[1, 2, 4, 8]"


def test_unknown_content_and_hubs_are_not_found(sm):
    for call, kwargs in ((sm.describe_hub_content, dict(HubName=HUB, HubContentType="Model",
                                                        HubContentName="not-registered")),
                         (sm.describe_hub_content, dict(HubName=HUB, HubContentType="Model", HubContentName=MODEL,
                                                        HubContentVersion="2.0.0")),
                         (sm.describe_hub, dict(HubName="my-private-hub")),
                         (sm.list_hub_contents, dict(HubName="my-private-hub", HubContentType="Model")),
                         (sm.list_hub_content_versions, dict(HubName=HUB, HubContentType="Model",
                                                             HubContentName="not-registered"))):
        with pytest.raises(ClientError) as caught:
            call(**kwargs)
        assert caught.value.response["Error"]["Code"] == "ResourceNotFound", kwargs
    with pytest.raises(ClientError) as caught:
        sm.list_hub_contents(HubName=HUB, HubContentType="Chart")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_sdk_reads_the_fine_tuning_options(server, sm, monkeypatch):
    """The SDK's own hub reading: the model resolves, and its MTRL options are the engine's table."""
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train.common_utils.finetune_utils import _get_fine_tuning_options_and_model_arn
    from sagemaker.train.common_utils.recipe_utils import _get_evaluation_override_params

    creds = server.credentials()
    for name, value in (("AWS_ENDPOINT_URL", server.endpoint), ("AWS_ACCESS_KEY_ID", creds["aws_access_key_id"]),
                        ("AWS_SECRET_ACCESS_KEY", creds["aws_secret_access_key"]), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)  # the SDK makes some of its clients from the default session
    # ... which boto3 caches: one made by an earlier test in this process would hold another server's keys.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto_session = boto3.Session()
    session = Session(boto_session=boto_session)
    options, model_arn, gated = _get_fine_tuning_options_and_model_arn(MODEL, "MTRL", "LORA", session)
    assert model_arn == BASE_ARN and not gated
    assert options.max_steps == hyperparameters.TRAINING["max_steps"].default
    with pytest.raises(ValueError):
        options.group_size = 64  # above the engine's range, refused by the SDK from the served spec
    params = _get_evaluation_override_params(MODEL, evaluation_type="MTRLEvaluation", region="us-east-1",
                                             session=boto_session)
    assert params["eval_group_size"]["default"] == hyperparameters.EVALUATION["eval_group_size"].default
