"""One optimizer step on a training step's rows: the policy loss over the trained tokens, token-normalised."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from . import losses
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
        longest = max(len(r.ids) for r in rows)

        def padded(values, fill, dtype):
            return torch.tensor([v + [fill] * (longest - len(v)) for v in values], dtype=dtype, device=device)

        ids = padded([r.ids for r in rows], self.pad_id, torch.long)
        attention = padded([[1] * len(r.ids) for r in rows], 0, torch.long)
        # Targets are the next tokens: position t predicts token t + 1.
        mask = padded([r.mask for r in rows], 0, torch.float32)[:, 1:]
        old = padded([r.old_logprobs for r in rows], 0.0, torch.float32)[:, 1:]
        advantages = padded([r.advantages for r in rows], 0.0, torch.float32)[:, 1:]
        temperature = torch.tensor([r.temperature for r in rows], device=device)[:, None, None]
        logits = self.model(input_ids=ids, attention_mask=attention).logits[:, :-1].float() / temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        per_token = losses.per_token(self.loss_fn, logprobs, old, advantages, *self.clip)
        kl = losses.kl_estimate(logprobs.detach(), old)
        return (per_token * mask).sum(), (kl * mask).sum()


def _chunks(rows: list[Row]):
    chunk, tokens = [], 0
    for row in sorted(rows, key=lambda r: len(r.ids)):
        if chunk and tokens + len(row.ids) > MICRO_BATCH_TOKENS:
            yield chunk
            chunk, tokens = [], 0
        chunk.append(row)
        tokens += len(row.ids)
    if chunk:
        yield chunk
