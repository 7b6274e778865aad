"""Running many token sequences forward at once to start from them, each distinct sequence once.

A prompt group's rollouts all begin with the same prompt, and in an agent's conversation it is usually the
long part (instructions, tools, history). The sampler prefills a batch of prompts, and the trainer the
leading contexts of a chunk of rows, through ``prefill``: the distinct sequences run forward, left-padded,
and the KV cache is repeated for each sequence that shares one (an index, whose backward sums the gradients of
the copies). Only caches made of plain full-attention layers can be repeated that way; a model with another
kind (sliding windows, recurrent state) runs every sequence, and is remembered so as not to try again.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

_unshareable: weakref.WeakSet = weakref.WeakSet()  # models whose caches cannot be repeated


@dataclass
class Prefilled:
    logits: torch.Tensor  # [sequences, vocabulary]: each sequence's last position
    cache: object  # the model's cache, one row per sequence
    mask: torch.Tensor  # [sequences, positions]: the cache's attention mask (left padding is 0)
    plain: bool  # whether the cache is made of plain full-attention layers only


def prefill(model, sequences: list[list[int]], pad_id: int) -> Prefilled:
    distinct: dict[tuple[int, ...], int] = {}
    which = [distinct.setdefault(tuple(sequence), len(distinct)) for sequence in sequences]
    share = len(distinct) < len(sequences) and model not in _unshareable
    logits, cache, mask = _forward(model, list(distinct) if share else sequences, pad_id)
    plain = plain_cache(cache)
    if share and not plain:
        _unshareable.add(model)
        logits, cache, mask = _forward(model, sequences, pad_id)
    elif share:
        select = torch.tensor(which, device=mask.device)
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys.index_select(0, select), layer.values.index_select(0, select)
        logits, mask = logits.index_select(0, select), mask.index_select(0, select)
    return Prefilled(logits, cache, mask, plain)


def _forward(model, sequences, pad_id: int):
    device = next(model.parameters()).device
    longest = max(len(sequence) for sequence in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for index, sequence in enumerate(sequences):  # left-padded: every sequence ends where its row goes on
        if sequence:
            ids[index, longest - len(sequence):] = torch.tensor(sequence, device=device)
            mask[index, longest - len(sequence):] = 1
    output = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                   use_cache=True, logits_to_keep=1)
    return output.logits[:, -1, :], output.past_key_values, mask


def plain_cache(past) -> bool:
    """Whether every layer of the cache is a plain DynamicLayer (keys and values [batch, heads, positions, dim],
    full attention): the kind whose rows can be repeated, dropped and joined."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return False
    layers = getattr(past, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)
