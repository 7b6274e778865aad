"""InvokeModel request and response bodies, per model family.

Each Bedrock provider has its own native JSON body; a model registered under
a provider's identifier (or customized from one) speaks that provider's
format. Other identifiers accept a Llama-style ``{"prompt"}`` or an
OpenAI-style ``{"messages"}`` body.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from jobforge.core.errors import validation_error


START_WITH_USER = ("A conversation must start with a user message. Try again with a conversation that starts with a "
                   "user message.")
ALTERNATE_ROLES = ("A conversation must alternate between user and assistant roles. Make sure the conversation "
                   "alternates between user and assistant roles and try again.")


@dataclass
class Request:
    messages: list[dict] | None = None  # [{"role", "content": str}]
    prompt: str | None = None
    max_tokens: int | None = None  # None: not given; up to default_max_tokens are generated, within the context
    default_max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    top_k: int | None = None  # sample from the k likeliest tokens only; None or 0: no such limit


@dataclass
class Result:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str  # end_turn | max_tokens | stop_sequence
    stop_sequence: str | None = None


# -- validation of native bodies (Bedrock checks each provider's JSON schema) -----------
@dataclass(frozen=True)
class Field:
    kind: str  # number | integer | string | strings | object | array | boolean | any
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    max_items: int | None = None
    fields: dict | None = None  # an object's members
    enum: tuple | None = None
    # Documented by Bedrock but not served here: allowed only at this no-op value (None: never).
    unsupported: bool = False
    noop: object = None


def _malformed(where: str, problem: str):
    return validation_error(f"Malformed input request: {where}: {problem}, please reformat your input and try again.")


def _type_name(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Double"
    return {str: "String", list: "JSONArray", dict: "JSONObject"}.get(type(value), type(value).__name__)


def _type_ok(kind: str, value) -> bool:
    if kind == "any":
        return True
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "number":
        return isinstance(value, (int, float))
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, {"string": str, "strings": list, "array": list, "object": dict,
                              "boolean": bool}[kind])


_KIND_NAMES = {"number": "Number", "integer": "Integer", "string": "String", "strings": "JSONArray",
               "array": "JSONArray", "object": "JSONObject", "boolean": "Boolean"}


def check_body(obj, schema: dict, where: str = "#") -> None:
    """Bedrock's schema check of a native body: required and extraneous keys, types, ranges, enums.

    An integer field given as a whole float (``40.0``), which the check admits as JSON Schema does, is
    turned into an int in place, so that what reads the body gets the integer it expects.
    """
    if not isinstance(obj, dict):
        raise _malformed(where, f"expected type: JSONObject, found: {_type_name(obj)}")
    for key in obj:
        if key not in schema:
            raise _malformed(where, f"extraneous key [{key}] is not permitted")
    for key, spec in schema.items():
        if key not in obj:
            if spec.required:
                raise _malformed(where, f"required key [{key}] not found")
            continue
        value, path = obj[key], f"{where}/{key}"
        if not _type_ok(spec.kind, value):
            raise _malformed(path, f"expected type: {_KIND_NAMES[spec.kind]}, found: {_type_name(value)}")
        if spec.kind == "integer" and isinstance(value, float):
            obj[key] = value = int(value)
        if spec.kind in ("number", "integer"):
            if spec.minimum is not None and value < spec.minimum:
                raise _malformed(path, f"{value} is not greater or equal to {_plain(spec.minimum)}")
            if spec.maximum is not None and value > spec.maximum:
                raise _malformed(path, f"{value} is not less or equal to {_plain(spec.maximum)}")
        if spec.kind == "strings":
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise _malformed(f"{path}/{index}", f"expected type: String, found: {_type_name(item)}")
        if spec.max_items is not None and isinstance(value, list) and len(value) > spec.max_items:
            raise _malformed(path, f"expected maximum item count: {spec.max_items}, found: {len(value)}")
        if spec.enum is not None and value not in spec.enum:
            raise _malformed(path, f"{value} is not a valid enum value")
        if spec.fields is not None:
            check_body(value, spec.fields, path)
        if spec.unsupported and value != spec.noop:
            raise validation_error(f"{path[2:]} is not supported by the models this server runs; leave it out.")


MAX_BODY_DEPTH = 64  # far deeper than any family's body
TOO_DEEP = f"the body is nested deeper than {MAX_BODY_DEPTH} levels"


def load_body(raw: bytes):
    """A native body's JSON value, refused when malformed or nested deeper than MAX_BODY_DEPTH (a body is
    logged and serialized again later, and must stay clear of the interpreter's recursion limit there)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _malformed("#", TOO_DEEP) from None
    except ValueError as err:
        raise validation_error(f"Malformed input request: {err}") from None
    pending = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_BODY_DEPTH:
                raise _malformed("#", TOO_DEEP)
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return body


