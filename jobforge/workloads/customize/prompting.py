"""Turn records into token ids and loss masks; shared by training and generation.

Chat records use the tokenizer's chat template. A tokenizer without one gets
``DEFAULT_CHAT_TEMPLATE``, which is saved with the custom model so inference
renders conversations exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import Record

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[bool]  # True where the token is trained on
    line: int


def ensure_chat_template(tokenizer) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.bos_token is None and tokenizer.eos_token is not None:
        tokenizer.bos_token = tokenizer.eos_token


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    # The template already holds the special tokens.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    return tokenizer(prompt)["input_ids"]


def encode(tokenizer, record: Record, train_all_tokens: bool) -> Encoded:
    """Token ids with the trained positions: completion/assistant tokens, or all for pre-training."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if record.text is not None:
        ids = tokenizer(record.text)["input_ids"] + eos
        return Encoded(ids, [True] * len(ids), record.line)
    if record.prompt is not None:
        # Tokenized separately so the prompt's ids match what inference sees.
        prompt = prompt_ids(tokenizer, record.prompt)
        completion = tokenizer(record.completion or "", add_special_tokens=False)["input_ids"] + eos
        return Encoded(prompt + completion, [train_all_tokens] * len(prompt) + [True] * len(completion), record.line)
    return _encode_chat(tokenizer, record, train_all_tokens)


def _encode_chat(tokenizer, record: Record, train_all_tokens: bool) -> Encoded:
    # Render the conversation up to each assistant turn; the ids that turn adds
    # are the ones trained on. If the template re-renders earlier turns
    # differently (some drop old reasoning), only the last turn is trained.
    ids: list[int] = []
    labels: list[bool] = []
    for index, message in enumerate(record.messages):
        if message["role"] != "assistant":
            continue
        prefix = chat_ids(tokenizer, record.messages[:index], add_generation_prompt=True)
        full = chat_ids(tokenizer, record.messages[: index + 1], add_generation_prompt=False)
        start = _common_prefix(prefix, full)
        if full[: len(ids)] != ids:
            ids, labels = [], []
        start = max(start, len(ids))
        labels += [train_all_tokens] * (start - len(ids)) + [True] * (len(full) - start)
        ids = full
    return Encoded(ids, labels, record.line)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
