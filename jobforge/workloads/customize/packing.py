"""Padding-free batches: a micro-batch's sequences concatenated into one row.

Written by hand because the library collators either pad every sequence to
the longest (wasted compute: ~half the tokens on typical chat data) or return
labels for every position, so the LM head runs over prompt tokens whose
logits are thrown away. Here the row carries ``position_ids`` that restart at
0 for each sequence (transformers then builds a block-diagonal attention mask,
so sequences never see each other, as long as ``attention_mask`` is None and
no KV cache is used), and ``keep`` lists only the positions whose next token
is trained on, passed to the model as ``logits_to_keep``. With the
per-sequence attention of attention.py, the row's sequence bounds go along
and no mask is built at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import NAME as PACKED
from .prompting import Encoded


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # [1, total_tokens]
    position_ids: torch.Tensor  # [1, total_tokens]
    keep: torch.Tensor  # [n_targets] positions whose logits predict a trained token
    targets: torch.Tensor  # [n_targets] the token each kept position must predict
    tokens: int  # real tokens in the row
    bounds: tuple[int, ...]  # start of each sequence, then the row's end

    def to(self, device) -> "PackedBatch":
        return PackedBatch(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.keep.to(device),
            self.targets.to(device),
            self.tokens,
            self.bounds,
        )


def pack(examples: list[Encoded]) -> PackedBatch:
    ids: list[int] = []
    positions: list[int] = []
    keep: list[int] = []
    targets: list[int] = []
    bounds = [0]
    for example in examples:
        offset = len(ids)
        bounds.append(offset + len(example.input_ids))
        ids.extend(example.input_ids)
        positions.extend(range(len(example.input_ids)))
        # Position i predicts token i+1; the first token of a sequence is never a target.
        for i in range(1, len(example.input_ids)):
            if example.labels[i]:
                keep.append(offset + i - 1)
                targets.append(example.input_ids[i])
    return PackedBatch(
        torch.tensor([ids], dtype=torch.long),
        torch.tensor([positions], dtype=torch.long),
        torch.tensor(keep, dtype=torch.long),
        torch.tensor(targets, dtype=torch.long),
        len(ids),
        tuple(bounds),
    )


def loss_sum(model, batch: PackedBatch) -> torch.Tensor:
    """Summed cross-entropy over the batch's trained tokens."""
    extra = {"packed_bounds": batch.bounds} if model.config._attn_implementation == PACKED else {}
    out = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        logits_to_keep=batch.keep,
        use_cache=False,
        **extra,
    )
    logits = out.logits.reshape(-1, out.logits.shape[-1]).float()
    return torch.nn.functional.cross_entropy(logits, batch.targets, reduction="sum")
