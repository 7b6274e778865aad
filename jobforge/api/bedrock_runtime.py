"""bedrock-runtime: InvokeModel, Converse and ConverseStream, generating from
the real weights of a registered foundation model, a custom model or a
custom-model deployment.

Generation runs in jobforge's inference process (``execution/inference.py``),
never in the server process; model directories held in S3 are downloaded
once, with the caller's credentials, into the data dir's model cache. A
request is answered only once the inference process has admitted it (its
input fits the model), so a refusal is a plain 400; a generation whose
client disconnects is cancelled.
"""

from __future__ import annotations

import json
import time
from typing import AsyncIterator, Iterator

from anyio import to_thread

from jobforge.api import bedrock_objects, invoke_formats
from jobforge.api.base import UNMODELED_HEADERS, RequestContext, handler
from jobforge.api.bedrock_logging import log_invocation
from jobforge.api.bedrock_common import ResolvedModel, resolve_for_inference
from jobforge.core.errors import ServiceError, validation_error
from jobforge.execution.inference import TooManyGenerations

CONVERSE_DEFAULTS = {"temperature": 0.7, "topP": 0.9}  # maxTokens: the model's default, within its context


def _target(ctx: RequestContext, model_id: str) -> tuple[ResolvedModel, str]:
    model = resolve_for_inference(ctx, model_id)
    return model, str(bedrock_objects.model_dir(ctx, model.location))


def _start(ctx: RequestContext, model: ResolvedModel, model_dir: str,
           request: invoke_formats.Request) -> Iterator[dict]:
    """Submit a generation and wait until it is admitted; the returned replies are its text, then its end."""
    job = {"model_dir": model_dir, "messages": request.messages, "prompt": request.prompt,
           "max_tokens": request.max_tokens, "default_max_tokens": request.default_max_tokens,
           "max_tokens_limit": invoke_formats.max_output_tokens(invoke_formats.family(model.family_id),
                                                                model.family_id),
           "temperature": request.temperature, "top_p": request.top_p, "stop": request.stop, "top_k": request.top_k}
    try:
        generation = ctx.runtime.inference.submit(job, ctx.account_id)
    except TooManyGenerations:
        raise ServiceError("ThrottlingException", "Too many requests, please wait before trying again.",
                           429) from None
    replies = generation.replies(ctx.disconnected)
    first = next(replies, None)
    if first is None:
        raise _client_gone()
    if "error" in first:
        raise _refusal(first)
    return replies


def _refusal(reply: dict) -> ServiceError:
    if reply.get("code") == "ValidationException":
        return validation_error(reply["error"])
    return ServiceError("ModelErrorException", reply["error"], 424)


def _client_gone() -> ServiceError:
    """The answer to a request whose client disconnected: nobody reads it."""
    return ServiceError("ModelErrorException", "The client closed the connection; the generation was stopped.", 424)


async def _streamed(replies: Iterator[dict]) -> AsyncIterator[dict]:
    """A streamed generation's replies, each read off the event loop: its text pieces, then its end (token
    counts, stop reason); they stop short when the client went away, and a failure is the stream's error event."""
    while (reply := await to_thread.run_sync(next, replies, None)) is not None:
        if "error" in reply:
            raise ServiceError("ModelStreamErrorException", reply["error"])
        yield reply


def _generate(ctx: RequestContext, model: ResolvedModel, model_dir: str,
              request: invoke_formats.Request) -> invoke_formats.Result:
    text = []
    for reply in _start(ctx, model, model_dir, request):
        if "error" in reply:
            raise _refusal(reply)
        if "text" in reply:
            text.append(reply["text"])
        else:
            stop = request.stop[0] if reply["stop_reason"] == "stop_sequence" and len(request.stop) == 1 else None
            return invoke_formats.Result("".join(text), reply["input_tokens"], reply["output_tokens"],
                                         reply["stop_reason"], stop)
    raise _client_gone()


