"""The nine advantage estimators of ``advantage_method``, over the trajectories of one training step.

Input: the step's groups (the trajectories of one prompt), each trajectory as its per-turn rewards
(one value when the agent reported a trajectory reward) and its completion length in tokens. Output,
in the same nesting: one advantage per turn of each trajectory (the same value for every turn of the
trajectory-level methods). The trajectory's reward is the mean of its per-turn rewards.

Definitions follow verl's estimators of the same names:

- ``monte_carlo``: the reward-to-go of each turn (the sum of its own and later turns' rewards), no baseline;
- ``group_based`` (GRPO): (r − mean of the group) / (std of the group + ε);
- ``group_based_per_turn``: the same per turn position, over the group's trajectories that reached it;
- ``rloo``: r − the mean of the group's other trajectories;
- ``reinforce_pp`` (REINFORCE++): the reward-to-go, whitened over the whole step;
- ``reinforce_pp_baseline``: r − the group mean, then whitened over the whole step;
- ``opo``: r − the group's length-weighted mean reward (the optimal baseline of OPO);
- ``grpo_passk``: only the group's best trajectory learns, from (best − second best) / (std + ε);
- ``gpg``: α (r − the group mean), with α = trajectories in the step / those with a non-zero reward.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

EPSILON = 1e-6
METHODS = ("monte_carlo", "group_based", "group_based_per_turn", "rloo", "reinforce_pp", "reinforce_pp_baseline",
           "opo", "grpo_passk", "gpg")


@dataclass(frozen=True)
class Scored:
    rewards: list[float]  # per turn, or one for the whole trajectory
    length: int = 1  # completion tokens, for opo

    @property
    def reward(self) -> float:
        return sum(self.rewards) / len(self.rewards)


def _std(values: list[float]) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _to_go(rewards: list[float]) -> list[float]:
    out, total = [], 0.0
    for reward in reversed(rewards):
        total += reward
        out.append(total)
    return out[::-1]


def _whiten(groups: list[list[list[float]]]) -> list[list[list[float]]]:
    flat = [a for group in groups for turns in group for a in turns]
    mean, std = _mean(flat), _std(flat)
    return [[[(a - mean) / (std + EPSILON) for a in turns] for turns in group] for group in groups]


def compute(method: str, groups: list[list[Scored]], turns: list[list[int]]) -> list[list[list[float]]]:
    """Per-turn advantages; ``turns[g][i]`` is how many turns trajectory i of group g has."""
    if method not in METHODS:
        raise ValueError(f"unknown advantage method {method!r}")
    if method in ("monte_carlo", "reinforce_pp"):
        out = [[_spread(_to_go(t.rewards), n) for t, n in zip(group, counts)] for group, counts in zip(groups, turns)]
        return _whiten(out) if method == "reinforce_pp" else out
    if method == "group_based_per_turn":
        return [_per_turn(group, counts) for group, counts in zip(groups, turns)]
    total = sum(len(g) for g in groups)
    rewarded = sum(1 for g in groups for t in g if t.reward != 0)
    out = []
    for group, counts in zip(groups, turns):
        rewards = [t.reward for t in group]
        values = _trajectory_level(method, group, rewards, total, rewarded)
        out.append([[v] * n for v, n in zip(values, counts)])
    return _whiten(out) if method == "reinforce_pp_baseline" else out


def _trajectory_level(method: str, group: list[Scored], rewards: list[float], total: int,
                      rewarded: int) -> list[float]:
    mean, std = _mean(rewards), _std(rewards)
    if method == "group_based":
        return [(r - mean) / (std + EPSILON) for r in rewards]
    if method == "rloo":
        n = len(rewards)
        return [r - (sum(rewards) - r) / (n - 1) if n > 1 else 0.0 for r in rewards]
    if method == "reinforce_pp_baseline":
        return [r - mean for r in rewards]
    if method == "opo":
        weight = sum(t.length for t in group)
        baseline = sum(t.length * r for t, r in zip(group, rewards)) / weight if weight else mean
        return [r - baseline for r in rewards]
    if method == "grpo_passk":
        if len(rewards) < 2:
            return [0.0] * len(rewards)
        order = sorted(range(len(rewards)), key=lambda i: rewards[i], reverse=True)
        out = [0.0] * len(rewards)
        out[order[0]] = (rewards[order[0]] - rewards[order[1]]) / (std + EPSILON)
        return out
    if method == "gpg":
        alpha = total / max(1, rewarded)
        return [alpha * (r - mean) for r in rewards]
    raise ValueError(f"unknown advantage method {method!r}")


def _per_turn(group: list[Scored], counts: list[int]) -> list[list[float]]:
    """Normalise each turn position's rewards within the group; a trajectory-level reward stands for every turn."""
    rewards = [t.rewards if len(t.rewards) == n else [t.reward] * n for t, n in zip(group, counts)]
    out = [[0.0] * n for n in counts]
    for position in range(max(counts, default=0)):
        present = [i for i, r in enumerate(rewards) if position < len(r)]
        values = [rewards[i][position] for i in present]
        mean, std = _mean(values), _std(values)
        for i in present:
            out[i][position] = (rewards[i][position] - mean) / (std + EPSILON)
    return out


def _spread(values: list[float], turns: int) -> list[float]:
    """Per-turn values for a trajectory of ``turns`` turns: as given, or one trajectory value for each turn."""
    return values if len(values) == turns else [values[0]] * turns
