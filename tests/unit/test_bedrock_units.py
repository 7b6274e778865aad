"""Bedrock pieces that need no server: statusDetails from a job's transitions,
and InvokeModel bodies per model family."""

import datetime as dt

import pytest

from jobforge.api import invoke_formats
from jobforge.api.bedrock import status_details
from jobforge.core.errors import ServiceError
from jobforge.core.jobs import Job


def job(state, phases, kind="FINE_TUNING"):
    transitions = [{"state": "QUEUED", "secondary": None, "at": 100.0}]
    transitions += [{"state": "RUNNING", "secondary": phase, "at": 110.0 + i} for i, phase in enumerate(phases)]
    return Job(id="x", account_id="1", region="us-east-1", family="bedrock-customization", name="j", arn="a",
               state=state,
               secondary_status=None, status_message=None, failure_reason=None, workload="w",
               spec={"customizationType": kind}, result={}, resources={}, transitions=transitions, role_arn=None,
               max_runtime=None, stop_reason=None, attempt=1, handle=None, created_at=100.0, updated_at=200.0,
               started_at=105.0, ended_at=None)


def statuses(details):
    return {key: value["status"] for key, value in details.items()}


def test_phases_follow_the_workload_reports():
    assert statuses(status_details(job("RUNNING", ["Validation"]))) == {
        "validationDetails": "InProgress", "trainingDetails": "NotStarted"}
    details = status_details(job("COMPLETED", ["Validation", "Training"]))
    assert statuses(details) == {"validationDetails": "Completed", "trainingDetails": "Completed"}
    assert details["validationDetails"]["lastModifiedTime"] == dt.datetime.fromtimestamp(111.0, dt.timezone.utc)
    assert statuses(status_details(job("FAILED", ["Validation"]))) == {
        "validationDetails": "Failed", "trainingDetails": "NotStarted"}
    assert statuses(status_details(job("STOPPING", ["Validation", "Training"]))) == {
        "validationDetails": "Completed", "trainingDetails": "Stopping"}


def test_distillation_reports_data_processing():
    assert statuses(status_details(job("RUNNING", ["Validation", "DataProcessing"], "DISTILLATION"))) == {
        "validationDetails": "Completed", "dataProcessingDetails": "InProgress", "trainingDetails": "NotStarted"}


def test_a_job_that_ends_before_any_phase_reports_it_on_validation():
    assert statuses(status_details(job("STOPPED", []))) == {
        "validationDetails": "Stopped", "trainingDetails": "NotStarted"}


@pytest.mark.parametrize("model_id, body, expected", [
    ("meta.llama3-1-8b-instruct-v1:0", {"prompt": "hi", "max_gen_len": 7, "temperature": 0.1},
     dict(prompt="hi", max_tokens=7, temperature=0.1, top_p=0.9)),
    ("amazon.titan-text-lite-v1",
     {"inputText": "hi", "textGenerationConfig": {"maxTokenCount": 9, "stopSequences": ["|"]}},
     dict(prompt="hi", max_tokens=9, stop=["|"])),
    ("anthropic.claude-3-haiku-20240307-v1:0",
     {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "system": "be brief",
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
     dict(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], max_tokens=5)),
    ("amazon.nova-lite-v1:0", {"schemaVersion": "messages-v1", "system": [{"text": "s"}],
                               "messages": [{"role": "user", "content": [{"text": "hi"}]}],
                               "inferenceConfig": {"maxTokens": 4, "topP": 0.5}},
     dict(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], max_tokens=4, top_p=0.5)),
    ("myorg.chat-v1", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
     dict(messages=[{"role": "user", "content": "hi"}], max_tokens=3)),
])
def test_native_bodies_parse(model_id, body, expected):
    request = invoke_formats.parse(invoke_formats.family(model_id), body)
    for key, value in expected.items():
        assert getattr(request, key) == value


