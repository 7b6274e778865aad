"""Training checkpoints in the job's checkpoint directory.

Each checkpoint is a ``step-<n>/`` folder; ``latest.json`` names the newest
complete one and is replaced atomically, so a process killed mid-save leaves
the previous checkpoint in force.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

LATEST = "latest.json"


def save(root: Path, step: int, tensors: dict, state: dict) -> Path:
    """Store ``tensors`` (torch objects) and ``state`` (JSON) as the checkpoint of ``step``."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"step-{step:08d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    torch.save(tensors, folder / "tensors.pt")
    (folder / "state.json").write_text(json.dumps(state))
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(json.dumps({"folder": folder.name}))
    os.replace(pointer, root / LATEST)
    for old in root.glob("step-*"):
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def load(root: Path) -> tuple[dict, dict] | None:
    """(tensors, state) of the newest complete checkpoint, or None."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    folder = root / json.loads(pointer.read_text())["folder"]
    tensors = torch.load(folder / "tensors.pt", map_location="cpu", weights_only=False)
    state = json.loads((folder / "state.json").read_text())
    return tensors, state
