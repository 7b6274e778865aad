"""Running many token sequences forward at once to start from them, each distinct sequence once.

A prompt group's rollouts all begin with the same prompt, and in an agent's conversation it is usually the
long part (instructions, tools, history). The sampler prefills a batch of prompts, and the trainer the
leading contexts of a chunk of rows, through ``prefill``: the distinct sequences run forward, left-padded,
and the KV cache is repeated for each sequence that shares one (an index, whose backward sums the gradients of
the copies). Only caches made of plain full-attention layers can be repeated that way; a model with another
kind (sliding windows, recurrent state) runs every sequence, and is remembered so as not to try again.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .prompt_cache import Prompt, PromptCache

_unshareable: weakref.WeakSet = weakref.WeakSet()  # models whose caches cannot be repeated


@functools.cache
def _cache_name() -> str:
    """What transformers calls the KV cache in a forward pass's arguments and output: ``cache`` in the releases
    that renamed ``past_key_values`` (the old name warns, and is gone from 5.40), ``past_key_values`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def with_cache(past) -> dict:
    """The forward pass's keyword argument that passes it ``past``."""
    return {_cache_name(): past}


def cache_of(output):
    """The KV cache a forward pass returned."""
    return getattr(output, _cache_name())


@dataclass
class Prefilled:
    logits: torch.Tensor  # [sequences, vocabulary]: each sequence's last position
    cache: object  # the model's cache, one row per sequence
    mask: torch.Tensor  # [sequences, positions]: the cache's attention mask (left padding is 0)
    plain: bool  # whether the cache is made of plain full-attention layers only


def prefill(model, sequences: list[list[int]], pad_id: int, known: PromptCache | None = None,
            version: int = 0) -> Prefilled:
    """The sequences run forward, each distinct one once; with ``known``, those it holds under the weights of
    ``version`` not at all, and the others are kept there."""
    distinct: dict[tuple[int, ...], int] = {}
    which = [distinct.setdefault(tuple(sequence), len(distinct)) for sequence in sequences]
    if known is not None and model not in _unshareable:
        prompts = [known.get(ids, version) for ids in distinct]
        if any(prompt is not None for prompt in prompts):
            return _prefill_known(model, sequences, list(distinct), prompts, which, pad_id, known, version)
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
    if known is not None and plain:
        first: dict[int, int] = {}  # each distinct sequence's first row
        for row, index in enumerate(which):
            first.setdefault(index, row)
        _keep(known, version, list(distinct), [first[index] for index in range(len(distinct))], logits, cache, mask)
    return Prefilled(logits, cache, mask, plain)


def _prefill_known(model, sequences, distinct: list[tuple[int, ...]], prompts: list[Prompt | None],
                   which: list[int], pad_id: int, known: PromptCache, version: int) -> Prefilled:
    """Some of the distinct sequences are known: the others run forward and are kept, and the rows are put
    together from the kept states."""
    missing = [ids for ids, prompt in zip(distinct, prompts) if prompt is None]
    if missing:
        logits, cache, mask = _forward(model, missing, pad_id)
        if not plain_cache(cache):
            _unshareable.add(model)
            return prefill(model, sequences, pad_id)
        fresh = dict(zip(missing, _keep(known, version, missing, range(len(missing)), logits, cache, mask)))
        prompts = [prompt if prompt is not None else fresh[ids] for ids, prompt in zip(distinct, prompts)]
    return _assemble(prompts, which)


def _keep(known: PromptCache, version: int, sequences: list[tuple[int, ...]], rows, logits, cache,
          mask) -> list[Prompt]:
    """Each sequence's states (its row of the cache, without the left padding) and last logits, kept."""
    width = mask.shape[1]
    return [known.put(ids, version, [(layer.keys[row:row + 1, :, width - len(ids):],
                                      layer.values[row:row + 1, :, width - len(ids):]) for layer in cache.layers],
                      logits[row]) for ids, row in zip(sequences, rows)]


def _assemble(prompts: list[Prompt], which: list[int]) -> Prefilled:
    """One row for each sequence, from the states of the distinct prompts, left-padded to the longest."""
    from transformers.cache_utils import DynamicCache

    width = max(prompt.length for prompt in prompts)
    device = prompts[0].logits.device
    select = torch.tensor(which, device=device)

    def rows(layer: int, part: int) -> torch.Tensor:  # part 0: keys, 1: values
        return torch.cat([left_pad(prompt.layers[layer][part], width) for prompt in prompts]).index_select(0, select)

    layers = [(rows(layer, 0), rows(layer, 1)) for layer in range(len(prompts[0].layers))]
    positions = torch.arange(width, device=device)
    mask = torch.stack([(positions >= width - prompt.length).long() for prompt in prompts]).index_select(0, select)
    logits = torch.stack([prompt.logits for prompt in prompts]).index_select(0, select)
    return Prefilled(logits, DynamicCache(ddp_cache_data=layers), mask, True)


def left_pad(states: torch.Tensor, length: int) -> torch.Tensor:
    """Cache states [batch, heads, positions, dim] padded with zeros on the left to ``length`` positions."""
    return F.pad(states, (0, 0, length - states.shape[-2], 0))


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
    return output.logits[:, -1, :], cache_of(output), mask


def plain_cache(past) -> bool:
    """Whether every layer of the cache is a plain DynamicLayer (keys and values [batch, heads, positions, dim],
    full attention): the kind whose rows can be repeated, dropped and joined."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return False
    layers = getattr(past, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)
