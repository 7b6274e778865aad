"""Training rows from captured turns, never re-tokenised.

A trajectory's turns become rows: a turn whose prompt ids start with the current row's ids (the previous
prompt and completion, exactly) extends that row; otherwise it starts a new one. In a row only the
tokens the policy sampled are trained on (mask 1); the tokens between turns (tool results, the user's or
environment's messages, template glue) are context (mask 0). Each trained token carries the sampling
log-probability stored at Sample time and the advantage of its turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Turn:
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    temperature: float
    policy_version: int


@dataclass
class Row:
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    old_logprobs: list[float] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)
    temperature: float = 1.0

    def add(self, ids: list[int], trained: bool, logprobs: list[float] | None = None, advantage: float = 0.0):
        self.ids += ids
        self.mask += [int(trained)] * len(ids)
        self.old_logprobs += logprobs if logprobs is not None else [0.0] * len(ids)
        self.advantages += [advantage if trained else 0.0] * len(ids)


def build(turns: list[Turn], advantages: list[float]) -> list[Row]:
    rows: list[Row] = []
    for turn, advantage in zip(turns, advantages):
        row = rows[-1] if rows else None
        continues = (row is not None and row.temperature == turn.temperature
                     and turn.prompt_ids[:len(row.ids)] == row.ids)
        if not continues:
            row = Row(temperature=turn.temperature)
            rows.append(row)
        row.add(turn.prompt_ids[len(row.ids):], trained=False)
        row.add(turn.completion_ids, trained=True, logprobs=turn.logprobs, advantage=advantage)
    return rows
