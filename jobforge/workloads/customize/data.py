"""Parse and validate Bedrock customization datasets (JSON Lines).

Every record is checked before any training starts; all problems are
collected with their 1-based line numbers and reported together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .families import (
    CONTINUED_PRE_TRAINING,
    CONVERSATION,
    CPT_MAX_TRAIN_RECORDS,
    DISTILLATION,
    DISTILLATION_MAX_PROMPTS,
    MESSAGES,
    PROMPT_COMPLETION,
    REINFORCEMENT_FINE_TUNING,
    RFT_MAX_PROMPTS,
    RFT_MIN_PROMPTS,
    ModelFamily,
)

MAX_REPORTED_ERRORS = 20


@dataclass
class Record:
    """One training example, normalized.

    Exactly one shape is set: ``prompt`` (+ ``completion``, None for a
    distillation prompt without a golden answer), ``messages`` (chat turns as
    ``{"role", "content": str}``, a leading ``system`` turn when given), or
    ``text`` (continued pre-training). A reinforcement fine-tuning prompt has
    ``messages`` and, in ``grader_fields``, the record as given (its
    ``reference_answer`` and any other field), which the grader receives.
    """

    line: int
    prompt: str | None = None
    completion: str | None = None
    messages: list[dict] | None = None
    text: str | None = None
    grader_fields: dict | None = None


class DataValidationError(ValueError):
    """Problems found in a dataset; ``str()`` is the job's failure message."""

    def __init__(self, source: str, problems: list[tuple[int | None, str]]):
        self.source = source
        self.problems = problems
        shown = [f"Line {line}: {msg}" if line else msg for line, msg in problems[:MAX_REPORTED_ERRORS]]
        more = len(problems) - MAX_REPORTED_ERRORS
        if more > 0:
            shown.append(f"... and {more} more invalid records")
        super().__init__(f"Validation of {source} failed. " + " ".join(shown))


def check_jsonl_uri(uri: str) -> None:
    """Bedrock's synchronous check on a dataset location."""
    if not uri.endswith(".jsonl"):
        raise DataValidationError(
            uri, [(None, f"Provided S3 location is invalid: {uri}. Input data must be in .jsonl format")]
        )


def load_records(
    path: Path,
    source: str,
    customization_type: str,
    family: ModelFamily,
    *,
    validation: bool = False,
) -> list[Record]:
    """Read and validate every line of a JSONL file; raise DataValidationError on any problem."""
    records: list[Record] = []
    problems: list[tuple[int | None, str]] = []
    with open(path, encoding="utf-8", errors="strict") as handle:
        try:
            lines = list(handle)
        except UnicodeDecodeError:
            raise DataValidationError(source, [(None, "The file is not valid UTF-8 text.")]) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((number, f"Invalid JSON: {exc.msg}."))
            continue
        if not isinstance(obj, dict):
            problems.append((number, "Each line must be a JSON object."))
            continue
        try:
            record = parse_record(obj, number, customization_type, family)
        except ValueError as exc:
            problems.append((number, str(exc)))
            continue
        records.append(record)
    if not problems:
        problems.extend(_count_problems(len(records), customization_type, family, validation))
    if problems:
        raise DataValidationError(source, problems)
    return records


def _count_problems(count: int, customization_type: str, family: ModelFamily, validation: bool):
    kind = "validation" if validation else "training"
    if customization_type == DISTILLATION:
        minimum, maximum = 1, DISTILLATION_MAX_PROMPTS
    elif customization_type == REINFORCEMENT_FINE_TUNING:
        minimum, maximum = (1 if validation else RFT_MIN_PROMPTS), RFT_MAX_PROMPTS
    elif customization_type == CONTINUED_PRE_TRAINING:
        minimum, maximum = 1, CPT_MAX_TRAIN_RECORDS
    elif validation:
        minimum, maximum = 1, family.max_validation_records
    else:
        minimum, maximum = family.min_records, family.max_train_records
    if count < minimum:
        yield None, f"The {kind} dataset has {count} records; the minimum is {minimum}."
    elif count > maximum:
        yield None, f"The {kind} dataset has {count} records, which exceeds the limit of {maximum}."


