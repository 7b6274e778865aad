"""The policy's sampler: continuous (iteration-level) batching of the Sample calls of many agents.

One thread runs the model. Each request is a prompt's token ids with its own temperature, top-p and token
budget. When the sampler is idle, a request waits for the ones that follow it while they come less than
``ARRIVAL_GAP`` apart, for at most ``GATHER_LIMIT``, and they start as one batch: the prompts are left-padded
and run forward together (the prefill, each distinct prompt once: the rollouts of a group share theirs, see
``prefill``), then the batch decodes one token per forward pass for all its rows,
with the KV cache. A request that arrives while a batch is decoding does not wait for it to
end: its prompt is run forward on its own and its rows join the running batch (their cache padded on the
left to the batch's length and appended), and from the next token on they decode with the others. A row
that finishes (a stop token or its budget) leaves the batch at once and its caller gets its answer; the
cache columns no remaining row attends to are dropped. Joining waits until as many requests wait as there are
running rows (``ADMIT_SHARE``), or until the first of them has waited ``ADMIT_STEPS`` decoding steps, so that
a prefill pass and a copy of the cache are shared by several arrivals instead of costing one each. Measured
with 32 simulated agents and 32-token answers on 2 cores (medians of 3 runs): when each agent calls again
10-30 ms after its answer, as fast as batch-at-a-time (2,545 against 2,667 tokens/s, within the noise); after
50-150 ms, a third faster (2,120 against 1,570); after 2.5-7.5 ms, about 2.6 times as fast, as stragglers no
longer wait for a whole batch to end.

Joins are cheaper and come sooner where they can: a prompt read before joins without a forward pass (the
sampler keeps the prompts it prefilled, ``prompt_cache``: on the benchmark's model, a join of 4 rows into 28
took 1.3 ms instead of 6.6), and waiting requests also join once the steps they have waited cost as much as the
join would (``Costs``).

Only caches made of plain ``DynamicLayer`` layers (full attention, the usual case) can be joined; for others
(sliding windows, recurrent state) a request waits for the running batch to end, and finished rows stay in
the batch, masked, until it does.

For every sampled token the sampler records the log-probability under the distribution it was sampled from
(the logits divided by the temperature, before top-p truncation: what the trainer recomputes), so turns are
never re-scored later. The lock is held for each forward pass, never between two, so an optimizer step
never changes weights during one; a turn's policy version is the one its first token was sampled with.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .prefill import Prefilled, cache_of, left_pad, prefill, with_cache
from .prompt_cache import PromptCache

ARRIVAL_GAP = 0.01  # seconds: an idle sampler's batch fills while requests come less than this apart,
GATHER_LIMIT = 0.05  # for at most this long after the first
ADMIT_SHARE = 1  # waiting requests join a running batch once they are this share of its rows,
ADMIT_STEPS = 16  # or once the first of them has waited this many decoding steps
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


@dataclass
class _Row:
    request: SampleRequest
    version: int
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    reason: str | None = None  # set once the row is finished
    answered: bool = False  # its caller has its completion

    def completion(self) -> Completion:
        temperature = self.request.temperature if self.request.temperature > 0 else 1.0
        return Completion(self.ids, self.logprobs, self.reason or "length", temperature, self.version)


class BatchSampler:
    def __init__(self, model, pad_id: int, lock: threading.Lock, version: Callable[[], int],
                 callers: Callable[[], int] | None = None):
        self.model = model
        self.pad_id = pad_id
        self.lock = lock  # held for each forward pass, so an optimizer step never changes weights during one
        self.version = version
        self.callers = callers  # how many callers there are (open trajectories), when known
        self.known = PromptCache()  # used by this thread alone
        self.costs = Costs()
        self.queue: queue.Queue[SampleRequest | None] = queue.Queue()
        self.batches = 0  # how many batches were started or joined (for tests and metrics)
        self.thread = threading.Thread(target=self._loop, name="batch-sampler", daemon=True)
        self.thread.start()

    def submit(self, request: SampleRequest) -> Future:
        self.queue.put(request)
        return request.future

    def close(self) -> None:
        self.queue.put(None)

    def _loop(self) -> None:
        batch = Batch(self.model, self.pad_id, self.known)
        waiting: deque[tuple[SampleRequest, int]] = deque()  # with the step count at its arrival
        steps, closing = 0, False
        while True:
            try:
                block = not (batch.rows or waiting or closing)
                while True:
                    request = self.queue.get(block=block)
                    block = False
                    if request is None:
                        closing = True
                    else:
                        waiting.append((request, steps))
            except queue.Empty:
                pass
            if closing and not batch.rows and not waiting:
                return
            if waiting and not batch.rows and not closing:
                closing = self._gather(waiting, steps)
            admitted = self._admit(batch, waiting, steps)
            if batch.rows:
                try:
                    began = time.perf_counter()
                    with torch.inference_mode(), self.lock:
                        finished = batch.step()
                    self.costs.step(time.perf_counter() - began)
                except Exception as err:  # every caller of the batch learns why
                    self._fail([row.request for row in batch.rows], err)
                    batch = Batch(self.model, self.pad_id, self.known)
                    finished = []
                steps += 1
                self._answer(finished)
            if admitted:
                try:
                    began, joining = time.perf_counter(), bool(batch.rows)
                    with torch.inference_mode(), self.lock:
                        finished = batch.add(admitted, self.version())
                    if joining:  # a batch's start holds up nobody: only joins tell what a join costs
                        self.costs.join(time.perf_counter() - began)
                except Exception as err:  # a prompt the model cannot take fails its own callers only
                    self._fail(admitted, err)
                    continue
                self.batches += 1
                self._answer(finished)

    def _gather(self, waiting: deque, steps: int) -> bool:
        """Let an idle sampler's batch fill: take the requests that follow while they come less than
        ``ARRIVAL_GAP`` apart (concurrent agents' calls reach the worker one by one, a few milliseconds apart),
        for at most ``GATHER_LIMIT``, and no longer once every caller there is waits. Whether the sampler was
        closed meanwhile."""
        deadline = time.monotonic() + GATHER_LIMIT
        while len(waiting) < MAX_BATCH and not (self.callers and len(waiting) >= self.callers()):
            wait = min(ARRIVAL_GAP, deadline - time.monotonic())
            if wait <= 0:
                return False
            try:
                request = self.queue.get(timeout=wait)
            except queue.Empty:
                return False
            if request is None:
                return True
            waiting.append((request, steps))
        return False

    @staticmethod
    def _answer(rows: list[_Row]) -> None:
        for row in rows:
            row.request.future.set_result(row.completion())

    @staticmethod
    def _fail(requests: list[SampleRequest], err: Exception) -> None:
        for request in requests:
            if not request.future.done():
                request.future.set_exception(err)

    def _admit(self, batch: Batch, waiting: deque, steps: int) -> list[SampleRequest]:
        if not waiting:
            return []
        if batch.rows:
            due = (len(waiting) * ADMIT_SHARE >= batch.live or steps - waiting[0][1] >= ADMIT_STEPS
                   or self.costs.worth_joining(sum(steps - arrived for _, arrived in waiting),
                                               batch.live + len(waiting)))
            if not (batch.joinable and due):
                return []
        room = MAX_BATCH - batch.live
        return [waiting.popleft()[0] for _ in range(min(room, len(waiting)))]


class Costs:
    """What a decoding step and a join have been taking (moving averages), to judge when waiting requests
    should join: a join holds up every row of the batch for its time, waiting holds up the waiting rows a step
    at a time, so they join once the steps they have waited in all cost as much as the join would (the
    rent-or-buy rule, never more than twice the better choice in hindsight). A join of prompts read before
    costs a fraction of a step (see ``prompt_cache``), one that runs its prompts forward about a step."""

    WEIGHT = 0.1  # of each new measurement

    def __init__(self):
        self.step_seconds: float | None = None
        self.join_seconds: float | None = None

    def step(self, seconds: float) -> None:
        self.step_seconds = self._average(self.step_seconds, seconds)

    def join(self, seconds: float) -> None:
        self.join_seconds = self._average(self.join_seconds, seconds)

    def worth_joining(self, waited_steps: int, rows: int) -> bool:
        """Whether requests that have waited ``waited_steps`` steps in all should join a batch that will then
        have ``rows`` rows."""
        if self.step_seconds is None or self.join_seconds is None:
            return False
        return waited_steps * self.step_seconds >= rows * self.join_seconds

    def _average(self, average: float | None, seconds: float) -> float:
        return seconds if average is None else average + self.WEIGHT * (seconds - average)


class Batch:
    """Rows decoding together: the KV cache, the attention mask over the cache and each row's pending token
    (sampled, not yet run forward), and each row's sampling settings."""

    def __init__(self, model, pad_id: int, known: PromptCache | None = None):
        self.model = model
        self.pad_id = pad_id
        self.known = known  # the prompts read before, when the batch keeps them for its next joins
        self.device = next(model.parameters()).device
        self._reset()

    def _reset(self) -> None:
        self.rows: list[_Row] = []
        self.past = None
        self.mask = self.pending = self.temperature = self.greedy = self.top_p = None
        self.joinable = True  # until a cache says otherwise

    @property
    def live(self) -> int:
        return sum(row.reason is None for row in self.rows)

    def add(self, requests: list[SampleRequest], version: int) -> list[_Row]:
        """Prefill the requests' prompts, sample their first tokens and join them to the batch; the rows that
        are already finished."""
        rows = [_Row(request, version) for request in requests]
        empty = [row for row in rows if row.request.max_tokens <= 0]
        rows = [row for row in rows if row.request.max_tokens > 0]
        if not rows:
            return empty
        prefilled = prefill(self.model, [row.request.prompt_ids for row in rows], self.pad_id, self.known, version)
        settings = _settings(rows, self.device)
        chosen = _choose(rows, prefilled.logits, *settings)
        self._join(rows, prefilled, chosen, settings)
        return empty + self._retire()

    def step(self) -> list[_Row]:
        """One token for every row; the rows that finished with it."""
        positions = (self.mask.cumsum(-1) - 1)[:, -1:]
        output = self.model(input_ids=self.pending[:, None], attention_mask=self.mask, position_ids=positions,
                            use_cache=True, **with_cache(self.past))
        self.past = cache_of(output)
        chosen = _choose(self.rows, output.logits[:, -1, :], self.temperature, self.greedy, self.top_p)
        self._extend(chosen)
        return self._retire()

    def _extend(self, chosen: torch.Tensor) -> None:
        """The sampled tokens become the pending ones; a finished row attends to nothing new."""
        live = torch.tensor([row.reason is None for row in self.rows], device=self.device)
        self.pending = torch.where(live, chosen, self.pad_id)
        self.mask = torch.cat([self.mask, live.long()[:, None]], dim=-1)

    def _join(self, rows: list[_Row], prefilled: Prefilled, chosen: torch.Tensor, settings: tuple) -> None:
        past, mask = prefilled.cache, prefilled.mask
        if not self.rows:
            self.rows, self.past, self.mask = rows, past, mask
            self.temperature, self.greedy, self.top_p = settings
            self.joinable = prefilled.plain
            self._extend(chosen)
            return
        # The cache is one column shorter than the mask: the pending token is not in it yet.
        width = max(self.mask.shape[1], mask.shape[1] + 1)
        live = torch.tensor([row.reason is None for row in rows], device=self.device)
        mask = torch.cat([mask, live.long()[:, None]], dim=-1)
        for mine, theirs in zip(self.past.layers, past.layers):
            mine.keys = torch.cat([left_pad(mine.keys, width - 1), left_pad(theirs.keys, width - 1)])
            mine.values = torch.cat([left_pad(mine.values, width - 1), left_pad(theirs.values, width - 1)])
        self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)),
                               F.pad(mask, (width - mask.shape[1], 0))])
        self.pending = torch.cat([self.pending, torch.where(live, chosen, self.pad_id)])
        self.temperature, self.greedy, self.top_p = (torch.cat([a, b]) for a, b in zip(
            (self.temperature, self.greedy, self.top_p), settings))
        self.rows = self.rows + rows

    def _retire(self) -> list[_Row]:
        """The rows finished since the last call; a joinable batch lets them go (with the cache columns no row
        attends to any more), another keeps them, masked, until every row is finished."""
        done = [row for row in self.rows if row.reason is not None and not row.answered]
        for row in done:
            row.answered = True
        if all(row.reason is not None for row in self.rows):
            self._reset()
        elif done and self.joinable:
            keep = torch.tensor([i for i, row in enumerate(self.rows) if row.reason is None], device=self.device)
            self.rows = [row for row in self.rows if row.reason is None]
            self.mask, self.pending = self.mask[keep], self.pending[keep]
            self.temperature, self.greedy, self.top_p = self.temperature[keep], self.greedy[keep], self.top_p[keep]
            first = int(self.mask.any(0).long().argmax())  # the last column (pending tokens) is all ones
            self.mask = self.mask[:, first:]
            for layer in self.past.layers:
                layer.keys, layer.values = layer.keys[keep, :, first:], layer.values[keep, :, first:]
        return done


