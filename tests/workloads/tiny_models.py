"""Tiny causal LMs and tokenizers built on the spot (no hub access), and the workload tests' other helpers."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu red green blue yellow north south "
    "east west river mountain ocean forest city village one two three four five six seven eight nine ten"
).split()


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def build_tokenizer(path: Path, vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(500) + [f"<|user|> <|assistant|> <|system|> {w}:" for w in WORDS], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.save_pretrained(path)
    return fast


def build_model(path: Path, kind: str = "llama", vocab_size: int = 512, seed: int = 0, hidden: int = 64):
    """A random-weight model saved in Hugging Face format, with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    tokenizer = build_tokenizer(path, vocab_size)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )
    else:
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=hidden,
            n_layer=2,
            n_head=4,
            n_positions=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for record in records:
            handle.write(record if isinstance(record, str) else json.dumps(record))
            handle.write("\n")
    return path


def prompt_completion_records(n: int, seed: int = 0) -> list[dict]:
    """A learnable task: the completion repeats the prompt's first two words."""
    rows = []
    for text in corpus(n, seed):
        words = text.split()
        rows.append({"prompt": f"{text} ->", "completion": " " + " ".join(words[:2])})
    return rows


def make_ctx(root: Path, attempt: int = 1, cpus: int = 2):
    from jobforge.execution.context import LocalJobContext

    return LocalJobContext(
        s3_root=root / "s3",
        work_dir=root / f"work-{attempt}",
        checkpoint_dir=root / "checkpoints",
        attempt=attempt,
        resources={"cpus": cpus, "memory_mb": 4096, "gpus": 0},
    )


def make_spec(base: Path, customization: str = "FINE_TUNING", identifier: str = "test.tiny-llama-v1", **extra) -> dict:
    spec = {
        "jobId": "abcdef123456",
        "customizationType": customization,
        "baseModel": {"identifier": identifier, "path": str(base)},
        "trainingDataConfig": {"s3Uri": "s3://data/train.jsonl"},
        "outputDataConfig": {"s3Uri": "s3://data/output"},
        "hyperParameters": {"epochCount": "2", "batchSize": "8", "learningRate": "0.003", "fullFineTuning": "true"},
        "outputModelUri": "s3://models/custom/abcdef123456/",
    }
    spec.update(extra)
    return spec


def losses(ctx, name: str = "training_loss") -> list[float]:
    return [m["value"] for m in ctx.metrics if m["name"] == name]