def parse_record(obj: dict, line: int, customization_type: str, family: ModelFamily) -> Record:
    """Validate one JSON object against the formats allowed for this job; raise ValueError."""
    if customization_type == CONTINUED_PRE_TRAINING:
        _only_keys(obj, {"input"}, 'Continued pre-training records must be {"input": "<text>"}.')
        return Record(line, text=_text(obj, "input"))
    if customization_type == REINFORCEMENT_FINE_TUNING:
        return _rft_prompt(obj, line)
    distill = customization_type == DISTILLATION
    if _is_conversation(obj):
        _require_format(CONVERSATION, family, distill)
        record = _conversation(obj, line, distill, family)
    elif "messages" in obj:
        _require_format(MESSAGES, family, distill)
        record = _messages(obj, line, distill, family)
    elif "prompt" in obj:
        _require_format(PROMPT_COMPLETION, family, distill)
        _only_keys(obj, {"prompt", "completion"}, 'Records must be {"prompt": "...", "completion": "..."}.')
        completion = _text(obj, "completion") if "completion" in obj or not distill else None
        record = Record(line, prompt=_text(obj, "prompt"), completion=completion)
    else:
        raise ValueError(f"Unrecognized record format; expected {_expected(family, distill)}.")
    _check_forbidden(record, family)
    return record


def _require_format(fmt: str, family: ModelFamily, distill: bool) -> None:
    # Distillation prompts are model-agnostic: bedrock-conversation-2024 or {"prompt"}.
    allowed = (CONVERSATION, PROMPT_COMPLETION, MESSAGES) if distill else family.formats
    if fmt not in allowed:
        raise ValueError(f"The {fmt} format is not supported for this base model; expected {_expected(family, distill)}.")


def _expected(family: ModelFamily, distill: bool) -> str:
    formats = (CONVERSATION, PROMPT_COMPLETION) if distill else family.formats
    names = {
        PROMPT_COMPLETION: '{"prompt", "completion"}',
        MESSAGES: '{"system", "messages"}',
        CONVERSATION: '{"schemaVersion": "bedrock-conversation-2024", "system", "messages"}',
    }
    return " or ".join(names[f] for f in formats)


def _is_conversation(obj: dict) -> bool:
    """A bedrock-conversation-2024 record: its content in blocks. Its schemaVersion is optional and may be any
    string, as Bedrock's own validator has it (AWS's tool-use dataset says ``tooluse-dataset-2024``)."""
    messages = obj.get("messages")
    blocks = isinstance(messages, list) and any(isinstance(m, dict) and isinstance(m.get("content"), list)
                                                for m in messages)
    return "schemaVersion" in obj or isinstance(obj.get("system"), list) or blocks


def _conversation(obj: dict, line: int, distill: bool, family: ModelFamily) -> Record:
    _only_keys(obj, {"schemaVersion", "system", "messages"}, "Unexpected key in bedrock-conversation-2024 record.")
    if not isinstance(obj.get("schemaVersion", ""), str):
        raise ValueError('"schemaVersion" must be a string.')
    turns = []
    system = obj.get("system")
    if system is not None:
        if not isinstance(system, list) or not all(isinstance(b, dict) for b in system):
            raise ValueError('"system" must be a list of {"text": "..."} blocks.')
        if family.max_system_blocks is not None and len(system) > family.max_system_blocks:
            raise ValueError(f'"system" may hold at most {family.max_system_blocks} element for this base model; '
                             f"found {len(system)}.")
        text = "\n".join(_block_text(b, "system") for b in system)
        if text:
            turns.append({"role": "system", "content": text})
    for index, message in _each_message(obj):
        content = message["content"]
        if not isinstance(content, list) or not content:
            raise ValueError(f"messages[{index}].content must be a non-empty list of content blocks.")
        text = "\n".join(_block_text(b, f"messages[{index}]") for b in content)
        turns.append({"role": message["role"], "content": text})
    _check_turns(turns, distill, family)
    return Record(line, messages=turns)


def _each_message(obj: dict) -> Iterator[tuple[int, dict]]:
    """(index, message) of the record's non-empty "messages" list, each checked, as it is reached, to be an
    object with exactly "role" and "content"."""
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list.')
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ValueError(f'messages[{index}] must have exactly "role" and "content".')
        yield index, message