@torch.inference_mode()
def generate(model, requests: list[SampleRequest], pad_id: int) -> list[tuple[list[int], list[float], str]]:
    """Sample every request's completion in one batch; (token ids, log-probabilities, finish reason) each."""
    batch = Batch(model, pad_id)
    finished = batch.add(requests, 0)
    while batch.rows:
        finished += batch.step()
    answers = {id(row.request): row for row in finished}
    return [(row.ids, row.logprobs, row.reason or "length") for row in (answers[id(r)] for r in requests)]


def _settings(rows: list[_Row], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(temperature, greedy, top-p) of each row."""
    requests = [row.request for row in rows]
    return (torch.tensor([r.temperature if r.temperature > 0 else 1.0 for r in requests], device=device),
            torch.tensor([r.temperature <= 0 for r in requests], device=device),
            torch.tensor([r.top_p for r in requests], device=device))


def _choose(rows: list[_Row], logits: torch.Tensor, temperature, greedy, top_p) -> torch.Tensor:
    """Sample each row's next token, record it with its log-probability and mark the rows it finishes."""
    log_probs = torch.log_softmax(logits.float() / temperature[:, None], dim=-1)
    chosen = torch.where(greedy, log_probs.argmax(-1), _sample_top_p(log_probs, top_p))
    chosen_logprobs = log_probs.gather(-1, chosen[:, None]).squeeze(-1)
    for row, token, logprob in zip(rows, chosen.tolist(), chosen_logprobs.tolist()):
        if row.reason is not None:
            continue
        request = row.request
        row.ids.append(token)
        row.logprobs.append(logprob)
        if request.on_token is not None:
            request.on_token(token)
        if token in request.stop_ids:
            row.reason = "stop"
        elif len(row.ids) >= request.max_tokens:
            row.reason = "length"
    return chosen


def _sample_top_p(log_probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    probs = log_probs.exp()
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # the mass ranked above each token
    sorted_probs = sorted_probs.masked_fill(before >= top_p[:, None], 0.0)  # the top token always stays
    picked = torch.multinomial(sorted_probs, 1)
    return order.gather(-1, picked).squeeze(-1)
