"""Text generation from a Hugging Face model directory (InvokeModel, Converse,
and the distillation teacher).

``messages`` are ``[{"role": "system"|"user"|"assistant", "content": str}]``
rendered with the model's chat template (the one saved with every custom
model); ``prompt`` is sent as raw text. ``stop_reason`` uses Converse's
values: ``end_turn``, ``max_tokens``, ``stop_sequence``.

A request must fit the model: its input within the context (the model's
position embeddings), an explicit ``max_tokens`` within the model's limit;
generation also ends where the context is full.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from .job import max_positions
from .prompting import chat_ids, ensure_chat_template, prompt_ids

CACHE_SIZE = 2
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()
INPUT_TOO_LONG = "Input is too long for requested model."
ABOVE_LIMIT = ("The maximum tokens you requested exceeds the model limit of {limit}. Try again with a maximum "
               "tokens value that is lower than {limit}.")


class RequestRejected(ValueError):
    """The request does not fit the model (Bedrock's ValidationException)."""


@dataclass
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str


def load(model_dir: str | Path):
    """(model, tokenizer) for a model directory, kept in a small LRU cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .model_io import quiet_transformers

    path = Path(model_dir).resolve()
    key = (str(path), (path / "config.json").stat().st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        quiet_transformers()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        ensure_chat_template(tokenizer)
        _cache[key] = (model, tokenizer)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return model, tokenizer


def input_ids_for(tokenizer, messages: list[dict] | None = None, prompt: str | None = None) -> list[int]:
    if (messages is None) == (prompt is None):
        raise ValueError("Give exactly one of messages or prompt.")
    if messages is not None:
        return chat_ids(tokenizer, messages, add_generation_prompt=True)
    return prompt_ids(tokenizer, prompt)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _longest_token(tokenizer) -> int:
    return max(map(len, tokenizer.get_vocab()), default=1)


def surely_too_long(tokenizer, texts: list[str], context: int) -> bool:
    """Whether texts cannot fit ``context`` tokens, known without tokenizing them (which takes seconds per
    megabyte): no token covers more characters of normalized text than its own string has."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    normalize = backend.normalizer.normalize_str if backend.normalizer is not None else str
    return sum(len(normalize(text)) for text in texts) > context * _longest_token(tokenizer)


def generate(
    model_dir,
    messages: list[dict] | None = None,
    prompt: str | None = None,
    max_tokens: int = 512,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop: list[str] | None = None,
) -> tuple[str, int, int, str]:
    """Complete one conversation or prompt: (text, input_tokens, output_tokens, stop_reason)."""
    pieces = stream(model_dir, messages, prompt, max_tokens, temperature, top_p, stop)
    text = "".join(pieces)
    return text, pieces.input_tokens, pieces.output_tokens, pieces.stop_reason


def stream(model_dir, messages=None, prompt=None, max_tokens=512, temperature=1.0, top_p=1.0, stop=None,
           top_k=None) -> "Stream":
    """Streaming variant of ``generate``: iterate over the returned object for text pieces."""
    return Stream(model_dir, messages, prompt, max_tokens, temperature, top_p, stop, top_k)


class Stream:
    """Iterate to get text pieces as they are generated; afterwards
    ``input_tokens``, ``output_tokens`` and ``stop_reason`` are set.

    ``max_tokens`` None means the caller's default, ``default_max_tokens``, as far as the context leaves
    room; an explicit value above ``max_tokens_limit`` or the context is refused with ``RequestRejected``.
    ``pacing``, when given, decides when each model step runs: a context manager held around the
    generation whose ``next_token()`` is called after every token (it may wait, or raise to stop).
    """

    def __init__(self, model_dir, messages=None, prompt=None, max_tokens: int | None = 512, temperature=1.0,
                 top_p=1.0, stop=None, top_k=None, default_max_tokens: int = 512,
                 max_tokens_limit: int | None = None, pacing=None):
        self.model, self.tokenizer = load(model_dir)
        context = max_positions(Path(model_dir))
        texts = [m["content"] for m in messages] if messages is not None else [prompt or ""]
        if surely_too_long(self.tokenizer, texts, context):
            raise RequestRejected(INPUT_TOO_LONG)
        self.ids = input_ids_for(self.tokenizer, messages, prompt)
        room = context - len(self.ids)
        if room <= 0:
            raise RequestRejected(INPUT_TOO_LONG)
        limit = min(context, max_tokens_limit or context)
        if max_tokens is not None and max_tokens > limit:
            raise RequestRejected(ABOVE_LIMIT.format(limit=limit))
        self.max_tokens = min(default_max_tokens if max_tokens is None else max_tokens, room)
        self.temperature, self.top_p, self.top_k, self.pacing = temperature, top_p, top_k, pacing
        self.stop = [s for s in (stop or []) if s]
        self.input_tokens, self.output_tokens, self.stop_reason = len(self.ids), 0, None

    def __iter__(self):
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        if self.max_tokens <= 0:  # Titan admits maxTokenCount 0: nothing to generate
            self.stop_reason = "max_tokens"
            return
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        produced = {}
        kwargs = _sampling(self.tokenizer, self.max_tokens, self.temperature, self.top_p, self.top_k)
        if self.stop:
            kwargs.update(stop_strings=self.stop, tokenizer=self.tokenizer)
        if self.pacing is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_Paced(self.pacing)])
        input_ids = torch.tensor([self.ids], device=self.model.device)

        def work():
            try:
                with self.pacing or contextlib.nullcontext(), torch.no_grad():
                    produced["ids"] = self.model.generate(
                        input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer, **kwargs
                    )
            except BaseException as exc:  # surfaced in the consumer's thread
                produced["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        text, sent = "", 0
        hold = max((len(s) for s in self.stop), default=1) - 1
        cut = None
        for piece in streamer:
            text += piece
            cut = _first_stop(text, self.stop)
            if cut is not None:
                for _ in streamer:  # drain so generate() can finish
                    pass
                break
            # Hold back a tail that could be the start of a stop sequence.
            safe = len(text) - hold
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        thread.join()
        if "error" in produced:
            raise produced["error"]
        new_ids = produced["ids"][0, len(self.ids) :].tolist()
        self.output_tokens = len(new_ids)
        if cut is not None:
            self.stop_reason = "stop_sequence"
            text = text[:cut]
        elif new_ids and new_ids[-1] == self.tokenizer.eos_token_id:
            self.stop_reason = "end_turn"
        elif self.output_tokens >= self.max_tokens:
            self.stop_reason = "max_tokens"
        else:
            self.stop_reason = "end_turn"
        if len(text) > sent:
            yield text[sent:]


class _Paced:
    """Hands control to the pacing after every generated token (a stopping criterion never stopping itself)."""

    def __init__(self, pacing):
        self.pacing = pacing

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        self.pacing.next_token()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def generate_batch(model, tokenizer, inputs: list[list[int]], max_tokens: int, temperature: float, top_p: float):
    """Generate for many tokenized inputs at once (left padding); returns (ids, hit_limit) per input."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(ids) for ids in inputs)
    batch = torch.full((len(inputs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for row, ids in enumerate(inputs):
        batch[row, width - len(ids) :] = torch.tensor(ids)
        mask[row, width - len(ids) :] = 1
    with torch.no_grad():
        out = model.generate(
            batch.to(model.device),
            attention_mask=mask.to(model.device),
            **_sampling(tokenizer, max_tokens, temperature, top_p),
        )
    results = []
    for row in out[:, width:].tolist():
        if tokenizer.eos_token_id in row:
            results.append((row[: row.index(tokenizer.eos_token_id)], False))
        else:
            results.append(([t for t in row if t != pad], True))
    return results


def _sampling(tokenizer, max_tokens: int, temperature: float, top_p: float, top_k: int | None = None) -> dict:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kwargs = {"max_new_tokens": max_tokens, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": pad}
    if temperature and temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or 0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None