def _block_text(block, where: str) -> str:
    if not isinstance(block, dict):
        raise ValueError(f"{where}: content blocks must be objects.")
    if "image" in block or "video" in block or "document" in block:
        raise ValueError(f"{where}: image, video and document content is not supported for text models.")
    if set(block) != {"text"} or not isinstance(block["text"], str) or not block["text"].strip():
        raise ValueError(f'{where}: content blocks must be {{"text": "<non-empty text>"}}.')
    return block["text"]


def _messages(obj: dict, line: int, distill: bool, family: ModelFamily) -> Record:
    _only_keys(obj, {"system", "messages"}, 'Records must have only "system" (optional) and "messages".')
    turns = []
    if "system" in obj:
        if not isinstance(obj["system"], str):
            raise ValueError('"system" must be a string.')
        if obj["system"].strip():
            turns.append({"role": "system", "content": obj["system"]})
    for index, message in _each_message(obj):
        if not isinstance(message["content"], str) or not message["content"].strip():
            raise ValueError(f"messages[{index}].content must be a non-empty string.")
        turns.append(dict(message))
    _check_turns(turns, distill, family)
    return Record(line, messages=turns)


def _rft_prompt(obj: dict, line: int) -> Record:
    """An OpenAI chat-completions prompt: ``messages`` ending with the user's turn, ``reference_answer`` (any
    JSON), an optional ``id``, and any other field for the grader."""
    if "reference_answer" not in obj:
        raise ValueError('Reinforcement fine-tuning records need "messages" and "reference_answer". '
                         "Missing key(s): reference_answer.")
    if "id" in obj and not isinstance(obj["id"], (str, int)):
        raise ValueError('"id" must be a string or an integer.')
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list.')
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f'messages[{index}] must have "role" and "content".')
        if message["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{index}].role must be system, user or assistant, got {message['role']!r}.")
        turns.append({"role": message["role"], "content": _openai_text(message["content"], index)})
    if turns[-1]["role"] != "user":
        raise ValueError("The last message must be the user's: the model answers it.")
    return Record(line, messages=turns, grader_fields=obj)


def _openai_text(content, index: int) -> str:
    """A message's text: a string, or OpenAI's content parts ``[{"type": "text", "text": ...}]`` joined."""
    if isinstance(content, list) and content and all(isinstance(p, dict) and p.get("type") == "text"
                                                     and isinstance(p.get("text"), str) for p in content):
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f'messages[{index}].content must be non-empty text (a string or "text" content parts).')
    return content


def _check_turns(turns: list[dict], distill: bool, family: ModelFamily) -> None:
    chat = [t for t in turns if t["role"] != "system"]
    for index, turn in enumerate(chat):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn["role"] not in ("user", "assistant"):
            raise ValueError(f"messages[{index}].role must be user or assistant, got {turn['role']!r}.")
        if turn["role"] != expected:
            raise ValueError("Roles must alternate between user and assistant, starting with user.")
    if distill and family.single_turn_prompts and len(chat) > 2:
        raise ValueError("Distillation prompts for this student model must be a single user turn, optionally "
                         "followed by one assistant turn as a golden answer; multi-turn conversations are "
                         "supported for Amazon Nova students only.")
    if not distill and (len(chat) < 2 or chat[-1]["role"] != "assistant"):
        raise ValueError("A conversation needs at least one user and one assistant message and must end with assistant.")


def _check_forbidden(record: Record, family: ModelFamily) -> None:
    texts = [record.prompt, record.completion] + [t["content"] for t in record.messages or []]
    for text in filter(None, texts):
        for marker in family.forbidden_substrings:
            if marker in text:
                raise ValueError(f"Text must not contain {marker!r}.")


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{key}" must be a non-empty string.')
    return value


def _only_keys(obj: dict, allowed: set[str], message: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ValueError(f"{message} Unexpected key(s): {', '.join(extra)}.")
    missing = sorted(k for k in allowed if k not in obj and k not in ("schemaVersion", "system", "completion"))
    if missing:
        raise ValueError(f"{message} Missing key(s): {', '.join(missing)}.")
