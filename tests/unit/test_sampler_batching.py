"""The policy's batch sampler on a tiny random model: batched and joined rows sample exactly what each request
would alone, a request that arrives mid-generation joins the running batch instead of waiting for it to end,
finished rows leave it, and stored log-probabilities are what a full forward pass over the turn gives."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from jobforge.workloads.agent_rft import prefill  # noqa: E402
from jobforge.workloads.agent_rft.sampler import Batch, BatchSampler, SampleRequest, generate  # noqa: E402
from tiny_policy import build_policy, load  # noqa: E402

NO_STOP = frozenset()


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    folder = build_policy(tmp_path_factory.mktemp("policy"))
    model, tokenizer = load(folder, None, None)
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def prompts(policy):
    _, tokenizer = policy
    texts = ["the river runs", "north past the old city then east", "sea",
             "and back again under the bridge the river runs north"]
    return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


def greedy(prompt, tokens, on_token=None):
    return SampleRequest(prompt, tokens, 0.0, 1.0, NO_STOP, on_token=on_token)


def alone(policy, prompt, tokens):
    model, tokenizer = policy
    return generate(model, [greedy(prompt, tokens)], tokenizer.pad_token_id)[0]


def test_a_batch_of_prompts_of_different_lengths_samples_what_each_would_alone(policy, prompts):
    model, tokenizer = policy
    together = generate(model, [greedy(p, 3 + 4 * i) for i, p in enumerate(prompts)], tokenizer.pad_token_id)
    for i, (prompt, (ids, logprobs, reason)) in enumerate(zip(prompts, together)):
        solo_ids, solo_logprobs, _ = alone(policy, prompt, 3 + 4 * i)
        assert ids == solo_ids and len(ids) == 3 + 4 * i and reason == "length"
        assert logprobs == pytest.approx(solo_logprobs, abs=1e-4)


def test_a_request_arriving_mid_generation_joins_the_running_batch(policy, prompts):
    model, tokenizer = policy
    lock = threading.Lock()
    batch_sampler = BatchSampler(model, tokenizer.pad_token_id, lock, lambda: 3)
    late: list = []
    late_done_while_long_ran: list[bool] = []

    def on_long_token(_token):
        if not late:  # the long request has started decoding: now the late one comes
            late.append(batch_sampler.submit(greedy(prompts[2], 4)))
        late_done_while_long_ran.append(late[0].done())

    long = batch_sampler.submit(greedy(prompts[0], 60, on_token=on_long_token))
    long_answer, late_answer = long.result(timeout=120), late[0].result(timeout=120)
    batch_sampler.close()
    # The late request was answered while the long one was still decoding: it joined, it did not wait.
    assert any(late_done_while_long_ran) and batch_sampler.batches == 2
    assert late_answer.token_ids == alone(policy, prompts[2], 4)[0]
    assert long_answer.token_ids == alone(policy, prompts[0], 60)[0]
    assert late_answer.policy_version == long_answer.policy_version == 3
    assert late_answer.finish_reason == long_answer.finish_reason == "length"


def test_many_staggered_callers_get_what_each_would_alone(policy, prompts):
    model, tokenizer = policy
    batch_sampler = BatchSampler(model, tokenizer.pad_token_id, threading.Lock(), lambda: 0)
    submitted = []
    for i in range(12):
        prompt, tokens = prompts[i % 4], 2 + 3 * (i % 5)
        submitted.append((prompt, tokens, batch_sampler.submit(greedy(prompt, tokens))))
    answers = [(prompt, tokens, future.result(timeout=120)) for prompt, tokens, future in submitted]
    batch_sampler.close()
    for prompt, tokens, answer in answers:
        solo_ids, solo_logprobs, _ = alone(policy, prompt, tokens)
        assert answer.token_ids == solo_ids
        assert answer.logprobs == pytest.approx(solo_logprobs, abs=1e-4)


def test_stored_logprobs_of_joined_sampled_rows_match_a_full_forward_pass(policy, prompts):
    """What the trainer recomputes: log-softmax of the logits over prompt + completion, divided by the
    temperature, at each sampled token."""
    model, tokenizer = policy
    torch.manual_seed(1)
    batch = Batch(model, tokenizer.pad_token_id)
    requests = [SampleRequest(prompts[0], 9, 0.8, 1.0, NO_STOP)]
    with torch.inference_mode():
        finished = batch.add(requests, 0)
        for _ in range(3):
            finished += batch.step()
        joiners = [SampleRequest(p, 5, 1.3, 0.9, NO_STOP) for p in prompts[1:]]
        finished += batch.add(joiners, 0)
        while batch.rows:
            finished += batch.step()
    assert len(finished) == 4 and not batch.rows
    for row in finished:
        request = row.request
        ids = torch.tensor([request.prompt_ids + row.ids])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, len(request.prompt_ids) - 1:-1].float() / request.temperature
        expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(row.ids)[:, None]).squeeze(-1)
        assert row.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


def test_finished_rows_leave_the_batch_and_their_columns_go(policy, prompts):
    model, tokenizer = policy
    batch = Batch(model, tokenizer.pad_token_id)
    with torch.inference_mode():
        batch.add([greedy(prompts[3], 2), greedy(prompts[2], 6)], 0)  # the long prompt pads the short one
        width = batch.mask.shape[1]
        finished = batch.step()
    assert [row.ids for row in finished] == [alone(policy, prompts[3], 2)[0]]
    assert len(batch.rows) == 1 and batch.mask.shape == (1, len(prompts[2]) + 2) and width > len(prompts[2]) + 1
    assert all(layer.keys.shape[0] == 1 and layer.keys.shape[2] == batch.mask.shape[1] - 1
               for layer in batch.past.layers)


def test_a_cache_that_cannot_be_joined_makes_newcomers_wait(policy, prompts, monkeypatch):
    model, tokenizer = policy
    monkeypatch.setattr(prefill, "plain_cache", lambda past: False)
    batch_sampler = BatchSampler(model, tokenizer.pad_token_id, threading.Lock(), lambda: 0)
    late: list = []
    late_done_while_long_ran: list[bool] = []

    def on_long_token(_token):
        if not late:
            late.append(batch_sampler.submit(greedy(prompts[2], 4)))
        late_done_while_long_ran.append(late[0].done())

    long = batch_sampler.submit(greedy(prompts[0], 20, on_token=on_long_token))
    assert long.result(timeout=120).token_ids == alone(policy, prompts[0], 20)[0]
    assert late[0].result(timeout=120).token_ids == alone(policy, prompts[2], 4)[0]
    batch_sampler.close()
    assert not any(late_done_while_long_ran)


def test_a_prompt_the_model_cannot_take_fails_only_its_caller(policy, prompts):
    model, tokenizer = policy
    batch_sampler = BatchSampler(model, tokenizer.pad_token_id, threading.Lock(), lambda: 0)
    bad: list = []

    def on_long_token(_token):
        if not bad:
            bad.append(batch_sampler.submit(greedy([10 ** 6], 4)))  # no such token: the embedding fails

    long = batch_sampler.submit(greedy(prompts[0], 12, on_token=on_long_token))
    assert long.result(timeout=120).token_ids == alone(policy, prompts[0], 12)[0]
    with pytest.raises(IndexError):
        bad[0].result(timeout=120)
    after = batch_sampler.submit(greedy(prompts[1], 3)).result(timeout=120)
    batch_sampler.close()
    assert after.token_ids == alone(policy, prompts[1], 3)[0]
