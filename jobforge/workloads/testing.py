"""A small real workload for exercising the engine: counts steps, reports
metrics and logs, checkpoints its position, and can fail or run long on request.

spec: {"steps": int, "sleep": float seconds per step, "fail_at": int|None, "fail_message": str}
"""

from __future__ import annotations

import json
import os
import time

from jobforge.execution.context import JobContext, JobStopped, WorkloadError


def run(ctx: JobContext, spec: dict) -> None:
    steps = int(spec.get("steps", 5))
    pause = float(spec.get("sleep", 0.1))
    state_file = ctx.checkpoint_dir / "position.json"
    start = json.loads(state_file.read_text())["next"] if state_file.exists() else 0
    if start:
        ctx.event(f"Resuming at step {start} (attempt {ctx.attempt})")
    ctx.status("Executing", f"{steps} steps")
    for step in range(start, steps):
        if ctx.should_stop():
            raise JobStopped()
        if spec.get("fail_at") == step:
            raise WorkloadError(spec.get("fail_message", f"Failed at step {step} as requested"))
        time.sleep(pause)
        ctx.metric("progress", (step + 1) / steps, step + 1)
        ctx.event(f"step {step + 1}/{steps}")
        staged = state_file.with_suffix(".tmp")  # a checkpoint is replaced whole, never seen half-written
        staged.write_text(json.dumps({"next": step + 1}))
        os.replace(staged, state_file)
    ctx.result({"steps": steps, "resumed_from": start, "attempt": ctx.attempt})
