"""Load a Hugging Face model for training, and export the trained result."""

from __future__ import annotations

from pathlib import Path

import torch

from .attention import use_packed_attention, use_sdpa


def quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def pick_device(resources: dict) -> torch.device:
    if resources.get("gpus") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """The device as the job's log names it: "cuda:0 (NVIDIA H200)" or "cpu"."""
    if device.type != "cuda":
        return device.type
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def load_for_training(model_dir: Path, device: torch.device, full: bool, lora_rank: int, lora_alpha: int):
    """The model ready to train: LoRA on every linear projection, or all weights.

    Attention runs per packed sequence (attention.py) where the architecture
    allows it, else through SDPA's block-diagonal mask.

    On a GPU a LoRA base is held in bf16 (adapters stay fp32); full
    fine-tuning keeps fp32 master weights. Compute runs under bf16 autocast
    there, and in fp32 on CPU.
    """
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device.type == "cuda" and not full else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    model.to(device)
    use_packed_attention(model)
    if full:
        model.train()
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    model.train()
    return model


def trainable_state(model) -> dict:
    """What a checkpoint must hold: the adapter, or every weight for full fine-tuning."""
    if is_lora(model):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)
    return model.state_dict()


def load_trainable_state(model, state: dict) -> None:
    if is_lora(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
    else:
        model.load_state_dict(state)


def is_lora(model) -> bool:
    return hasattr(model, "peft_config")


def export(model, tokenizer, out_dir: Path) -> tuple[Path, Path | None]:
    """Write merged weights (safetensors, with the tokenizer) and, for LoRA, the adapter.

    Returns (merged_dir, adapter_dir or None). The model is unusable for
    training afterwards (adapters are merged in place).
    """
    merged_dir, adapter_dir = out_dir / "model", None
    use_sdpa(model)
    if is_lora(model):
        adapter_dir = out_dir / "adapter"
        model.save_pretrained(adapter_dir, safe_serialization=True)
        tokenizer.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    model.config.use_cache = True
    model.save_pretrained(merged_dir, safe_serialization=True)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir, adapter_dir
