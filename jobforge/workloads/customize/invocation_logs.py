"""Distillation prompts from Bedrock model-invocation logs.

Reads the log records under ``invocationLogSource.s3Uri`` (JSON Lines, plain
or gzipped, as Bedrock's logging writes them), keeps the ones whose
``requestMetadata`` match ``requestMetadataFilters``, and turns each into a
chat ``Record``: the prompt turns, plus the logged response as the final
assistant turn when ``usePromptResponse`` is true.

Request bodies understood: Converse (``messages`` of content blocks,
``system`` blocks), Anthropic messages, Nova, and prompt-style bodies
(``prompt`` for Llama, ``inputText`` for Titan). Responses: Converse/Nova
``output.message``, Anthropic ``content``, Llama ``generation``, Titan
``results[0].outputText``. Records that cannot be read are rejected with a
reason instead of failing the job.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from .data import Record

LOG_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def matches(metadata: dict, filters: dict | None) -> bool:
    """Apply a RequestMetadataFilters union: equals, notEquals, andAll, orAll."""
    if not filters:
        return True
    if "equals" in filters:
        return all(metadata.get(k) == v for k, v in filters["equals"].items())
    if "notEquals" in filters:
        return all(metadata.get(k) != v for k, v in filters["notEquals"].items())
    if "andAll" in filters:
        return all(matches(metadata, f) for f in filters["andAll"])
    if "orAll" in filters:
        return any(matches(metadata, f) for f in filters["orAll"])
    raise ValueError(f"Unknown request metadata filter: {', '.join(filters)}")


def read_invocation_logs(
    root: Path, filters: dict | None, use_prompt_response: bool
) -> tuple[list[Record], list[dict]]:
    """Return (records, rejected) where rejected items are ``{"source", "reason"}``."""
    records: list[Record] = []
    rejected: list[dict] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(LOG_SUFFIXES)):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                source = f"{path.relative_to(root)}:{number}"
                try:
                    log = json.loads(line)
                except json.JSONDecodeError:
                    rejected.append({"source": source, "reason": "not a JSON log record"})
                    continue
                if not isinstance(log, dict) or not matches(log.get("requestMetadata") or {}, filters):
                    continue
                try:
                    turns = _prompt_turns(log)
                    if use_prompt_response:
                        turns.append({"role": "assistant", "content": _response_text(log)})
                except (KeyError, TypeError, ValueError, IndexError) as exc:
                    rejected.append({"source": source, "reason": f"unreadable invocation log record ({exc})"})
                    continue
                records.append(Record(len(records) + 1, messages=turns))
    return records, rejected


def _prompt_turns(log: dict) -> list[dict]:
    body = (log.get("input") or {}).get("inputBodyJson")
    if not isinstance(body, dict):
        raise ValueError("no inputBodyJson")
    turns = []
    system = body.get("system")
    if isinstance(system, str) and system.strip():
        turns.append({"role": "system", "content": system})
    elif isinstance(system, list):
        text = "\n".join(_content_text(system))
        if text:
            turns.append({"role": "system", "content": text})
    if "messages" in body:
        for message in body["messages"]:
            turns.append({"role": message["role"], "content": "\n".join(_content_text(message["content"]))})
    elif "prompt" in body or "inputText" in body:
        turns.append({"role": "user", "content": body.get("prompt") or body["inputText"]})
    else:
        raise ValueError("no messages or prompt in the request body")
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise ValueError("the request does not end with a user prompt")
    return turns


def _response_text(log: dict) -> str:
    body = (log.get("output") or {}).get("outputBodyJson")
    if not isinstance(body, dict):
        raise ValueError("no outputBodyJson")
    if "output" in body:
        text = "".join(_content_text(body["output"]["message"]["content"]))
    elif "content" in body:
        text = "".join(_content_text(body["content"]))
    elif "generation" in body:
        text = body["generation"]
    elif "results" in body:
        text = body["results"][0]["outputText"]
    else:
        raise ValueError("no response text in outputBodyJson")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty response")
    return text


def _content_text(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [block["text"] for block in content if isinstance(block, dict) and isinstance(block.get("text"), str)]
