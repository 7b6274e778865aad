"""AgentRFT's pure parts: pass@k against hand-computed values, the advantage estimators, rows built from
captured turns, the trajectory state machine, hyperparameter parsing."""

from __future__ import annotations

from math import comb

import pytest

from jobforge.workloads.agent_rft import advantages, hyperparameters, passk, rows
from jobforge.workloads.agent_rft.trajectories import FAILED, REWARD_RECEIVED, RuntimeApiError, Trajectories


def test_pass_at_k_matches_the_binomial_definition():
    for n, c, k in [(10, 3, 1), (10, 3, 4), (16, 0, 8), (16, 16, 8), (20, 5, 10), (8, 7, 2)]:
        assert passk.estimate(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    assert passk.estimate(5, 2, 1) == pytest.approx(2 / 5)  # pass@1 = c / n
    assert passk.estimate(5, 4, 2) == 1.0  # fewer than k failures
    # Two problems: 1 of 4 and 3 of 4 right; pass@2 = mean(1 - C(3,2)/C(4,2), 1 - 0) = mean(0.5, 1).
    assert passk.mean_pass_at_k([(4, 1), (4, 3)], [1, 2, 8]) == {1: pytest.approx(0.5), 2: pytest.approx(0.75)}


def test_group_based_rloo_and_passk_advantages():
    group = [advantages.Scored([r]) for r in (1.0, 0.0, 0.0, 1.0)]
    [[a, b, c, d]] = advantages.compute("group_based", [group], [[1, 1, 1, 1]])
    assert a[0] == pytest.approx(1.0, abs=1e-4) and b[0] == pytest.approx(-1.0, abs=1e-4) and d == a
    [[a, b, *_]] = advantages.compute("rloo", [group], [[2, 2, 2, 2]])
    assert a == pytest.approx([1 - 1 / 3] * 2) and b == pytest.approx([-2 / 3] * 2)
    [values] = advantages.compute("grpo_passk", [[advantages.Scored([r]) for r in (0.2, 0.9, 0.5)]], [[1, 1, 1]])
    assert values[0] == [0.0] and values[2] == [0.0] and values[1][0] > 0


def test_per_turn_and_monte_carlo_advantages_use_per_turn_rewards():
    group = [advantages.Scored([1.0, 0.0]), advantages.Scored([0.0, 0.0])]
    [[first, second]] = advantages.compute("group_based_per_turn", [group], [[2, 2]])
    assert first[0] > 0 > second[0] and first[1] == second[1] == 0.0
    [[first, _]] = advantages.compute("monte_carlo", [group], [[2, 2]])
    assert first == [1.0, 0.0]  # reward-to-go
    assert all(len(v) == 2 for g in advantages.compute("reinforce_pp", [group], [[2, 2]]) for v in g)
    for method in advantages.METHODS:
        assert len(advantages.compute(method, [group, group], [[2, 2], [2, 2]])) == 2


def test_rows_merge_only_on_exact_token_prefix_and_mask_non_model_tokens():
    first = rows.Turn([1, 2], [3], [-0.5], 1.0, 0)
    continued = rows.Turn([1, 2, 3, 9, 9], [4, 5], [-0.1, -0.2], 1.0, 0)
    broken = rows.Turn([1, 7, 3], [6], [-0.3], 1.0, 0)
    [row] = rows.build([first, continued], [0.5, 0.25])
    assert row.ids == [1, 2, 3, 9, 9, 4, 5] and row.mask == [0, 0, 1, 0, 0, 1, 1]
    assert row.old_logprobs == [0, 0, -0.5, 0, 0, -0.1, -0.2] and row.advantages == [0, 0, 0.5, 0, 0, 0.25, 0.25]
    assert len(rows.build([first, broken], [1.0, 1.0])) == 2


def test_trajectory_state_machine():
    store = Trajectories()
    trajectory = store.create(0, 0)
    trajectory.turns.append(rows.Turn([1], [2], [-1.0], 1.0, 0))
    with pytest.raises(RuntimeApiError) as caught:
        store.reward(trajectory.id, [1.0], None)
    assert caught.value.code == "ConflictException"
    store.complete(trajectory.id, "ready", "token")
    store.complete(trajectory.id, "ready", "token")  # idempotent
    with pytest.raises(RuntimeApiError, match="Cannot transition trajectory"):
        store.complete(trajectory.id, "failed", None)
    with pytest.raises(RuntimeApiError) as caught:
        store.reward(trajectory.id, [1.0, 1.0], None)
    assert caught.value.code == "ValidationException"
    store.reward(trajectory.id, [0.75], None)
    assert trajectory.state == REWARD_RECEIVED and trajectory.done.is_set() and trajectory.reward == 0.75
    failed = store.create(1, 0)
    store.complete(failed.id, "failed", None)
    assert failed.state == FAILED and failed.done.is_set()
    with pytest.raises(RuntimeApiError) as caught:
        store.get("unknown")
    assert caught.value.code == "ResourceNotFoundException"


def test_hyperparameters_defaults_ranges_and_aliases():
    values = hyperparameters.training({"num_training_steps": "20", "loss_fn": "cispo"})
    assert values["max_steps"] == 20 and values["loss_fn"] == "cispo" and values["global_batch_size"] == 128
    for bad in ({"global_batch_size": "48"}, {"clip_low_threshold": "1.5"}, {"temperature": "abc"},
                {"clip_low_threshold": "0.9", "clip_high_threshold": "1.0", "unknown": "1"}):
        with pytest.raises(hyperparameters.HyperParameterError):
            hyperparameters.training(bad)
    assert hyperparameters.evaluation({"pass_k_values": "[1, 4]"})["pass_k_values"] == [1, 4]