def test_native_bodies_render():
    result = invoke_formats.Result("Paris.", 5, 2, "max_tokens")
    llama = invoke_formats.Request(prompt="q")
    assert invoke_formats.render("llama", "m", llama, result) == {
        "generation": "Paris.", "prompt_token_count": 5, "generation_token_count": 2, "stop_reason": "length"}
    titan = invoke_formats.render("titan", "m", llama, invoke_formats.Result("x", 1, 1, "end_turn"))
    assert titan["results"][0]["completionReason"] == "FINISH"
    claude = invoke_formats.render("anthropic", "m", invoke_formats.Request(messages=[]), result)
    assert claude["content"] == [{"type": "text", "text": "Paris."}] and claude["usage"] == {
        "input_tokens": 5, "output_tokens": 2}


@pytest.mark.parametrize("model_id, body", [
    ("meta.llama3-1-8b-instruct-v1:0", {"inputText": "wrong family"}),
    ("anthropic.claude-3-haiku-20240307-v1:0", {"messages": [{"role": "user", "content": "hi"}]}),
    ("myorg.chat-v1", {"messages": [{"role": "user", "content": [{"image": {}}]}]}),
    ("meta.llama3-1-8b-instruct-v1:0", {"prompt": "hi", "max_gen_len": "many"}),
])
def test_malformed_bodies_are_validation_errors(model_id, body):
    with pytest.raises(ServiceError) as err:
        invoke_formats.parse(invoke_formats.family(model_id), body)
    assert err.value.code == "ValidationException"


@pytest.mark.parametrize("kind", ["llama", "titan", "anthropic", "nova", "cohere", "mistral", "generic"])
def test_stream_chunks_end_with_invocation_metrics(kind):
    request = invoke_formats.Request(messages=[{"role": "user", "content": "hi"}])
    chunks = invoke_formats.stream_start(kind, "m") + [invoke_formats.stream_piece(kind, request, "Pa", 0)]
    chunks += invoke_formats.stream_end(kind, request, invoke_formats.Result("Pa", 3, 1, "end_turn"), 12, 5)
    assert chunks[-1]["amazon-bedrock-invocationMetrics"] == {
        "inputTokenCount": 3, "outputTokenCount": 1, "invocationLatency": 12, "firstByteLatency": 5}
    if kind == "anthropic":
        assert [c["type"] for c in chunks] == ["message_start", "content_block_start", "content_block_delta",
                                               "content_block_stop", "message_delta", "message_stop"]


def test_a_completed_job_whose_hook_was_lost_gets_its_model(tmp_path):
    """A server killed between a job's completion and its model's registration registers it on the next read."""
    from types import SimpleNamespace

    from jobforge.api.bedrock import KIND, reconcile_models
    from jobforge.core import custom_models, jobs
    from jobforge.core.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    api = {"customModelName": "m1", "customModelId": "abcdefabcdef", "baseModelArn": "arn:fm",
           "customModelArn": "arn:aws:bedrock:us-east-1:111111111111:custom-model/a.b-v1/abcdefabcdef"}
    spec = {"customizationType": "FINE_TUNING", "baseModel": {"identifier": "a.b-v1", "path": "/m"},
            "trainingDataConfig": {"s3Uri": "s3://b/t.jsonl"}, "validationDataConfig": {"validators": []},
            "outputDataConfig": {"s3Uri": "s3://b/o"}, "outputModelUri": "s3://b/o/m/", "api": api}
    job, _ = jobs.create(engine, account_id="111111111111", region="us-east-1", kind=KIND, name="j", spec=spec,
                         resources={}, arn="arn:job")
    jobs.transition(engine, job.id, "COMPLETED", result={"trainingLoss": 0.5})
    runtime = SimpleNamespace(engine=engine)
    reconcile_models(runtime, "111111111111", "eu-west-1")  # another region's read leaves the job's alone
    assert custom_models.find_model(engine, "111111111111", "us-east-1", "m1") is None
    reconcile_models(runtime, "111111111111", "us-east-1")
    reconcile_models(runtime, "111111111111", "us-east-1")  # once only
    model = custom_models.get_model(engine, "111111111111", "us-east-1", "m1")
    assert model.arn == api["customModelArn"] and model.status == "Active"
    assert model.details["trainingMetrics"] == {"trainingLoss": 0.5}


