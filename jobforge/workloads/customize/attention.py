"""Per-sequence attention over a packed row.

transformers isolates packed sequences by building a block-diagonal mask for
SDPA: its cost grows with the square of the whole row (16 sequences of 40
tokens attend over 640 × 640), and on CPU there is no variable-length kernel
like FlashAttention's. This attention function instead runs causal SDPA on
each sequence's slice, so the work is the sum of the squares of the sequence
lengths, with no mask to build. The slice bounds come in the ``packed_bounds``
forward argument (transformers passes unknown keyword arguments down to the
attention function); without them it is plain SDPA.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

NAME = "jobforge_packed"


def packed_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, packed_bounds=None, **kwargs):
    if packed_bounds is None:
        if attention_mask is None and query.shape[2] > 1 and kwargs.get("past_key_values") is None:
            return sdpa_attention_forward(module, query, key, value, None, dropout, scaling, **kwargs)
        raise RuntimeError(f"{NAME} attention is for packed training rows only; use sdpa elsewhere.")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    pieces = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            is_causal=True,
            scale=scaling,
        )
        for start, end in zip(packed_bounds[:-1], packed_bounds[1:])
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs):
    # Like FlashAttention's: no mask for an unpadded batch (``None`` when fully causal).
    return flash_attention_mask(*args, **kwargs)


AttentionInterface.register(NAME, packed_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, _no_mask)


def use_packed_attention(model) -> bool:
    """Switch a model that routes attention through transformers' interface; False if it cannot."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_supports_attention_backend", False):
        return False
    base.set_attn_implementation(NAME)
    return True


def use_sdpa(model) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.set_attn_implementation("sdpa")
