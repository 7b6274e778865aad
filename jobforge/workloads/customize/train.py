"""The training loop: padding-free micro-batches, gradient accumulation,
warmup, per-epoch validation with early stopping, checkpoints and resume."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from jobforge.execution.context import JobContext, JobStopped

from . import checkpoint
from .metrics import row
from .model_io import load_trainable_state, trainable_state
from .packing import loss_sum, pack
from .prompting import Encoded


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_steps: int = 0
    grad_accum: int = 1
    checkpoint_interval: int = 50
    seed: int = 0
    early_stopping_threshold: float | None = None
    early_stopping_patience: int | None = None
    max_grad_norm: float = 1.0

    @classmethod
    def from_hyperparameters(cls, hp: dict) -> "TrainSettings":
        return cls(
            epochs=hp["epochCount"],
            batch_size=hp["batchSize"],
            learning_rate=hp["learningRate"],
            warmup_steps=hp["learningRateWarmupSteps"],
            grad_accum=hp["gradientAccumulationSteps"],
            checkpoint_interval=hp["checkpointInterval"],
            seed=hp["seed"],
            early_stopping_threshold=hp.get("earlyStoppingThreshold"),
            early_stopping_patience=hp.get("earlyStoppingPatience"),
        )


@dataclass
class Progress:
    """Everything besides tensors that a resumed run needs; stored as JSON."""

    fingerprint: str
    step: int = 0
    epoch: int = 0
    group_in_epoch: int = 0  # next optimizer step's index within the epoch
    tokens: int = 0
    train_seconds: float = 0.0
    training_rows: list = field(default_factory=list)
    validation_rows: list = field(default_factory=list)
    best_validation: float | None = None
    evaluations_without_improvement: int = 0
    early_stopped: bool = False


def train(
    ctx: JobContext,
    model,
    train_set: list[Encoded],
    valid_set: list[Encoded],
    settings: TrainSettings,
    device: torch.device,
    fingerprint: str,
) -> Progress:
    """Train ``model`` in place; return the final progress (metric rows included)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    groups_per_epoch = math.ceil(math.ceil(len(train_set) / settings.batch_size) / settings.grad_accum)
    total_steps = settings.epochs * groups_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_linear(settings.warmup_steps, total_steps))
    progress = _resume(ctx, model, optimizer, scheduler, fingerprint) or Progress(fingerprint)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )

    while progress.epoch < settings.epochs and not progress.early_stopped:
        epoch = progress.epoch
        micro_batches = _micro_batches(len(train_set), settings.batch_size, settings.seed + epoch)
        ctx.status("Training", f"Epoch {epoch + 1} of {settings.epochs}")
        for group_index in range(progress.group_in_epoch, groups_per_epoch):
            group = micro_batches[group_index * settings.grad_accum : (group_index + 1) * settings.grad_accum]
            started = time.perf_counter()
            loss = _optimizer_step(ctx, model, params, optimizer, scheduler, train_set, group, device, autocast, settings)
            progress.train_seconds += time.perf_counter() - started
            progress.step += 1
            progress.group_in_epoch = group_index + 1
            progress.tokens += sum(len(train_set[i].input_ids) for mb in group for i in mb)
            progress.training_rows.append(row(progress.step, epoch, loss))
            ctx.metric("training_loss", loss, progress.step)
            ctx.metric("learning_rate", scheduler.get_last_lr()[0], progress.step)
            ctx.metric("progress", progress.step / total_steps, progress.step)  # `jobforge jobs watch` draws it
            if progress.step % settings.checkpoint_interval == 0:
                _save(ctx, model, optimizer, scheduler, progress)
        progress.epoch, progress.group_in_epoch = epoch + 1, 0
        if valid_set:
            ctx.status("Training", f"Validating after epoch {epoch + 1}")
            _validate(ctx, model, valid_set, settings, device, autocast, progress)
        if progress.epoch < settings.epochs and not progress.early_stopped:
            _save(ctx, model, optimizer, scheduler, progress)
    return progress


def _optimizer_step(ctx, model, params, optimizer, scheduler, data, group, device, autocast, settings) -> float:
    batches = [pack([data[i] for i in mb]) for mb in group]
    # Normalize by the step's trained tokens so accumulation matches one big batch.
    targets = max(sum(len(b.targets) for b in batches), 1)
    total = 0.0
    for batch in batches:
        if ctx.should_stop():
            raise JobStopped()
        with autocast:
            summed = loss_sum(model, batch.to(device))
        (summed / targets).backward()
        total += summed.item()
    torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total / targets


@torch.no_grad()
def evaluate(model, data: list[Encoded], batch_size: int, device, autocast=None) -> float:
    """Mean per-token loss of ``data``."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = pack(data[start : start + batch_size])
        with autocast or nullcontext():
            total += loss_sum(model, batch.to(device)).item()
        count += len(batch.targets)
    model.train()
    return total / max(count, 1)


def _validate(ctx, model, valid_set, settings, device, autocast, progress: Progress) -> None:
    loss = evaluate(model, valid_set, settings.batch_size, device, autocast)
    progress.validation_rows.append(row(progress.step, progress.epoch - 1, loss))
    ctx.metric("validation_loss", loss, progress.step)
    if settings.early_stopping_patience is None:
        return
    threshold = settings.early_stopping_threshold or 0.0
    if progress.best_validation is None or loss < progress.best_validation - threshold:
        progress.best_validation = loss
        progress.evaluations_without_improvement = 0
        return
    progress.evaluations_without_improvement += 1
    if progress.evaluations_without_improvement >= settings.early_stopping_patience:
        progress.early_stopped = True
        ctx.event(
            f"Early stopping after epoch {progress.epoch}: validation loss did not improve by "
            f"{threshold} for {settings.early_stopping_patience} evaluations."
        )


def _micro_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    # Seeded per epoch, so a resumed run rebuilds the same order from (seed, epoch).
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _warmup_then_linear(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _save(ctx, model, optimizer, scheduler, progress: Progress) -> None:
    tensors = {
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
    }
    checkpoint.save(ctx.checkpoint_dir / "training", progress.step, tensors, progress.__dict__)
    ctx.event(f"Checkpoint saved at step {progress.step}")


def _resume(ctx, model, optimizer, scheduler, fingerprint: str) -> Progress | None:
    saved = checkpoint.load(ctx.checkpoint_dir / "training")
    if saved is None:
        return None
    tensors, state = saved
    if state.get("fingerprint") != fingerprint:
        ctx.event("Ignoring a checkpoint made for different data or hyperparameters")
        return None
    load_trainable_state(model, tensors["model"])
    optimizer.load_state_dict(tensors["optimizer"])
    scheduler.load_state_dict(tensors["scheduler"])
    torch.set_rng_state(tensors["rng"])
    progress = Progress(**state)
    ctx.event(f"Resumed from the checkpoint at step {progress.step}")
    return progress
