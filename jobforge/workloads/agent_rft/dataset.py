"""Prompt datasets: Parquet, JSONL, JSON (an array of objects) or CSV with a header row.

The prompt column is ``prompt`` if there is one, else the first column; its value goes to the agent
as-is (a value that is not a string is sent as its JSON text). The whole row goes along as the
``instance`` of the RolloutRequest.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from jobforge.execution.context import JobContext, WorkloadError

SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def load(ctx: JobContext, channel: str, uri: str) -> list[tuple[str, dict]]:
    """(prompt, row) for every row of the files at uri (an object, or every object under a prefix)."""
    target = Path(ctx.work_dir) / "data" / channel
    if uri.endswith("/"):
        ctx.download(uri, target)
    else:
        ctx.download(uri, target, key_prefix=True)
    files = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise WorkloadError(f"The {channel} channel ({uri}) has no {', '.join(SUFFIXES)} file.")
    rows: list[tuple[str, dict]] = []
    for file in files:
        rows += [(_prompt(row), row) for row in _rows(file, uri)]
    if not rows:
        raise WorkloadError(f"The {channel} channel ({uri}) has no rows.")
    return rows


def _rows(file: Path, uri: str) -> list[dict]:
    suffix = file.suffix.lower()
    try:
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise WorkloadError("Parquet datasets need pyarrow in the job's environment; give the data as "
                                    "JSONL, JSON or CSV.") from None
            return pq.read_table(file).to_pylist()
        text = file.read_text(encoding="utf-8")
        if suffix == ".jsonl":
            rows = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError as err:
                        raise WorkloadError(f"{uri}: {file.name} line {number} is not JSON: {err}") from None
        elif suffix == ".json":
            rows = json.loads(text)
            if not isinstance(rows, list):
                raise WorkloadError(f"{uri}: {file.name} must hold a JSON array of objects.")
        else:
            rows = list(csv.DictReader(text.splitlines()))
    except (ValueError, UnicodeDecodeError) as err:
        raise WorkloadError(f"{uri}: {file.name} cannot be read: {err}") from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row:
            raise WorkloadError(f"{uri}: {file.name} row {number} is not an object with a prompt column.")
    return rows


def _prompt(row: dict) -> str:
    value = row["prompt"] if "prompt" in row else next(iter(row.values()))
    return value if isinstance(value, str) else json.dumps(value)