def test_runtime_model_ids_follow_bedrocks_pattern():
    """Bedrock's own modelId pattern refuses a custom-model ARN (its base id carries ':0'): a custom model is
    called through its deployment ARN or its name, as the README says."""
    import botocore.session
    import regex

    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    custom = "arn:aws:bedrock:us-east-1:111111111111:custom-model/meta.llama3-1-8b-instruct-v1:0/abcdefabcdef"
    deployment = "arn:aws:bedrock:us-east-1:111111111111:custom-model-deployment/abcdefabcdef"
    for operation in ("InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream"):
        pattern = regex.compile(model.operation_model(operation).input_shape.members["modelId"].metadata["pattern"])
        assert pattern.fullmatch(custom) is None
        assert pattern.fullmatch(deployment) and pattern.fullmatch("my-custom-model-name")
        assert pattern.fullmatch("meta.llama3-1-8b-instruct-v1:0")


def test_a_missing_deployment_or_custom_model_is_an_invalid_identifier(tmp_path):
    """Only foundation-model ids get the hint to register them; an unknown or deleted deployment, or an unknown
    custom-model name, is Bedrock's plain invalid identifier."""
    from types import SimpleNamespace

    from jobforge.api.bedrock_common import INVALID_MODEL, resolve_for_inference
    from jobforge.core import custom_models as cm
    from jobforge.core.store import open_store

    ctx = SimpleNamespace(engine=open_store(f"sqlite:///{tmp_path / 'db.sqlite'}"), account_id="111111111111",
                          region="us-east-1")
    arn = cm.deployment_arn("us-east-1", "111111111111", "abcdefabcdef")
    deployment = cm.insert_deployment(ctx.engine, cm.Deployment(
        id="abcdefabcdef", account_id="111111111111", region="us-east-1", name="dep", arn=arn, model_arn="arn:gone", status="Active",
        description=None, failure_message=None, created_at=1.0, updated_at=1.0), None)
    cm.delete_deployment(ctx.engine, deployment)
    for model_id in (arn, "arn:aws:bedrock:us-east-1:111111111111:custom-model-deployment/zzzzzzzzzzzz",
                     "no-such-model"):
        with pytest.raises(ServiceError) as err:
            resolve_for_inference(ctx, model_id)
        assert (err.value.code, err.value.message) == ("ValidationException", INVALID_MODEL)
    for model_id in ("meta.llama3-3-70b-instruct-v1:0",
                     "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-3-70b-instruct-v1:0"):
        with pytest.raises(ServiceError) as err:
            resolve_for_inference(ctx, model_id)
        assert "jobforge models add meta.llama3-3-70b-instruct-v1:0" in err.value.message


@pytest.mark.parametrize("roles, message", [
    (["assistant"], "A conversation must start with a user message. Try again with a conversation that starts with "
                    "a user message."),
    (["assistant", "user"], "A conversation must start with a user message."),
    (["user", "user"], "A conversation must alternate between user and assistant roles. Make sure the conversation "
                       "alternates between user and assistant roles and try again."),
    (["user", "assistant", "assistant"], "A conversation must alternate between user and assistant roles."),
])
def test_converse_checks_role_order(roles, message):
    from jobforge.api.bedrock_runtime import _converse_request

    messages = [{"role": role, "content": [{"text": "hi"}]} for role in roles]
    with pytest.raises(ServiceError) as err:
        _converse_request({"modelId": "m", "messages": messages})
    assert err.value.code == "ValidationException" and err.value.message.startswith(message)


def test_converse_accepts_alternating_turns_and_an_assistant_prefill():
    from jobforge.api.bedrock_runtime import _converse_request

    roles = ["user", "assistant", "user", "assistant"]
    request = _converse_request({"modelId": "m", "messages": [{"role": r, "content": [{"text": r}]} for r in roles]})
    assert [m["role"] for m in request.messages] == roles