@handler("bedrock-runtime", "InvokeModel", blocking=True)
def invoke_model(ctx: RequestContext, req: dict) -> dict:
    started = time.monotonic()
    body = _json_body(req)
    metadata = _header_metadata(req.get("requestMetadata"))
    model, model_dir = _target(ctx, req["modelId"])
    kind = invoke_formats.family(model.family_id)
    request = invoke_formats.parse(kind, body, model.family_id)
    result = _generate(ctx, model, model_dir, request)
    rendered = invoke_formats.render(kind, model.family_id or req["modelId"], request, result)
    log_invocation(ctx, operation="InvokeModel", model_id=req["modelId"], input_body=body, output_body=rendered,
                   input_tokens=result.input_tokens, output_tokens=result.output_tokens, request_metadata=metadata)
    # Bedrock's usage headers, which clients such as langchain-aws's ChatBedrock read the token counts from.
    usage = {"X-Amzn-Bedrock-Input-Token-Count": str(result.input_tokens),
             "X-Amzn-Bedrock-Output-Token-Count": str(result.output_tokens),
             "X-Amzn-Bedrock-Invocation-Latency": str(int((time.monotonic() - started) * 1000))}
    return {"body": json.dumps(rendered).encode(), "contentType": "application/json", UNMODELED_HEADERS: usage}


@handler("bedrock-runtime", "InvokeModelWithResponseStream", blocking=True)
def invoke_model_with_response_stream(ctx: RequestContext, req: dict) -> dict:
    started = time.monotonic()
    body = _json_body(req)
    metadata = _header_metadata(req.get("requestMetadata"))
    model, model_dir = _target(ctx, req["modelId"])
    kind = invoke_formats.family(model.family_id)
    request = invoke_formats.parse(kind, body, model.family_id)
    replies = _start(ctx, model, model_dir, request)
    model_name = model.family_id or req["modelId"]

    def chunk(value: dict):
        return "chunk", {"bytes": json.dumps(value).encode()}

    async def events():
        for value in invoke_formats.stream_start(kind, model_name):
            yield chunk(value)
        text, first_byte = [], None
        async for reply in _streamed(replies):
            if "text" not in reply:
                break
            if reply["text"]:
                first_byte = first_byte or int((time.monotonic() - started) * 1000)
                yield chunk(invoke_formats.stream_piece(kind, request, reply["text"], len(text)))
                text.append(reply["text"])
        else:
            return  # the client went away
        result = invoke_formats.Result("".join(text), reply["input_tokens"], reply["output_tokens"],
                                       reply["stop_reason"])
        latency = int((time.monotonic() - started) * 1000)
        for value in invoke_formats.stream_end(kind, request, result, latency, first_byte or latency):
            yield chunk(value)
        await to_thread.run_sync(lambda: log_invocation(
            ctx, operation="InvokeModelWithResponseStream", model_id=req["modelId"], input_body=body,
            output_body=invoke_formats.render(kind, model_name, request, result), input_tokens=result.input_tokens,
            output_tokens=result.output_tokens, request_metadata=metadata))

    return {"body": events(), "contentType": "application/json"}


def _json_body(req: dict) -> dict:
    if req.get("contentType", "application/json").split(";")[0].strip() not in ("application/json", "*/*"):
        raise validation_error("Only application/json request bodies are supported.")
    return invoke_formats.load_body(req.get("body") or b"")


def _header_metadata(raw: str | None) -> dict | None:
    """X-Amzn-Bedrock-Request-Metadata: a JSON object of strings, kept in invocation logs."""
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise validation_error("X-Amzn-Bedrock-Request-Metadata must be a JSON object of string values.")
    return found


