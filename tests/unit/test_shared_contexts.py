"""A prompt group's shared context is run forward once, in sampling and in training, and nothing else changes:
the sampler prefills each distinct prompt once and its rows sample what each would alone; the trainer's loss
and gradients with shared contexts are those of running every row whole (multi-turn rows, rows of their own,
several temperatures), and a model whose cache cannot be shared trains on whole rows. An idle sampler starts as
soon as every open trajectory's call waits, and a repeated prompt is rendered and tokenised once."""

from __future__ import annotations

import json
import random
import threading

import pytest

torch = pytest.importorskip("torch")

from jobforge.workloads.agent_rft import prefill, sampler  # noqa: E402
from jobforge.workloads.agent_rft.policy_server import Policy  # noqa: E402
from jobforge.workloads.agent_rft.rows import Turn, build  # noqa: E402
from jobforge.workloads.agent_rft.sampler import Batch, SampleRequest, generate  # noqa: E402
from jobforge.workloads.agent_rft.trajectories import Trajectories  # noqa: E402
from jobforge.workloads.agent_rft.trainer import Trainer, _chunks  # noqa: E402
from tiny_policy import WORDS, build_policy, forward_calls, load  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy"))


@pytest.fixture
def policy(folder):
    model, tokenizer = load(folder)
    with torch.no_grad():  # a LoRA adapter that already moved, so that its gradients are not trivially shaped
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    return model, tokenizer


def rows_of_groups(tokenizer) -> list:
    rng = random.Random(3)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    words = lambda n: encode(" ".join(rng.choice(WORDS) for _ in range(n)))  # noqa: E731
    turns = []
    for size, temperature in ((4, 1.0), (3, 0.7), (1, 1.0)):  # two groups and a row of its own
        prompt = words(30)
        for _ in range(size):
            completion = words(rng.randrange(1, 6))
            first = Turn(prompt, completion, [rng.uniform(-3, -0.1) for _ in completion], temperature, 0)
            turns.append([first])
    # A multi-turn rollout: its second turn continues the first, then an observation, then the model again.
    second_prompt = turns[0][0].prompt_ids + turns[0][0].completion_ids + words(4)
    reply = words(3)
    turns[0].append(Turn(second_prompt, reply, [rng.uniform(-3, -0.1) for _ in reply], 1.0, 0))
    return [row for rollout in turns for row in build(rollout, [rng.uniform(-1, 1) for _ in rollout])]


def loss_and_gradients(model, tokenizer, rows, share: bool):
    trainer = Trainer(model, None, "ppo", 0.2, 0.28, tokenizer.pad_token_id, threading.Lock())
    trainer.share_contexts = share
    model.zero_grad(set_to_none=True)
    loss, kl = trainer._forward(rows)
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return float(loss), float(kl), gradients


def test_training_on_shared_contexts_gives_the_loss_and_gradients_of_whole_rows(policy):
    model, tokenizer = policy
    model.train()
    rows = rows_of_groups(tokenizer)
    calls = forward_calls(model)
    whole = loss_and_gradients(model, tokenizer, rows, share=False)
    assert calls == [(len(rows), max(len(r.ids) for r in rows))]
    calls.clear()
    shared = loss_and_gradients(model, tokenizer, rows, share=True)
    # One pass over the three distinct contexts, one over every row's remainder.
    assert len(calls) == 2 and calls[0][0] == 3 and calls[1][0] == len(rows)
    assert calls[1][1] < 12 < calls[0][1]
    assert shared[0] == pytest.approx(whole[0], rel=1e-4, abs=1e-5)
    assert shared[1] == pytest.approx(whole[1], rel=1e-4, abs=1e-6)
    assert whole[2].keys() == shared[2].keys() and whole[2]
    for name, gradient in whole[2].items():
        torch.testing.assert_close(shared[2][name], gradient, rtol=1e-3, atol=1e-6)
    assert any(gradient.abs().sum() > 0 for gradient in whole[2].values())


def test_a_model_whose_cache_cannot_be_shared_trains_on_whole_rows(policy, monkeypatch):
    model, tokenizer = policy
    model.train()
    rows = rows_of_groups(tokenizer)
    whole = loss_and_gradients(model, tokenizer, rows, share=False)
    monkeypatch.setattr(prefill, "plain_cache", lambda past: False)
    trainer = Trainer(model, None, "ppo", 0.2, 0.28, tokenizer.pad_token_id, threading.Lock())
    model.zero_grad(set_to_none=True)
    loss, _ = trainer._forward(rows)
    assert not trainer.share_contexts and float(loss) == pytest.approx(whole[0], rel=1e-5)


def test_chunks_keep_a_group_together_and_count_its_context_once(policy, monkeypatch):
    _, tokenizer = policy
    rows = rows_of_groups(tokenizer)
    monkeypatch.setattr("jobforge.workloads.agent_rft.trainer.MICRO_BATCH_TOKENS", 60)
    chunks = list(_chunks(rows))
    assert sorted(map(id, (row for chunk in chunks for row in chunk))) == sorted(map(id, rows))
    # Each context is about 30 tokens and each remainder a few: a group of four fits in one 60-token chunk.
    contexts = [{tuple(row.ids[:20]) for row in chunk} for chunk in chunks]
    assert all(len(found) == 1 for found in contexts) and len(chunks) == 3