LLAMA_ID, TITAN_ID = "meta.llama3-1-8b-instruct-v1:0", "amazon.titan-text-lite-v1:0:4k"
CLAUDE_ID, NOVA_ID = "anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-lite-v1:0:300k"
COHERE_ID = "cohere.command-light-text-v14:7:4k"
CLAUDE_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
               "messages": [{"role": "user", "content": "hi"}]}
NOVA_BODY = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


@pytest.mark.parametrize("model_id, body, message", [
    (LLAMA_ID, {"prompt": "x", "max_gen_len": 0}, "#/max_gen_len: 0 is not greater or equal to 1"),
    (LLAMA_ID, {"prompt": "x", "max_gen_len": 2049}, "#/max_gen_len: 2049 is not less or equal to 2048"),
    (LLAMA_ID, {"prompt": "x", "temperature": 5}, "#/temperature: 5 is not less or equal to 1"),
    (LLAMA_ID, {"prompt": "x", "top_p": -0.1}, "#/top_p: -0.1 is not greater or equal to 0"),
    (LLAMA_ID, {"prompt": "x", "foo": 1}, "#: extraneous key [foo] is not permitted"),
    (LLAMA_ID, {"max_gen_len": 5}, "#: required key [prompt] not found"),
    (LLAMA_ID, {"prompt": "x", "max_gen_len": 2.5}, "#/max_gen_len: expected type: Integer, found: Double"),
    (TITAN_ID, {"prompt": "red"}, "#: extraneous key [prompt] is not permitted"),
    (TITAN_ID, {"inputText": "x", "textGenerationConfig": {"maxTokenCount": 4097}},
     "#/textGenerationConfig/maxTokenCount: 4097 is not less or equal to 4096"),
    (TITAN_ID, {"inputText": "x", "textGenerationConfig": {"topP": 1.5}},
     "#/textGenerationConfig/topP: 1.5 is not less or equal to 1"),
    (TITAN_ID, {"inputText": "x", "textGenerationConfig": {"top_p": 0.5}},
     "#/textGenerationConfig: extraneous key [top_p] is not permitted"),
    (CLAUDE_ID, {k: v for k, v in CLAUDE_BODY.items() if k != "max_tokens"}, "#: required key [max_tokens] not found"),
    (CLAUDE_ID, {k: v for k, v in CLAUDE_BODY.items() if k != "anthropic_version"},
     "#: required key [anthropic_version] not found"),
    (CLAUDE_ID, {**CLAUDE_BODY, "max_tokens": 0}, "#/max_tokens: 0 is not greater or equal to 1"),
    (CLAUDE_ID, {**CLAUDE_BODY, "temperature": 1.5}, "#/temperature: 1.5 is not less or equal to 1"),
    (CLAUDE_ID, {**CLAUDE_BODY, "top_k": 501}, "#/top_k: 501 is not less or equal to 500"),
    (CLAUDE_ID, {**CLAUDE_BODY, "messages": [{"role": "assistant", "content": "a"}]},
     'messages: first message must use the "user" role'),
    (CLAUDE_ID, {**CLAUDE_BODY, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     'messages: roles must alternate between "user" and "assistant"'),
    (NOVA_ID, {**NOVA_BODY, "inferenceConfig": {"maxTokens": 10_001}},
     "#/inferenceConfig/maxTokens: 10001 is not less or equal to 10000"),
    (NOVA_ID, {**NOVA_BODY, "inferenceConfig": {"temperature": 2}},
     "#/inferenceConfig/temperature: 2 is not less or equal to 1"),
    (NOVA_ID, {**NOVA_BODY, "extra": True}, "#: extraneous key [extra] is not permitted"),
    (COHERE_ID, {"prompt": "x", "temperature": 5.5}, "#/temperature: 5.5 is not less or equal to 5"),
    (COHERE_ID, {"prompt": "x", "max_tokens": 4097}, "#/max_tokens: 4097 is not less or equal to 4096"),
    (COHERE_ID, {"prompt": "x", "stop_sequences": ["a", "b", "c", "d", "e"]},
     "#/stop_sequences: expected maximum item count: 4, found: 5"),
    (COHERE_ID, {"prompt": "x", "num_generations": 2}, "num_generations is not supported"),
])
def test_native_bodies_are_checked_against_bedrocks_ranges(model_id, body, message):
    with pytest.raises(ServiceError) as err:
        invoke_formats.parse(invoke_formats.family(model_id), body, model_id)
    assert err.value.code == "ValidationException" and err.value.status == 400
    assert message in err.value.message
    if message.startswith("#"):
        assert err.value.message == f"Malformed input request: {message}, please reformat your input and try again."


def test_cohere_command_r_speaks_its_chat_body():
    model = "cohere.command-r-v1:0"
    assert invoke_formats.family(model) == "cohere-chat" and invoke_formats.family("cohere.command-text-v14") == "cohere"
    body = {"message": "And Peru?", "preamble": "Answer briefly.", "k": 5, "max_tokens": 20,
            "chat_history": [{"role": "USER", "message": "Capital of Japan?"}, {"role": "CHATBOT", "message": "Tokyo."}]}
    request = invoke_formats.parse("cohere-chat", body, model)
    assert [(m["role"], m["content"]) for m in request.messages] == [
        ("system", "Answer briefly."), ("user", "Capital of Japan?"), ("assistant", "Tokyo."), ("user", "And Peru?")]
    assert (request.max_tokens, request.top_k) == (20, 5)
    reply = invoke_formats.render("cohere-chat", model, request, invoke_formats.Result("Lima.", 12, 3, "end_turn"))
    assert reply["text"] == "Lima." and reply["finish_reason"] == "COMPLETE"
    assert reply["chat_history"][-2:] == [{"role": "USER", "message": "And Peru?"},
                                          {"role": "CHATBOT", "message": "Lima."}]
    end = invoke_formats.stream_end("cohere-chat", request, invoke_formats.Result("Lima.", 12, 3, "max_tokens"), 9, 3)
    assert end[-1]["event_type"] == "stream-end" and end[-1]["finish_reason"] == "MAX_TOKENS"
    for bad in ({"prompt": "x"}, {"message": "x", "chat_history": [{"role": "BOT", "message": "x"}]},
                {"message": "x", "documents": [{"title": "t"}]}):
        with pytest.raises(ServiceError):
            invoke_formats.parse("cohere-chat", bad, model)


def test_native_bodies_accept_bedrocks_bounds():
    request = invoke_formats.parse("llama", {"prompt": "x", "max_gen_len": 2048, "temperature": 1, "top_p": 0}, LLAMA_ID)
    assert (request.max_tokens, request.temperature, request.top_p) == (2048, 1, 0)
    titan = invoke_formats.parse("titan", {"inputText": "x", "textGenerationConfig": {"maxTokenCount": 0}}, TITAN_ID)
    assert titan.max_tokens == 0
    express = "amazon.titan-text-express-v1"
    assert invoke_formats.parse("titan", {"inputText": "x", "textGenerationConfig": {"maxTokenCount": 8192}},
                                express).max_tokens == 8192
    cohere = invoke_formats.parse("cohere", {"prompt": "x", "temperature": 5, "k": 0, "num_generations": 1}, COHERE_ID)
    assert cohere.temperature == 5
    claude = invoke_formats.parse("anthropic", {**CLAUDE_BODY, "system": [{"type": "text", "text": "s"}], "messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, CLAUDE_ID)
    assert [m["role"] for m in claude.messages] == ["system", "user", "assistant"]
    generic = invoke_formats.parse("generic", {"messages": [{"role": "system", "content": "s"},
                                                            {"role": "user", "content": "q"}]}, "myorg.chat-v1")
    assert [m["role"] for m in generic.messages] == ["system", "user"]


def test_top_k_is_read_from_each_family_and_limits_sampling():
    assert invoke_formats.parse("anthropic", {**CLAUDE_BODY, "top_k": 40}, CLAUDE_ID).top_k == 40
    whole = invoke_formats.parse("anthropic", {**CLAUDE_BODY, "top_k": 40.0}, CLAUDE_ID).top_k  # JSON's 40.0
    assert whole == 40 and isinstance(whole, int)
    assert invoke_formats.parse("cohere", {"prompt": "x", "k": 7}, COHERE_ID).top_k == 7
    assert invoke_formats.parse("llama", {"prompt": "x"}, LLAMA_ID).top_k is None
    from types import SimpleNamespace

    from jobforge.workloads.customize.generate import _sampling

    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    assert _sampling(tokenizer, 8, 0.7, 0.9, 40)["top_k"] == 40
    assert _sampling(tokenizer, 8, 0.7, 0.9, None)["top_k"] == 0  # no limit
    assert _sampling(tokenizer, 8, 0.0, 0.9, 40)["do_sample"] is False  # greedy ignores it


@pytest.mark.parametrize("code, message", [
    ("NoSuchBucket", "Provided S3 location is invalid: s3://out-bucket/o. The bucket out-bucket does not exist."),
    ("AccessDenied", "Provided S3 location is invalid: s3://out-bucket/o. Access to the bucket out-bucket is denied."),
])
def test_the_output_bucket_must_be_the_callers(monkeypatch, code, message):
    from types import SimpleNamespace

    from jobforge.api import bedrock_objects

    def bucket(account_id, name):
        assert (account_id, name) == ("111111111111", "out-bucket")
        raise ServiceError(code, "from S3", 404)

    monkeypatch.setattr(bedrock_objects, "store", lambda ctx: SimpleNamespace(bucket=bucket))
    with pytest.raises(ServiceError) as err:
        bedrock_objects.check_output_location(SimpleNamespace(account_id="111111111111"), "s3://out-bucket/o")
    assert (err.value.code, err.value.message) == ("ValidationException", message)


def test_foundation_model_names_are_readable_and_whole(tmp_path):
    from jobforge.core import models_catalog
    from jobforge.core.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    names = {}
    for model_id in ("anthropic.claude-3-haiku-20240307-v1:0:200k", "meta.llama3-2-1b-instruct-v1:0",
                     "amazon.titan-text-lite-v1:0:4k", "myorg.a-rather-long-model-name-v1:0"):
        model = models_catalog.add(engine, model_id, str(tmp_path / "m"))
        names[model_id] = (model.model_name, model.provider_name)
    assert names == {"anthropic.claude-3-haiku-20240307-v1:0:200k": ("Claude 3 Haiku", "Anthropic"),
                     "meta.llama3-2-1b-instruct-v1:0": ("Llama 3.2 1B Instruct", "Meta"),
                     "amazon.titan-text-lite-v1:0:4k": ("Titan Text G1 - Lite", "Amazon"),
                     "myorg.a-rather-long-model-name-v1:0": ("a-rather-long-model-name-v1", "Myorg")}
    assert models_catalog.add(engine, "myorg.chat-v1", str(tmp_path / "m"), "Chat One").model_name == "Chat One"
    with pytest.raises(ValueError, match="1 to 20 characters"):
        models_catalog.add(engine, "myorg.chat-v1", str(tmp_path / "m"), "A name longer than twenty")
    # A row registered before names were derived holds the id cut at 20 characters: read it whole.
    with engine.begin() as conn:
        conn.execute(models_catalog.foundation_models.update().where(
            models_catalog.foundation_models.c.model_id == "anthropic.claude-3-haiku-20240307-v1:0:200k").values(
            model_name="claude-3-haiku-20240"))
    assert models_catalog.get(engine, "anthropic.claude-3-haiku-20240307-v1:0:200k").model_name == "Claude 3 Haiku"
