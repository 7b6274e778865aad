"""Fine-tuning throughput: jobforge's trainer vs TRL's SFTTrainer, same run.

Same tiny Llama (random weights), same byte-level BPE tokenizer trained here,
same prompt/completion data, LoRA r=16 on every linear projection,
completion-only loss, batch 16, max length 128, AdamW with linear decay,
gradient clipping 1.0, one epoch of 150 steps. Each trainer runs in its own
process (so peak memory is its own); tokens/s counts real tokens only.
CPU timings need an otherwise idle machine: with more busy threads than
cores, OpenMP threads wait on preempted peers and every number collapses.

    python bench/finetune.py [--steps 150] [--threads 2] [--device cpu|cuda] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BATCH, MAX_LEN, LR, SEED = 16, 128, 2e-3, 0
TEMPLATES = (
    ("Question: what does {a} mean for {b}?", "It means {c} {d} when {e} is {f}."),
    ("Translate {a} {b} {c} into the other tongue.", "{d} {e} {f} {a}"),
    ("Summarize: {a} {b} {c} {d} {e} {f} {a} {c}.", "{b} {d} {f}."),
    ("List three words related to {a}.", "{b}, {c}, {d}, and perhaps {e} or {f}."),
)


def pseudo_words(n: int, rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def make_data(n: int) -> list[dict]:
    rng = random.Random(SEED)
    words = pseudo_words(6000, rng)
    rows = []
    for _ in range(n):
        prompt, completion = rng.choice(TEMPLATES)
        fill = {k: " ".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for k in "abcdef"}
        rows.append({"prompt": prompt.format(**fill), "completion": " " + completion.format(**fill)})
    return rows


def prepare(root: Path, samples: int) -> None:
    """Tokenizer, model and data, shared by both trainers."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast
    from transformers.utils import logging

    logging.disable_progress_bar()
    rows = make_data(samples * 2)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048, special_tokens=["<unk>", "<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator((r["prompt"] + r["completion"] for r in rows), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tokenizer.save_pretrained(root / "model")
    # Both trainers must see every sample whole: keep those within MAX_LEN.
    fitting = [r for r in rows if len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) + 1 <= MAX_LEN]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fitting[:samples]))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_LEN,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "model")


def run_jobforge(root: Path, device: str) -> dict:
    import torch

    from jobforge.execution.context import LocalJobContext
    from jobforge.workloads.customize.data import load_records
    from jobforge.workloads.customize.families import GENERIC
    from jobforge.workloads.customize.model_io import load_for_training, load_tokenizer, quiet_transformers
    from jobforge.workloads.customize.prompting import encode
    from jobforge.workloads.customize.train import TrainSettings, train

    quiet_transformers()
    tokenizer = load_tokenizer(root / "model")
    records = load_records(root / "train.jsonl", "train.jsonl", "FINE_TUNING", GENERIC)
    data = [encode(tokenizer, r, False) for r in records]
    model = load_for_training(root / "model", torch.device(device), full=False, lora_rank=16, lora_alpha=32)
    ctx = LocalJobContext(s3_root=root / "s3", work_dir=root / "work", checkpoint_dir=root / "ckpt-jobforge")
    settings = TrainSettings(epochs=1, batch_size=BATCH, learning_rate=LR, checkpoint_interval=10**9, seed=SEED)
    started = time.perf_counter()
    progress = train(ctx, model, data, [], settings, torch.device(device), fingerprint="bench")
    seconds = time.perf_counter() - started
    rows = progress.training_rows
    return {"steps": progress.step, "tokens": progress.tokens, "seconds": seconds, "first_loss": rows[0][2], "last_loss": rows[-1][2]}


def run_trl(root: Path, device: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.utils import logging
    from trl import SFTConfig, SFTTrainer

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32, attn_implementation="sdpa")
    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    config = SFTConfig(
        output_dir=str(root / "trl-out"),
        per_device_train_batch_size=BATCH,
        max_length=MAX_LEN,
        learning_rate=LR,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        seed=SEED,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[Losses()],
    )
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    return {"steps": output.global_step, "tokens": tokens, "seconds": seconds, "first_loss": losses[0], "last_loss": losses[-1]}


def child(which: str, root: Path, threads: int, device: str) -> None:
    import torch

    torch.set_num_threads(threads)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stats = (run_jobforge if which == "jobforge" else run_trl)(root, device)
    stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        stats["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(stats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="runs per trainer; the best is reported")
    parser.add_argument("--child", choices=("jobforge", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root, args.threads, args.device)
        return

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare(root, args.steps * BATCH)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        results: dict[str, dict] = {}
        # Alternate the trainers and keep each one's best run, so a burst of
        # load from other processes does not decide the ratio.
        for _ in range(args.repeats):
            for which in ("trl", "jobforge"):
                cmd = [sys.executable, __file__, "--child", which, "--root", str(root), "--threads", str(args.threads), "--device", args.device]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{which} failed:\n{out.stderr[-4000:]}")
                run = json.loads(out.stdout.strip().splitlines()[-1])
                if which not in results or run["seconds"] < results[which]["seconds"]:
                    results[which] = run

    print(f"device={args.device} threads={args.threads} batch={BATCH} max_length={MAX_LEN} LoRA r=16, best of {args.repeats}")
    print(f"{'trainer':<10}{'steps':>6}{'tokens':>9}{'seconds':>9}{'tok/s':>9}{'peak RSS MB':>13}{'loss first→last':>20}")
    for name, r in results.items():
        r["tok_s"] = r["tokens"] / r["seconds"]
        print(
            f"{name:<10}{r['steps']:>6}{r['tokens']:>9}{r['seconds']:>9.1f}{r['tok_s']:>9.0f}"
            f"{r['peak_rss_mb']:>13.0f}{r['first_loss']:>11.3f} → {r['last_loss']:.3f}"
            + (f"  peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else "")
        )
    print(f"throughput ratio jobforge/TRL: {results['jobforge']['tok_s'] / results['trl']['tok_s']:.2f}x")


if __name__ == "__main__":
    main()
