"""The grader Lambda: the policy's answers scored in batches, in the format Bedrock documents.

Input, one invocation per batch of up to ``BATCH`` samples: a JSON list, each sample the training
record's own fields with ``messages`` ending in the generated assistant turn and an ``id`` unique to the
answer (the record's own ``id``, if it has one, stays in ``metadata``). The record's fields
(``reference_answer`` and any other) come twice, at the top level as the Nova guide shows them and under
``metadata`` as the open-weight guide does, so a grader written for either reads them::

    [{"id": "…", "messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}],
      "reference_answer": …, "metadata": {"reference_answer": …}}]

Output: a list with one ``{"id", "aggregate_reward_score", "metrics_list": [{"name", "value", "type"}]}``
per sample (``reward_components`` is read as ``metrics_list`` is); ``aggregate_reward_score`` is the
reward. An invocation that fails (the function's error, an answer that is not such a list, a sample
without a finite score) is retried ``retries`` times; then its samples go without a reward, and the error
says what the grader did wrong.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from jobforge.workloads.agent_rft.agents import AgentError, LambdaAgent

BATCH = 32  # samples per invocation
CONCURRENCY = 8  # invocations at once


@dataclass
class Grade:
    reward: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the grader's metrics_list, by name
    error: str | None = None  # why there is no reward


class GraderError(Exception):
    pass


def sample(record: dict, messages: list[dict], answer: str, sample_id: str) -> dict:
    """What the grader receives for one generated answer to ``record``."""
    fields = {k: v for k, v in record.items() if k != "messages"}
    return {**fields, "id": sample_id, "messages": [*messages, {"role": "assistant", "content": answer}],
            "metadata": fields}


class Grader:
    def __init__(self, function_arn: str, region: str, retries: int):
        self.function = LambdaAgent(function_arn, region)
        self.arn = function_arn
        self.retries = retries
        self.pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="grader")

    def grade(self, samples: list[dict]) -> list[Grade]:
        """A grade for each sample, in order."""
        batches = [samples[i:i + BATCH] for i in range(0, len(samples), BATCH)]
        return [grade for batch in self.pool.map(self._batch, batches) for grade in batch]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _batch(self, samples: list[dict]) -> list[Grade]:
        error = ""
        for _ in range(self.retries + 1):
            try:
                return read_answer(self.function.invoke(samples), [s["id"] for s in samples])
            except (AgentError, GraderError) as err:
                error = str(err)
        return [Grade(error=f"The grader {self.arn} failed: {error}")] * len(samples)


def read_answer(answer, ids: list[str]) -> list[Grade]:
    """The grades of the samples ``ids`` from the grader's answer; GraderError when it is not as documented."""
    if not isinstance(answer, list):
        raise GraderError("it must return a list of {\"id\", \"aggregate_reward_score\"} objects, one per sample; "
                          f"it returned {type(answer).__name__} {str(answer)[:200]}")
    by_id = {}
    for item in answer:
        if not isinstance(item, dict) or "id" not in item:
            raise GraderError(f"each item of its answer must be an object with the sample's \"id\"; got "
                              f"{str(item)[:200]}")
        score = item.get("aggregate_reward_score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise GraderError(f"sample {item['id']}: aggregate_reward_score must be a finite number; got {score!r}")
        by_id[str(item["id"])] = Grade(float(score), _metrics(item))
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise GraderError(f"its answer has no score for {len(missing)} of the {len(ids)} samples (ids such as "
                          f"{missing[0]})")
    return [by_id[i] for i in ids]


def _metrics(item: dict) -> dict[str, float]:
    listed = item.get("metrics_list", item.get("reward_components")) or []
    if not isinstance(listed, list):
        return {}
    return {str(m["name"]): float(m["value"]) for m in listed
            if isinstance(m, dict) and "name" in m and isinstance(m.get("value"), (int, float))
            and not isinstance(m.get("value"), bool) and math.isfinite(m["value"])}