def _plain(number: float):
    return int(number) if float(number).is_integer() else number


def _unit(**extra) -> Field:
    return Field("number", 0, 1, **extra)


LLAMA = {"prompt": Field("string", required=True), "temperature": _unit(), "top_p": _unit(),
         "max_gen_len": Field("integer", 1, 2048),
         "images": Field("array", unsupported=True)}  # Llama 3.2 vision: text models only here
# Models registered outside Bedrock's families take the Llama-style body without Llama's length cap.
GENERIC_PROMPT = {**LLAMA, "max_gen_len": Field("integer", 1)}
TITAN_MAX_TOKENS = {"amazon.titan-text-lite": 4096, "amazon.titan-text-express": 8192,
                    "amazon.titan-text-premier": 3072, "amazon.titan-tg1-large": 8192}


def _titan(model_id: str) -> dict:
    maximum = next((v for prefix, v in TITAN_MAX_TOKENS.items() if model_id.startswith(prefix)), 8192)
    config = {"temperature": _unit(), "topP": _unit(), "maxTokenCount": Field("integer", 0, maximum),
              "stopSequences": Field("strings")}
    return {"inputText": Field("string", required=True), "textGenerationConfig": Field("object", fields=config)}


ANTHROPIC = {
    "anthropic_version": Field("string", required=True, enum=("bedrock-2023-05-31",)),
    "max_tokens": Field("integer", 1, required=True), "messages": Field("array", required=True),
    "system": Field("any"), "temperature": _unit(), "top_p": _unit(),
    "top_k": Field("integer", 0, 500), "stop_sequences": Field("strings", max_items=8191),
    "tools": Field("array", unsupported=True), "tool_choice": Field("object", unsupported=True),
    "anthropic_beta": Field("strings", unsupported=True), "thinking": Field("object", unsupported=True),
    "metadata": Field("object"),
}
NOVA = {
    "schemaVersion": Field("string", enum=("messages-v1",)), "messages": Field("array", required=True),
    "system": Field("array"),
    "inferenceConfig": Field("object", fields={
        "maxTokens": Field("integer", 1, 10_000), "max_new_tokens": Field("integer", 1, 10_000),
        "temperature": _unit(), "topP": _unit(), "topK": Field("integer", 0, 128),
        "stopSequences": Field("strings")}),
    "toolConfig": Field("object", unsupported=True),
}
COHERE = {
    "prompt": Field("string", required=True), "temperature": Field("number", 0, 5), "p": _unit(),
    "k": Field("integer", 0, 500), "max_tokens": Field("integer", 1, 4096),
    "stop_sequences": Field("strings", max_items=4),
    "return_likelihoods": Field("string", enum=("GENERATION", "ALL", "NONE"), unsupported=True, noop="NONE"),
    "stream": Field("boolean"), "num_generations": Field("integer", 1, 5, unsupported=True, noop=1),
    "logit_bias": Field("object", unsupported=True, noop={}),
    "truncate": Field("string", enum=("NONE", "START", "END")),
}
# Cohere Command R and R+: a chat body (message, chat_history, preamble), not Command's prompt.
COHERE_CHAT = {
    "message": Field("string", required=True), "chat_history": Field("array"), "preamble": Field("string"),
    "max_tokens": Field("integer", 1, 4000), "temperature": _unit(), "p": Field("number", 0.01, 0.99),
    "k": Field("integer", 0, 500), "stop_sequences": Field("strings", max_items=4),
    "prompt_truncation": Field("string", enum=("OFF", "AUTO_PRESERVE_ORDER"), unsupported=True, noop="OFF"),
    "frequency_penalty": Field("number", 0, 1, unsupported=True, noop=0),
    "presence_penalty": Field("number", 0, 1, unsupported=True, noop=0),
    "seed": Field("integer", unsupported=True), "return_prompt": Field("boolean", unsupported=True, noop=False),
    "raw_prompting": Field("boolean", unsupported=True, noop=False),
    "search_queries_only": Field("boolean", unsupported=True, noop=False),
    "documents": Field("array", unsupported=True), "tools": Field("array", unsupported=True),
    "tool_results": Field("array", unsupported=True), "force_single_step": Field("boolean"),
}
COHERE_ROLES = {"USER": "user", "CHATBOT": "assistant"}
MISTRAL = {
    "prompt": Field("string", required=True), "max_tokens": Field("integer", 1, 8192),
    "stop": Field("strings", max_items=10), "temperature": _unit(), "top_p": _unit(),
    "top_k": Field("integer", 1, 200),
}
GENERIC_CHAT = {
    "messages": Field("array", required=True), "max_tokens": Field("integer", 1), "temperature": Field("number", 0, 2),
    "top_p": _unit(), "stop": Field("any"), "model": Field("string"),
}


