"""InvokeModel request and response bodies, per model family.

Each Bedrock provider has its own native JSON body; a model registered under
a provider's identifier (or customized from one) speaks that provider's
format. Other identifiers accept a Llama-style ``{"prompt"}`` or an
OpenAI-style ``{"messages"}`` body.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from jobforge.core.errors import validation_error


@dataclass
class Request:
    messages: list[dict] | None = None  # [{"role", "content": str}]
    prompt: str | None = None
    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)


@dataclass
class Result:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str  # end_turn | max_tokens | stop_sequence
    stop_sequence: str | None = None


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


def _chat(messages, system=None) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise validation_error("messages must be a non-empty list.")
    out = [{"role": "system", "content": system}] if system else []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "system"):
            raise validation_error("Each message needs a role of user or assistant.")
        out.append({"role": message["role"], "content": _text_of(message.get("content"))})
    return out


def _number(body: dict, key: str, default, kind=float):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise validation_error(f"{key} must be a number.")
    return kind(value)


def _prompt(body: dict, key: str = "prompt") -> str:
    if not isinstance(body.get(key), str):
        raise validation_error(f"Malformed input request: required key [{key}] not found or not a string.")
    return body[key]


def _stops(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise validation_error("Stop sequences must be a list of strings.")


def family(model_id: str) -> str:
    for prefix, name in (("meta.", "llama"), ("amazon.titan-text", "titan"), ("amazon.titan-tg1", "titan"),
                         ("amazon.nova", "nova"), ("anthropic.", "anthropic"), ("cohere.command", "cohere"),
                         ("mistral.", "mistral")):
        if model_id.startswith(prefix):
            return name
    return "generic"


def parse(kind: str, body: dict) -> Request:
    if not isinstance(body, dict):
        raise validation_error("Malformed input request: the body must be a JSON object.")
    if kind == "llama" or (kind == "generic" and "prompt" in body):
        return Request(prompt=_prompt(body), max_tokens=_number(body, "max_gen_len", 512, int),
                       temperature=_number(body, "temperature", 0.5), top_p=_number(body, "top_p", 0.9))
    if kind == "titan":
        config = body.get("textGenerationConfig") or {}
        return Request(prompt=_prompt(body, "inputText"), max_tokens=_number(config, "maxTokenCount", 512, int),
                       temperature=_number(config, "temperature", 0.7), top_p=_number(config, "topP", 0.9),
                       stop=_stops(config.get("stopSequences")))
    if kind == "nova":
        config = body.get("inferenceConfig") or {}
        system = "".join(_text_of([s]) for s in body.get("system") or [])
        return Request(messages=_chat(body.get("messages"), system),
                       max_tokens=_number(config, "maxTokens", _number(config, "max_new_tokens", 512, int), int),
                       temperature=_number(config, "temperature", 0.7), top_p=_number(config, "topP", 0.9),
                       stop=_stops(config.get("stopSequences")))
    if kind == "anthropic":
        if "max_tokens" not in body:
            raise validation_error("Malformed input request: required key [max_tokens] not found.")
        system = body.get("system")
        return Request(messages=_chat(body.get("messages"), _text_of(system) if system else None),
                       max_tokens=_number(body, "max_tokens", 512, int), temperature=_number(body, "temperature", 1.0),
                       top_p=_number(body, "top_p", 0.999), stop=_stops(body.get("stop_sequences")))
    if kind == "cohere":
        return Request(prompt=_prompt(body), max_tokens=_number(body, "max_tokens", 20, int),
                       temperature=_number(body, "temperature", 0.9), top_p=_number(body, "p", 0.75),
                       stop=_stops(body.get("stop_sequences")))
    if kind == "mistral":
        return Request(prompt=_prompt(body), max_tokens=_number(body, "max_tokens", 512, int),
                       temperature=_number(body, "temperature", 0.5), top_p=_number(body, "top_p", 0.9),
                       stop=_stops(body.get("stop")))
    return Request(messages=_chat(body.get("messages")), max_tokens=_number(body, "max_tokens", 512, int),
                   temperature=_number(body, "temperature", 1.0), top_p=_number(body, "top_p", 1.0),
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
    elif kind == "mistral":
        chunks = [{"outputs": [{"text": "", "stop_reason": "length" if length else "stop"}]}]
    else:
        chunks = [{"choices": [{"index": 0, "delta": {}, "finish_reason": "length" if length else "stop"}]}]
    chunks[-1].update(metrics)
    return chunks
