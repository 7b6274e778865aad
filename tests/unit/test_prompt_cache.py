"""The sampler keeps the prompts it has read: a prompt sent again joins the running batch without a forward
pass, and its rows sample what they would have from a fresh one (the same greedy tokens, log-probabilities of
a full forward pass). New weights make every kept prompt stale; the cache keeps the most recently used prompts
within its bytes; a model whose cache cannot be shared keeps none. Waiting requests join once the steps they
have waited cost what the join would."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from jobforge.workloads.agent_rft import prefill  # noqa: E402
from jobforge.workloads.agent_rft.prompt_cache import PromptCache  # noqa: E402
from jobforge.workloads.agent_rft.sampler import Batch, BatchSampler, Costs, SampleRequest, generate  # noqa: E402
from tiny_policy import build_policy, forward_calls, load  # noqa: E402

NO_STOP = frozenset()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy"))


@pytest.fixture
def policy(folder):
    model, tokenizer = load(folder)
    model.eval()
    return model, tokenizer


@pytest.fixture
def prompts(policy):
    _, tokenizer = policy
    return [tokenizer.encode(text, add_special_tokens=False)
            for text in ("the river runs north past the old city then east", "sea and back", "under the bridge")]


def run(batch: Batch, requests: list[SampleRequest], steps_between: int = 3, later=(), version: int = 0) -> list:
    """Start the batch with requests, decode a few steps, join the later requests, decode to the end."""
    with torch.inference_mode():
        finished = batch.add(requests, version)
        for _ in range(steps_between):
            if batch.rows:
                finished += batch.step()
        if later:
            finished += batch.add(list(later), version)
        while batch.rows:
            finished += batch.step()
    return finished


def test_a_prompt_read_before_joins_without_a_forward_pass(policy, prompts):
    model, tokenizer = policy
    greedy = lambda prompt, n: SampleRequest(prompt, n, 0.0, 1.0, NO_STOP)  # noqa: E731
    alone = {i: generate(model, [greedy(prompt, 12)], tokenizer.pad_token_id)[0] for i, prompt in enumerate(prompts)}
    known = PromptCache()
    batch = Batch(model, tokenizer.pad_token_id, known)
    calls = forward_calls(model)
    later = [greedy(prompts[0], 6), greedy(prompts[1], 6), greedy(prompts[0], 6)]
    finished = run(batch, [greedy(prompts[0], 12)], later=later)
    prefills = [call for call in calls if call[1] > 1]
    # The first prompt once, then only the new one of the join (the repeated first prompt came from the cache).
    assert prefills == [(1, len(prompts[0])), (1, len(prompts[1]))] and known.hits == 1
    assert len(known.entries) == 2
    for row in finished:
        expected = alone[prompts.index(row.request.prompt_ids)]
        assert row.ids == expected[0][:len(row.ids)]
        assert row.logprobs == pytest.approx(expected[1][:len(row.ids)], abs=1e-4)


def test_sampled_rows_of_a_kept_prompt_store_the_logprobs_of_a_full_forward_pass(policy, prompts):
    model, tokenizer = policy
    torch.manual_seed(3)
    batch = Batch(model, tokenizer.pad_token_id, PromptCache())
    later = [SampleRequest(prompts[0], 7, 1.3, 1.0, NO_STOP) for _ in range(3)]
    finished = run(batch, [SampleRequest(prompts[0], 9, 0.8, 1.0, NO_STOP), SampleRequest(prompts[2], 4, 1.0, 0.9,
                                                                                             NO_STOP)], later=later)
    assert batch.known.hits == 1 and len(finished) == 5
    for row in finished:
        request = row.request
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([request.prompt_ids + row.ids])).logits[
                0, len(request.prompt_ids) - 1:-1].float() / request.temperature
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(row.ids)[:, None]).squeeze(-1)
        assert row.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


def test_new_weights_make_the_kept_prompts_stale(policy, prompts):
    model, tokenizer = policy
    known = PromptCache()
    calls = forward_calls(model)
    run(Batch(model, tokenizer.pad_token_id, known), [SampleRequest(prompts[0], 2, 0.0, 1.0, NO_STOP)], version=4)
    run(Batch(model, tokenizer.pad_token_id, known), [SampleRequest(prompts[0], 2, 0.0, 1.0, NO_STOP)], version=4)
    run(Batch(model, tokenizer.pad_token_id, known), [SampleRequest(prompts[0], 2, 0.0, 1.0, NO_STOP)], version=5)
    assert [call for call in calls if call[1] > 1] == [(1, len(prompts[0]))] * 2 and known.hits == 1
    assert known.version == 5 and len(known.entries) == 1


def test_the_cache_keeps_the_most_recently_used_prompts_within_its_bytes():
    layers = [(torch.zeros(1, 2, 10, 4), torch.zeros(1, 2, 10, 4))]
    logits = torch.zeros(8)
    size = (2 * 2 * 10 * 4 + 8) * 4
    known = PromptCache(max_bytes=2 * size)
    for ids in ((1,), (2,)):
        known.put(ids, 0, layers, logits)
    assert known.get((1,), 0) is not None  # now the most recently used
    known.put((3,), 0, layers, logits)
    assert list(known.entries) == [(1,), (3,)] and known.size == 2 * size
    known.put((4,) * 40, 0, [(torch.zeros(1, 2, 100, 4),) * 2], logits)  # larger than the whole cache: not kept
    assert list(known.entries) == [(1,), (3,)]
    stored = known.get((1,), 0)
    assert stored.layers[0][0] is not layers[0][0]  # a copy: a batch's tensor is not held through a slice of it


def test_a_model_whose_cache_cannot_be_shared_keeps_no_prompts(policy, prompts, monkeypatch):
    model, tokenizer = policy
    monkeypatch.setattr(prefill, "plain_cache", lambda past: False)
    greedy = lambda prompt: SampleRequest(prompt, 4, 0.0, 1.0, NO_STOP)  # noqa: E731
    alone = generate(model, [greedy(prompts[1])], tokenizer.pad_token_id)[0]
    known = PromptCache()
    batch = Batch(model, tokenizer.pad_token_id, known)
    finished = run(batch, [greedy(prompts[1]), greedy(prompts[1])], steps_between=0)
    assert not known.entries and all(row.ids == alone[0] for row in finished)


def test_waiting_requests_join_once_their_wait_costs_what_the_join_would():
    costs = Costs()
    assert not costs.worth_joining(1000, 1)  # nothing measured yet: only the share and step rules apply
    costs.step(0.008)
    costs.join(0.002)
    # Joining 4 rows into 28 holds up 32 rows for 2 ms (64 row-ms); waiting costs 8 ms a waiting row a step.
    assert not costs.worth_joining(7, 32) and costs.worth_joining(8, 32)
    costs.join(0.012)  # a join that ran its prompts forward moves the average a tenth of the way
    assert costs.join_seconds == pytest.approx(0.003) and not costs.worth_joining(8, 32)


def test_a_sampler_keeps_the_prompts_of_its_batches_across_joins(policy, prompts):
    model, tokenizer = policy
    batch_sampler = BatchSampler(model, tokenizer.pad_token_id, threading.Lock(), lambda: 0)
    calls = forward_calls(model)
    first = batch_sampler.submit(SampleRequest(prompts[0], 3, 0.0, 1.0, NO_STOP)).result(timeout=60)
    again = batch_sampler.submit(SampleRequest(prompts[0], 3, 0.0, 1.0, NO_STOP)).result(timeout=60)
    batch_sampler.close()
    assert first.token_ids == again.token_ids and batch_sampler.known.hits == 1
    assert [call for call in calls if call[1] > 1] == [(1, len(prompts[0]))]
