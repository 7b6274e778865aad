"""Hugging Face causal language models (a ``config.json`` with weights and a tokenizer), generating with the
same engine as Bedrock's runtime (``customize.generate``), answering as Hugging Face's LLM containers (TGI)
do:

- request ``{"inputs": "prompt", "parameters": {"max_new_tokens", "temperature", "top_p", "top_k",
  "do_sample", "stop", "return_full_text"}}``; without ``do_sample`` or a temperature the decoding is greedy,
  as TGI's is; ``max_new_tokens`` defaults to ``DEFAULT_NEW_TOKENS``;
- answer ``[{"generated_text": "..."}]``;
- streamed (InvokeEndpointWithResponseStream, or ``"stream": true``): server-sent events, one
  ``data:{"token": {"text": piece}, "generated_text": null}`` per piece, and a last one whose
  ``generated_text`` is the whole text and ``details`` the finish reason and token count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from jobforge.workloads.serving.predictor import ClientError

DEFAULT_NEW_TOKENS = 100
FINISH_REASONS = {"stop_sequence": "stop_sequence", "end_turn": "eos_token", "max_tokens": "length"}
EVENT_STREAM = "text/event-stream"


class TextGeneration:
    def __init__(self, model_dir: Path):
        from jobforge.workloads.customize.generate import load

        self.model_dir = model_dir
        load(model_dir)  # the weights are in memory before the endpoint says it is ready

    def _generation(self, body: bytes):
        from jobforge.workloads.customize.generate import RequestRejected, Stream

        try:
            request = json.loads(body)
        except ValueError as err:
            raise ClientError(f"The request body is not JSON: {err}") from None
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), str):
            raise ClientError('The request must be a JSON object with "inputs", a string (and optionally '
                              '"parameters").')
        parameters = request.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ClientError('"parameters" must be a JSON object.')
        sampled = parameters.get("do_sample", "temperature" in parameters)
        stop = parameters.get("stop") or []
        try:
            pieces = Stream(self.model_dir, prompt=request["inputs"],
                            max_tokens=int(parameters.get("max_new_tokens", DEFAULT_NEW_TOKENS)),
                            temperature=float(parameters.get("temperature", 1.0)) if sampled else 0.0,
                            top_p=float(parameters.get("top_p", 1.0)), top_k=parameters.get("top_k"),
                            stop=[stop] if isinstance(stop, str) else list(stop))
        except RequestRejected as err:
            raise ClientError(str(err)) from None
        except (TypeError, ValueError) as err:
            raise ClientError(f"The generation parameters are not valid: {err}") from None
        prefix = request["inputs"] if parameters.get("return_full_text") else ""
        return request, pieces, prefix

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        request, pieces, prefix = self._generation(body)
        if request.get("stream"):
            return b"".join(self._events(pieces, prefix)), EVENT_STREAM
        text = prefix + "".join(pieces)
        return json.dumps([{"generated_text": text}]).encode(), "application/json"

    def stream(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[Iterator[bytes], str]:
        _, pieces, prefix = self._generation(body)
        return self._events(pieces, prefix), EVENT_STREAM

    @staticmethod
    def _events(pieces, prefix: str) -> Iterator[bytes]:
        text = []
        for piece in pieces:
            text.append(piece)
            yield _event({"token": {"text": piece}, "generated_text": None, "details": None})
        details = {"finish_reason": FINISH_REASONS.get(pieces.stop_reason, pieces.stop_reason),
                   "generated_tokens": pieces.output_tokens}
        yield _event({"token": {"text": ""}, "generated_text": prefix + "".join(text), "details": details})


def _event(document: dict) -> bytes:
    return b"data:" + json.dumps(document).encode() + b"\n\n"


def load(model_dir: Path, threads: int) -> TextGeneration:
    import torch

    torch.set_num_threads(threads)
    return TextGeneration(model_dir)