def test_the_sampler_prefills_each_distinct_prompt_once(policy):
    model, tokenizer = policy
    model.eval()
    prompts = [tokenizer.encode(text, add_special_tokens=False)
               for text in ("the river runs north past the old city", "sea and back again")]
    greedy = lambda prompt: SampleRequest(prompt, 5, 0.0, 1.0, frozenset())  # noqa: E731
    alone = [generate(model, [greedy(prompt)], tokenizer.pad_token_id)[0] for prompt in prompts]
    calls = forward_calls(model)
    together = generate(model, [greedy(prompts[i % 2]) for i in range(6)], tokenizer.pad_token_id)
    assert calls[0] == (2, len(prompts[0])) and all(batch == 6 for batch, _ in calls[1:])
    for i, (ids, logprobs, _) in enumerate(together):
        assert ids == alone[i % 2][0] and logprobs == pytest.approx(alone[i % 2][1], abs=1e-4)


def test_sampled_rows_of_a_shared_prompt_differ_and_store_their_own_logprobs(policy):
    model, tokenizer = policy
    model.eval()
    prompt = tokenizer.encode("the river runs north past the old city", add_special_tokens=False)
    torch.manual_seed(5)
    batch = Batch(model, tokenizer.pad_token_id)
    with torch.inference_mode():
        finished = batch.add([SampleRequest(prompt, 8, 1.2, 1.0, frozenset()) for _ in range(6)], 0)
        while batch.rows:
            finished += batch.step()
    assert len({tuple(row.ids) for row in finished}) > 1
    for row in finished:
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt + row.ids])).logits[0, len(prompt) - 1:-1] / 1.2
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(row.ids)[:, None]).squeeze(-1)
        assert row.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


def test_open_trajectories_are_counted_as_they_change():
    trajectories = Trajectories()
    made = [trajectories.create(0, 0) for _ in range(4)]
    assert trajectories.open() == 4
    trajectories.complete(made[0].id, "ready", None)
    trajectories.reward(made[0].id, [1.0], None)
    trajectories.complete(made[1].id, "failed", None)
    trajectories.fail(made[1], "again")  # already failed: no change
    trajectories.fail(made[2], "the agent timed out")
    assert trajectories.open() == 1
    trajectories.forget(made)
    trajectories.fail(made[3], "after it was forgotten")
    assert trajectories.open() == 0


def test_an_idle_sampler_starts_once_every_open_trajectory_waits(policy, monkeypatch):
    """Its gather would wait for more arrivals for seconds; with both callers there it starts at once."""
    model, tokenizer = policy
    model.eval()
    monkeypatch.setattr(sampler, "ARRIVAL_GAP", 30.0)
    monkeypatch.setattr(sampler, "GATHER_LIMIT", 30.0)
    prompt = tokenizer.encode("the river runs north", add_special_tokens=False)
    batch_sampler = sampler.BatchSampler(model, tokenizer.pad_token_id, threading.Lock(), lambda: 0, lambda: 2)
    answers = [batch_sampler.submit(SampleRequest(prompt, 3, 1.0, 1.0, frozenset())) for _ in range(2)]
    assert all(len(answer.result(timeout=10).token_ids) == 3 for answer in answers)
    assert batch_sampler.batches == 1
    batch_sampler.close()


def test_a_repeated_prompt_is_rendered_and_tokenised_once(policy):
    _, tokenizer = policy
    calls = []
    counting = type("Counting", (), {
        "eos_token_id": tokenizer.eos_token_id,
        "apply_chat_template": lambda self, *a, **k: calls.append("render") or tokenizer.apply_chat_template(*a, **k),
        "__call__": lambda self, *a, **k: calls.append("encode") or tokenizer(*a, **k)})()
    policy_ = Policy(counting, None, "m", 512, 1.0, 1.0, 16)
    body = {"messages": [{"role": "user", "content": "the river runs north"}]}
    first = policy_.encode(policy_.render(body))
    second = policy_.encode(policy_.render(json.loads(json.dumps(body))))
    assert first == second == tokenizer(tokenizer.apply_chat_template(body["messages"], tokenize=False,
                                                                      add_generation_prompt=True),
                                        add_special_tokens=False)["input_ids"]
    assert calls == ["render", "encode"]
    first.append(0)  # a caller's list is its own
    assert policy_.encode(policy_.render(body)) == second
    policy_.render({"messages": [{"role": "user", "content": "and back again"}]})
    assert calls == ["render", "encode", "render"]
    huge = {"messages": [{"role": "user", "content": "sea " * 20000}]}  # past what is kept: rendered each time
    assert policy_.render(huge) == policy_.render(huge) and calls.count("render") == 4