def _text_of(content) -> str:
    """A message's content: a string, or text blocks ({"text"} or {"type": "text", "text"})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if not isinstance(block, dict) or not isinstance(block.get("text"), str):
                raise validation_error("Only text content is supported by this model.")
            parts.append(block["text"])
        return "".join(parts)
    raise validation_error("Message content must be a string or a list of text blocks.")


def _chat(messages, system=None, anthropic: bool = False, system_turns: bool = False) -> list[dict]:
    """Chat turns; ``system_turns`` admits OpenAI-style system messages before the conversation."""
    if not isinstance(messages, list) or not messages:
        raise validation_error("messages must be a non-empty list.")
    out = [{"role": "system", "content": system}] if system else []
    turns = list(messages)
    while system_turns and turns and isinstance(turns[0], dict) and turns[0].get("role") == "system":
        out.append({"role": "system", "content": _text_of(turns.pop(0).get("content"))})
    if not turns:
        raise validation_error("messages must hold at least one user message.")
    previous = None
    for index, message in enumerate(turns):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise validation_error(f"Malformed input request: messages.{index}.role must be user or assistant, "
                                   "please reformat your input and try again.")
        if anthropic:
            if index == 0 and message["role"] != "user":
                raise validation_error('messages: first message must use the "user" role')
            if message["role"] == previous:
                raise validation_error('messages: roles must alternate between "user" and "assistant", but found '
                                       f'multiple "{previous}" roles in a row')
        elif index == 0 and message["role"] != "user":
            raise validation_error(START_WITH_USER)
        elif message["role"] == previous:
            raise validation_error(ALTERNATE_ROLES)
        previous = message["role"]
        out.append({"role": message["role"], "content": _text_of(message.get("content"))})
    return out


def _cohere_history(request: Request, answer: str) -> list[dict]:
    """The conversation so far and the answer, as Command R returns it."""
    names = {"user": "USER", "assistant": "CHATBOT"}
    return [{"role": names[turn["role"]], "message": turn["content"]} for turn in request.messages
            if turn["role"] in names] + [{"role": "CHATBOT", "message": answer}]


def _stops(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise validation_error("Stop sequences must be a list of strings.")


def max_output_tokens(kind: str, model_id: str) -> int | None:
    """The family's cap on generated tokens (what its native body admits); None where only the model's
    context bounds them."""
    field = {"llama": LLAMA["max_gen_len"], "titan": _titan(model_id)["textGenerationConfig"].fields["maxTokenCount"],
             "nova": NOVA["inferenceConfig"].fields["maxTokens"], "anthropic": ANTHROPIC["max_tokens"],
             "cohere": COHERE["max_tokens"], "cohere-chat": COHERE_CHAT["max_tokens"],
             "mistral": MISTRAL["max_tokens"]}.get(kind)
    return int(field.maximum) if field is not None and field.maximum is not None else None


def family(model_id: str) -> str:
    for prefix, name in (("meta.", "llama"), ("amazon.titan-text", "titan"), ("amazon.titan-tg1", "titan"),
                         ("amazon.nova", "nova"), ("anthropic.", "anthropic"),
                         ("cohere.command-r", "cohere-chat"), ("cohere.command", "cohere"),
                         ("mistral.", "mistral")):
        if model_id.startswith(prefix):
            return name
    return "generic"


def parse(kind: str, body: dict, model_id: str = "") -> Request:
    """Validate a native body against its family's schema (Bedrock's ranges), then read it."""
    if not isinstance(body, dict):
        raise validation_error("Malformed input request: the body must be a JSON object.")
    if kind == "llama" or (kind == "generic" and "prompt" in body):
        check_body(body, LLAMA if kind == "llama" else GENERIC_PROMPT)
        return Request(prompt=body["prompt"], max_tokens=body.get("max_gen_len"),
                       temperature=body.get("temperature", 0.5), top_p=body.get("top_p", 0.9))
    if kind == "titan":
        check_body(body, _titan(model_id))
        config = body.get("textGenerationConfig") or {}
        return Request(prompt=body["inputText"], max_tokens=config.get("maxTokenCount"),
                       temperature=config.get("temperature", 0.7), top_p=config.get("topP", 0.9),
                       stop=config.get("stopSequences", []))
    if kind == "nova":
        check_body(body, NOVA)
        config = body.get("inferenceConfig") or {}
        system = "".join(_text_of([s]) for s in body.get("system") or [])
        return Request(messages=_chat(body["messages"], system),
                       max_tokens=config.get("maxTokens", config.get("max_new_tokens")),
                       temperature=config.get("temperature", 0.7), top_p=config.get("topP", 0.9),
                       stop=config.get("stopSequences", []), top_k=config.get("topK"))
    if kind == "anthropic":
        check_body(body, ANTHROPIC)
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            raise _malformed("#/system", f"expected type: String or JSONArray, found: {_type_name(system)}")
        return Request(messages=_chat(body["messages"], _text_of(system) if system else None, anthropic=True),
                       max_tokens=body["max_tokens"], temperature=body.get("temperature", 1.0),
                       top_p=body.get("top_p", 0.999), stop=body.get("stop_sequences", []), top_k=body.get("top_k"))
    if kind == "cohere":
        check_body(body, COHERE)
        return Request(prompt=body["prompt"], max_tokens=body.get("max_tokens"), default_max_tokens=20,
                       temperature=body.get("temperature", 0.9), top_p=body.get("p", 0.75),
                       stop=body.get("stop_sequences", []), top_k=body.get("k"))
    if kind == "cohere-chat":
        check_body(body, COHERE_CHAT)
        turns = []
        for index, turn in enumerate(body.get("chat_history") or []):
            if not isinstance(turn, dict) or turn.get("role") not in COHERE_ROLES or \
                    not isinstance(turn.get("message"), str):
                raise _malformed(f"#/chat_history/{index}", "expected {role: USER or CHATBOT, message: String}")
            turns.append({"role": COHERE_ROLES[turn["role"]], "content": turn["message"]})
        turns.append({"role": "user", "content": body["message"]})
        return Request(messages=_chat(turns, body.get("preamble")), max_tokens=body.get("max_tokens"),
                       temperature=body.get("temperature", 0.3), top_p=body.get("p", 0.75),
                       stop=body.get("stop_sequences", []), top_k=body.get("k"))
    if kind == "mistral":
        check_body(body, MISTRAL)
        return Request(prompt=body["prompt"], max_tokens=body.get("max_tokens"),
                       temperature=body.get("temperature", 0.5), top_p=body.get("top_p", 0.9),
                       stop=body.get("stop", []), top_k=body.get("top_k"))
    check_body(body, GENERIC_CHAT)
    return Request(messages=_chat(body["messages"], system_turns=True), max_tokens=body.get("max_tokens"),
                   temperature=body.get("temperature", 1.0), top_p=body.get("top_p", 1.0),
                   stop=_stops(body.get("stop")))


def render(kind: str, model_id: str, request: Request, result: Result) -> dict:
    length = result.stop_reason == "max_tokens"
    if kind == "llama" or (kind == "generic" and request.prompt is not None):

        return {"generation": result.text, "prompt_token_count": result.input_tokens,
                "generation_token_count": result.output_tokens, "stop_reason": "length" if length else "stop"}
    if kind == "titan":
        reason = "LENGTH" if length else "STOP_CRITERIA_MET" if result.stop_reason == "stop_sequence" else "FINISH"
        return {"inputTextTokenCount": result.input_tokens,
                "results": [{"tokenCount": result.output_tokens, "outputText": result.text,
                             "completionReason": reason}]}
    if kind == "nova":
        return {"output": {"message": {"role": "assistant", "content": [{"text": result.text}]}},
                "stopReason": result.stop_reason,
                "usage": {"inputTokens": result.input_tokens, "outputTokens": result.output_tokens,
                          "totalTokens": result.input_tokens + result.output_tokens}}
    if kind == "anthropic":
        return {"id": f"msg_bdrk_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                "model": model_id, "content": [{"type": "text", "text": result.text}],
                "stop_reason": result.stop_reason, "stop_sequence": result.stop_sequence,
                "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}}
    if kind == "cohere":
        return {"id": str(uuid.uuid4()), "generations": [{"id": str(uuid.uuid4()), "text": result.text,
                                                          "finish_reason": "MAX_TOKENS" if length else "COMPLETE"}]}
    if kind == "cohere-chat":
        return {"response_id": str(uuid.uuid4()), "text": result.text, "generation_id": str(uuid.uuid4()),
                "chat_history": _cohere_history(request, result.text),
                "finish_reason": "MAX_TOKENS" if length else "COMPLETE"}
    if kind == "mistral":
        return {"outputs": [{"text": result.text, "stop_reason": "length" if length else "stop"}]}
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "model": model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "finish_reason": "length" if length else "stop"}],
            "usage": {"prompt_tokens": result.input_tokens, "completion_tokens": result.output_tokens,
                      "total_tokens": result.input_tokens + result.output_tokens}}


# -- InvokeModelWithResponseStream: each family's chunk sequence ---------------------
def stream_start(kind: str, model_id: str) -> list[dict]:
    if kind == "anthropic":
        return [{"type": "message_start", "message": {
                    "id": f"msg_bdrk_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                    "model": model_id, "content": [], "stop_reason": None, "stop_sequence": None}},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    if kind == "nova":
        return [{"messageStart": {"role": "assistant"}}]
    return []


def stream_piece(kind: str, request: Request, text: str, produced: int) -> dict:
    """One chunk of generated text; ``produced`` counts the pieces sent before it."""
    if kind == "llama" or (kind == "generic" and request.prompt is not None):
        return {"generation": text, "prompt_token_count": None, "generation_token_count": produced + 1,
                "stop_reason": None}
    if kind == "titan":
        return {"outputText": text, "index": 0, "totalOutputTextTokenCount": None, "completionReason": None}
    if kind == "anthropic":
        return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    if kind == "nova":
        return {"contentBlockDelta": {"delta": {"text": text}, "contentBlockIndex": 0}}
    if kind == "cohere":
        return {"text": text, "is_finished": False}
    if kind == "cohere-chat":
        return {"is_finished": False, "event_type": "text-generation", "text": text}
    if kind == "mistral":
        return {"outputs": [{"text": text, "stop_reason": None}]}
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def stream_end(kind: str, request: Request, result: Result, latency_ms: int, first_byte_ms: int) -> list[dict]:
    """The closing chunks; the last carries Bedrock's ``amazon-bedrock-invocationMetrics``."""
    metrics = {"amazon-bedrock-invocationMetrics": {
        "inputTokenCount": result.input_tokens, "outputTokenCount": result.output_tokens,
        "invocationLatency": latency_ms, "firstByteLatency": first_byte_ms}}
    length = result.stop_reason == "max_tokens"
    if kind == "llama" or (kind == "generic" and request.prompt is not None):
        chunks = [{"generation": "", "prompt_token_count": result.input_tokens,
                   "generation_token_count": result.output_tokens, "stop_reason": "length" if length else "stop"}]
    elif kind == "titan":
        reason = "LENGTH" if length else "STOP_CRITERIA_MET" if result.stop_reason == "stop_sequence" else "FINISH"
        chunks = [{"outputText": "", "index": 0, "totalOutputTextTokenCount": result.output_tokens,
                   "completionReason": reason, "inputTextTokenCount": result.input_tokens}]
    elif kind == "anthropic":
        chunks = [{"type": "content_block_stop", "index": 0},
                  {"type": "message_delta", "delta": {"stop_reason": result.stop_reason,
                                                      "stop_sequence": result.stop_sequence},
                   "usage": {"output_tokens": result.output_tokens}},
                  {"type": "message_stop"}]
    elif kind == "nova":
        chunks = [{"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": result.stop_reason}},
                  {"metadata": {"usage": {"inputTokens": result.input_tokens, "outputTokens": result.output_tokens}}}]
    elif kind == "cohere":
        chunks = [{"is_finished": True, "finish_reason": "MAX_TOKENS" if length else "COMPLETE",
                   "response": {"generations": [{"text": result.text}]}}]
    elif kind == "cohere-chat":
        chunks = [{"is_finished": True, "event_type": "stream-end",
                   "finish_reason": "MAX_TOKENS" if length else "COMPLETE",
                   "response": {"response_id": str(uuid.uuid4()), "text": result.text,
                                "generation_id": str(uuid.uuid4()),
                                "chat_history": _cohere_history(request, result.text),
                                "finish_reason": "MAX_TOKENS" if length else "COMPLETE"}}]
    elif kind == "mistral":
        chunks = [{"outputs": [{"text": "", "stop_reason": "length" if length else "stop"}]}]
    else:
        chunks = [{"choices": [{"index": 0, "delta": {}, "finish_reason": "length" if length else "stop"}]}]
    chunks[-1].update(metrics)
    return chunks
