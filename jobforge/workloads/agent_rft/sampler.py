"""The policy's sampler: requests that arrive together are generated in one batch (dynamic batching).

Each request is a prompt's token ids with its own temperature, top-p and token budget. Once a request
arrives, a thread keeps taking the requests that follow it while they come less than ``ARRIVAL_GAP``
apart (concurrent agents' calls reach the worker one by one, a few milliseconds apart, as the server
relays them), for at most ``GATHER_LIMIT``; then it left-pads them into one batch and decodes them together with the KV cache, one
forward pass per new token for the whole batch. For every sampled token it records the log-probability
under the distribution it was sampled from (the logits divided by the temperature, before top-p
truncation: what the trainer recomputes), so turns are never re-scored later.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import torch

ARRIVAL_GAP = 0.01  # seconds: a pause this long between arrivals closes the batch
GATHER_LIMIT = 0.05  # seconds: the longest the first request of a batch waits for companions
MAX_BATCH = 64


@dataclass
class SampleRequest:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stop_ids: frozenset[int]
    on_token: Callable[[int], None] | None = None  # streaming: called with each sampled token id
    future: Future = field(default_factory=Future)


@dataclass
class Completion:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" | "length"
    temperature: float  # of the distribution the log-probabilities are under
    policy_version: int


class BatchSampler:
    def __init__(self, model, pad_id: int, lock: threading.Lock, version: Callable[[], int]):
        self.model = model
        self.pad_id = pad_id
        self.lock = lock  # held while sampling, so an optimizer step never changes weights mid-batch
        self.version = version
        self.queue: queue.Queue[SampleRequest | None] = queue.Queue()
        self.batches = 0  # how many forward batches ran (for tests and metrics)
        self.thread = threading.Thread(target=self._loop, name="batch-sampler", daemon=True)
        self.thread.start()

    def submit(self, request: SampleRequest) -> Future:
        self.queue.put(request)
        return request.future

    def close(self) -> None:
        self.queue.put(None)

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + GATHER_LIMIT
            try:
                while len(batch) < MAX_BATCH and batch[-1] is not None:
                    wait = min(ARRIVAL_GAP, deadline - time.monotonic())
                    if wait <= 0:
                        break
                    batch.append(self.queue.get(timeout=wait))
            except queue.Empty:
                pass
            if batch[-1] is None:
                batch.pop()
                self.queue.put(None)
            try:
                with self.lock:
                    results = generate(self.model, batch, self.pad_id)
                    version = self.version()
                self.batches += 1
            except Exception as err:  # every waiting caller learns why
                for request in batch:
                    request.future.set_exception(err)
                continue
            for request, (ids, logprobs, reason) in zip(batch, results):
                temperature = request.temperature if request.temperature > 0 else 1.0
                request.future.set_result(Completion(ids, logprobs, reason, temperature, version))


@torch.inference_mode()
def generate(model, requests: list[SampleRequest], pad_id: int) -> list[tuple[list[int], list[float], str]]:
    """Sample every request's completion in one batch; (token ids, log-probabilities, finish reason) each."""
    device = next(model.parameters()).device
    longest = max(len(r.prompt_ids) for r in requests)
    ids = torch.full((len(requests), longest), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for row, request in enumerate(requests):
        ids[row, longest - len(request.prompt_ids):] = torch.tensor(request.prompt_ids, device=device)
        mask[row, longest - len(request.prompt_ids):] = 1
    temperature = torch.tensor([r.temperature if r.temperature > 0 else 1.0 for r in requests], device=device)
    greedy = torch.tensor([r.temperature <= 0 for r in requests], device=device)
    top_p = torch.tensor([r.top_p for r in requests], device=device)
    budget = [r.max_tokens for r in requests]
    out: list[list[int]] = [[] for _ in requests]
    logprobs: list[list[float]] = [[] for _ in requests]
    reasons = ["length"] * len(requests)
    done = [b <= 0 for b in budget]
    past = None
    step_ids = ids
    for _ in range(max(budget)):
        if all(done):
            break
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
        output = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, past_key_values=past,
                       use_cache=True)
        past = output.past_key_values
        logits = output.logits[:, -1, :].float() / temperature[:, None]
        log_probs = torch.log_softmax(logits, dim=-1)
        chosen = torch.where(greedy, log_probs.argmax(-1), _sample_top_p(log_probs, top_p))
        chosen_logprobs = log_probs.gather(-1, chosen[:, None]).squeeze(-1)
        for row, request in enumerate(requests):
            if done[row]:
                continue
            token = int(chosen[row])
            out[row].append(token)
            logprobs[row].append(float(chosen_logprobs[row]))
            if request.on_token is not None:
                request.on_token(token)
            if token in request.stop_ids:
                done[row], reasons[row] = True, "stop"
            elif len(out[row]) >= budget[row]:
                done[row] = True
        finished = torch.tensor(done, device=device)
        step_ids = torch.where(finished, pad_id, chosen)[:, None]
        mask = torch.cat([mask, (~finished).long()[:, None]], dim=-1)  # a finished row attends to nothing new
    return [(o, lp, r) for o, lp, r in zip(out, logprobs, reasons)]


def _sample_top_p(log_probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    probs = log_probs.exp()
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # the mass ranked above each token
    sorted_probs = sorted_probs.masked_fill(before >= top_p[:, None], 0.0)  # the top token always stays
    picked = torch.multinomial(sorted_probs, 1)
    return order.gather(-1, picked).squeeze(-1)
