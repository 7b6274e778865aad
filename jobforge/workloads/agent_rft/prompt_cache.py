"""The prompts a sampler has read, kept for the calls that send them again.

Agents repeat prompts: the rollouts of a prompt group begin with the same one, and their calls reach the sampler
at different times, so the running batch takes them in several joins, each of which ran the prompt forward
again. A join is a forward pass of its own, as costly on a small model as a decoding step of the whole batch.
The sampler keeps each prompt it prefilled: its KV cache and the logits of its last position, under the weights
they were computed with (new weights make every entry stale), up to ``MAX_BYTES`` of tensors, the least recently
used going first. A prompt found here joins without a forward pass.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

MAX_BYTES = 256 << 20


@dataclass
class Prompt:
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # keys and values of each layer, [1, heads, tokens, dim]
    logits: torch.Tensor  # [vocabulary]: the last position's
    size: int  # bytes

    @property
    def length(self) -> int:
        return self.layers[0][0].shape[-2]


class PromptCache:
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[int, ...], Prompt] = OrderedDict()
        self.size = 0
        self.version: int | None = None
        self.hits = 0  # prompts that started without a forward pass (for tests and metrics)

    def get(self, ids: tuple[int, ...], version: int) -> Prompt | None:
        self._weights(version)
        prompt = self.entries.get(ids)
        if prompt is not None:
            self.entries.move_to_end(ids)
            self.hits += 1
        return prompt

    def put(self, ids: tuple[int, ...], version: int, layers: list[tuple[torch.Tensor, torch.Tensor]],
            logits: torch.Tensor) -> Prompt:
        """Keep copies of a prompt's states (slices of a batch's would hold the whole batch in memory)."""
        self._weights(version)
        layers = [(keys.clone(), values.clone()) for keys, values in layers]
        size = sum(tensor.numel() * tensor.element_size() for tensor in (*(t for pair in layers for t in pair), logits))
        prompt = Prompt(layers, logits.clone(), size)
        if size > self.max_bytes:
            return prompt
        replaced = self.entries.pop(ids, None)
        self.size += size - (replaced.size if replaced else 0)
        self.entries[ids] = prompt
        while self.size > self.max_bytes:
            self.size -= self.entries.popitem(last=False)[1].size
        return prompt

    def _weights(self, version: int) -> None:
        if version != self.version:
            self.entries.clear()
            self.size = 0
            self.version = version