# -- Converse -------------------------------------------------------------------
def _text_blocks(blocks: list[dict], where: str) -> str:
    parts = []
    for index, block in enumerate(blocks):
        if "text" in block:
            if where != "system" and not block["text"].strip():
                raise validation_error(f"The text field in the ContentBlock object at {where}.content.{index} is "
                                       "blank. Add text to the text field, and try again.")
            parts.append(block["text"])
        elif "cachePoint" in block:
            continue
        else:
            kind = next(iter(block), "unknown")
            raise validation_error(f"This model doesn't support the {kind} content block in {where}; "
                                   "only text is supported.")
    return "".join(parts)


def _converse_request(req: dict) -> invoke_formats.Request:
    if req.get("toolConfig"):
        raise validation_error("This model doesn't support tool use.")
    messages = req.get("messages") or []
    if not messages:
        raise validation_error("A conversation must have at least one message.")
    if messages[0]["role"] != "user":
        raise validation_error(invoke_formats.START_WITH_USER)
    if any(a["role"] == b["role"] for a, b in zip(messages, messages[1:])):
        raise validation_error(invoke_formats.ALTERNATE_ROLES)
    chat = []
    system = _text_blocks(req.get("system") or [], "system")
    if system:
        chat.append({"role": "system", "content": system})
    for index, message in enumerate(messages):
        if not message["content"]:
            raise validation_error(f"The content field in the Message object at messages.{index} is empty. Add a "
                                   "ContentBlock object to the content field and try again.")
        chat.append({"role": message["role"], "content": _text_blocks(message["content"], f"messages.{index}")})
    config = {**CONVERSE_DEFAULTS, **(req.get("inferenceConfig") or {})}
    return invoke_formats.Request(messages=chat, max_tokens=config.get("maxTokens"), temperature=config["temperature"],
                                  top_p=config["topP"], stop=list(config.get("stopSequences") or []))


def _usage(input_tokens: int, output_tokens: int) -> dict:
    return {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}


@handler("bedrock-runtime", "Converse", blocking=True)
def converse(ctx: RequestContext, req: dict) -> dict:
    started = time.monotonic()
    request = _converse_request(req)
    model, model_dir = _target(ctx, req["modelId"])
    result = _generate(ctx, model, model_dir, request)
    out = {"output": {"message": {"role": "assistant", "content": [{"text": result.text}]}},
           "stopReason": result.stop_reason, "usage": _usage(result.input_tokens, result.output_tokens),
           "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)}}
    _log_converse(ctx, "Converse", req, out)
    return out


def _log_converse(ctx: RequestContext, operation: str, req: dict, out: dict) -> None:
    body = {k: req[k] for k in ("messages", "system", "inferenceConfig") if k in req}
    log_invocation(ctx, operation=operation, model_id=req["modelId"], input_body=body,
                   output_body={k: out[k] for k in ("output", "stopReason", "usage")},
                   input_tokens=out["usage"]["inputTokens"], output_tokens=out["usage"]["outputTokens"],
                   request_metadata=req.get("requestMetadata"))


@handler("bedrock-runtime", "ConverseStream", blocking=True)
def converse_stream(ctx: RequestContext, req: dict) -> dict:
    started = time.monotonic()
    request = _converse_request(req)
    model, model_dir = _target(ctx, req["modelId"])
    replies = _start(ctx, model, model_dir, request)

    async def events():
        yield "messageStart", {"role": "assistant"}
        text = []
        async for reply in _streamed(replies):
            if "text" not in reply:
                break
            if reply["text"]:
                text.append(reply["text"])
                yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": reply["text"]}}
        else:
            return  # the client went away
        usage = _usage(reply["input_tokens"], reply["output_tokens"])
        yield "contentBlockStop", {"contentBlockIndex": 0}
        yield "messageStop", {"stopReason": reply["stop_reason"]}
        yield "metadata", {"usage": usage, "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)}}
        out = {"output": {"message": {"role": "assistant", "content": [{"text": "".join(text)}]}},
               "stopReason": reply["stop_reason"], "usage": usage}
        await to_thread.run_sync(_log_converse, ctx, "ConverseStream", req, out)

    return {"stream": events()}
