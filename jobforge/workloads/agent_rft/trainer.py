"""One optimizer step on a training step's rows: the policy loss over the trained tokens, token-normalised.

The rows of a prompt group begin with the same context (the prompt every rollout of the group was sent, and
in an agent's conversation usually a long one: instructions, tools, history), and only what follows it
differs. Each chunk of rows is run forward in two passes: the distinct leading contexts once each, keeping
their KV cache (``prefill``), then every row's remainder attending to its context's cache, repeated for the
row (the repetition's backward sums the rows' gradients into the shared pass). The loss and its gradients are
those of running every row whole; the shared context costs one row's compute instead of the group's. A row's
shared part stops one token before its first trained token, whose logits the second pass computes. Models
whose cache is not made of plain full-attention layers (sliding windows, recurrent state) run every row whole.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from . import losses
from .prefill import prefill, with_cache
from .rows import Row

MICRO_BATCH_TOKENS = 8192  # rows are run forward in chunks of about this many tokens


@dataclass
class StepStats:
    loss: float
    kl: float
    trained_tokens: int
    total_tokens: int


class Trainer:
    def __init__(self, model, optimizer, loss_fn: str, clip_low: float, clip_high: float, pad_id: int,
                 lock: threading.Lock, max_grad_norm: float = 1.0):
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.clip = (clip_low, clip_high)
        self.pad_id = pad_id
        self.lock = lock  # the sampler's: weights change only between its batches
        self.max_grad_norm = max_grad_norm
        self.share_contexts = True  # until the model's cache turns out not to be shareable

    def step(self, rows: list[Row]) -> StepStats:
        trained = sum(sum(r.mask) for r in rows)
        total = sum(len(r.ids) for r in rows)
        if not trained:
            return StepStats(0.0, 0.0, 0, total)
        loss_sum, kl_sum = 0.0, 0.0
        with self.lock:
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            for chunk in _chunks(rows):
                loss, kl = self._forward(chunk)
                (loss / trained).backward()
                loss_sum += float(loss)
                kl_sum += float(kl)
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return StepStats(loss_sum / trained, kl_sum / trained, trained, total)

    def _forward(self, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of per-token losses, sum of per-token KL estimates) over the rows' trained tokens."""
        device = next(self.model.parameters()).device
        shared = [_context_length(row) if self.share_contexts else 0 for row in rows]
        contexts = None
        if any(shared):
            contexts = prefill(self.model, [row.ids[:n] for row, n in zip(rows, shared)], self.pad_id)
            if not contexts.plain:
                self.share_contexts, contexts, shared = False, None, [0] * len(rows)
        tails = [row.ids[n:] for row, n in zip(rows, shared)]
        longest = max(len(tail) for tail in tails)

        def padded(values, fill, dtype):
            return torch.tensor([v + [fill] * (longest - len(v)) for v in values], dtype=dtype, device=device)

        ids = padded(tails, self.pad_id, torch.long)
        attention = padded([[1] * len(tail) for tail in tails], 0, torch.long)
        # Targets are the next tokens: position t predicts token t + 1.
        mask = padded([r.mask[n:] for r, n in zip(rows, shared)], 0, torch.float32)[:, 1:]
        old = padded([r.old_logprobs[n:] for r, n in zip(rows, shared)], 0.0, torch.float32)[:, 1:]
        advantages = padded([r.advantages[n:] for r, n in zip(rows, shared)], 0.0, torch.float32)[:, 1:]
        temperature = torch.tensor([r.temperature for r in rows], device=device)[:, None, None]
        if contexts is None:
            inputs = dict(attention_mask=attention)
        else:
            offsets = torch.tensor(shared, device=device)[:, None]
            inputs = dict(attention_mask=torch.cat([contexts.mask, attention], dim=-1),
                          position_ids=offsets + torch.arange(longest, device=device), **with_cache(contexts.cache))
        logits = self.model(input_ids=ids, **inputs).logits[:, :-1].float() / temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        per_token = losses.per_token(self.loss_fn, logprobs, old, advantages, *self.clip)
        kl = losses.kl_estimate(logprobs.detach(), old)
        return (per_token * mask).sum(), (kl * mask).sum()


def _context_length(row: Row) -> int:
    """How many leading tokens of the row are context that other rows may share: those before its first
    trained token, less the last (its logits predict the first trained token)."""
    first = row.mask.index(1) if 1 in row.mask else len(row.ids)
    return max(first - 1, 0)


def _chunks(rows: list[Row]):
    """Rows in chunks of about ``MICRO_BATCH_TOKENS`` tokens, a shared context counted once; rows with the same
    context side by side, then by length."""
    chunk, tokens, context = [], 0, None
    for row in sorted(rows, key=lambda r: (r.ids[:_context_length(r)], len(r.ids))):
        own = row.ids[:_context_length(row)]
        cost = len(row.ids) - (len(own) if own == context else 0)
        if chunk and tokens + cost > MICRO_BATCH_TOKENS:
            yield chunk
            chunk, tokens = [], 0
            cost = len(row.ids)
        chunk.append(row)
        tokens += cost
        context = own
    if chunk:
        yield chunk
