"""The tiny random policy the sampler's and trainer's unit tests run on, built on the spot, and a record of the
forward passes a model makes."""

from __future__ import annotations

import random
from pathlib import Path

from jobforge import tinylm

WORDS = "the river runs north past old city then east to sea and back again under bridge".split()


def build_policy(folder: Path) -> Path:
    """A tiny causal LM and its tokenizer, trained on random sentences of ``WORDS``, saved under folder/model."""
    rng = random.Random(0)
    return tinylm.build(folder / "model", [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(300)])


def load(folder: Path, lora_rank: int | None = 8, lora_alpha: int | None = 16):
    """(model, tokenizer): the policy built under ``folder``, loaded as a job loads it (with a fresh LoRA adapter
    of ``lora_rank``, none for None), its random parts seeded."""
    import torch

    from jobforge.workloads.agent_rft.session import load_policy

    torch.manual_seed(0)
    return load_policy(folder, torch.device("cpu"), lora_rank, lora_alpha)


def forward_calls(model) -> list[tuple[int, int]]:
    """The (batch, positions) of every forward pass of the model from now on."""
    calls: list[tuple[int, int]] = []
    model.register_forward_pre_hook(lambda _m, _a, kwargs: calls.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    return calls
