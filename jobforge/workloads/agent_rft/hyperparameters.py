"""AgentRFT and AgentRFTEvaluation hyperparameters: names, defaults, ranges, parsed from the document's strings.

The documented recipe (SageMaker's "Recipe defaults") comes first; jobforge's own knobs, which AWS does
not document (the learning rate, the LoRA shape, the rollout limits), follow with defaults that suit
real models. Every value arrives as a string (the SDK sends only the keys the user changed); a value
out of its range or a name nobody knows is refused at CreateJob, naming the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable

from jobforge.workloads.agent_rft.advantages import METHODS


LOSSES = ("importance_sampling", "ppo", "cispo")  # losses.py defines each


class HyperParameterError(ValueError):
    pass


@dataclass(frozen=True)
class Param:
    default: object
    parse: Callable[[str], object]
    rule: str  # what the value must be, for the error message
    check: Callable[[object], bool] = lambda _: True
    # The same rule as data, for the recipe's override file the SageMaker SDK reads (``spec``).
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    options: tuple | None = None


def _integer(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _ks(text: str) -> list[int]:
    values = json.loads(text) if text.strip().startswith("[") else [v for v in text.split(",") if v.strip()]
    return [_integer(str(v)) for v in values]


def between(low, high, integer=False) -> Param:
    return Param(None, _integer if integer else float, f"a{'n integer' if integer else ' number'} from {low} to {high}",
                 lambda v: low <= v <= high, "integer" if integer else "float", low, high)


def _with(param: Param, default) -> Param:
    return dataclasses.replace(param, default=default)


def _choice(default: str, options: tuple[str, ...]) -> Param:
    return Param(default, str, f"one of {', '.join(options)}", lambda v: v in options, "string", options=options)


PASS_K = Param([1, 2, 4, 8, 16, 32], _ks, "a list of positive integers such as [1, 4, 8]",
               lambda v: bool(v) and all(k >= 1 for k in v), "string")

TRAINING = {
    "global_batch_size": Param(128, _integer, "one of 32, 64, 128", lambda v: v in (32, 64, 128), "integer",
                               options=(32, 64, 128)),
    "group_size": _with(between(2, 32, integer=True), 8),
    "advantage_method": _choice("group_based", METHODS),
    "loss_fn": _choice("ppo", LOSSES),
    "clip_low_threshold": _with(between(0, 1), 0.8),
    "clip_high_threshold": _with(between(1, 10), 1.2),
    "temperature": _with(between(0, 2), 1.0),
    "sampling_top_p": Param(1.0, float, "a number above 0 and at most 1", lambda v: 0 < v <= 1, high=1),
    "sampling_max_tokens": _with(between(512, 8192, integer=True), 4096),
    "val_sampling_max_tokens": _with(between(512, 8192, integer=True), 4096),
    "pass_k_values": PASS_K,
    "success_threshold": Param(1.0, float, "a number"),
    "max_epochs": _with(between(1, 30, integer=True), 1),
    "max_steps": _with(between(1, 1000, integer=True), 50),
    # jobforge's own
    "learning_rate": _with(between(1e-7, 1e-1), 1e-5),
    "lora_rank": _with(between(1, 256, integer=True), 16),
    "lora_alpha": _with(between(1, 512, integer=True), 32),
    "max_concurrent_rollouts": _with(between(1, 256, integer=True), 32),
    "rollout_timeout_seconds": _with(between(1, 86400), 900),
    "max_staleness": _with(between(0, 16, integer=True), 1),
    "checkpoint_interval": _with(between(1, 1000, integer=True), 10),  # steps between registered checkpoints
    "agent_retries": _with(between(0, 10, integer=True), 2),
    "seed": _with(between(0, 2 ** 31 - 1, integer=True), 0),
}
# Names the SDK's notebooks use for the same knobs.
TRAINING_ALIASES = {"num_training_steps": "max_steps", "top_p": "sampling_top_p", "max_tokens": "sampling_max_tokens"}

EVALUATION = {
    "eval_group_size": _with(between(1, 256, integer=True), 8),
    "sampling_temperature": _with(between(0, 2), 1.0),
    "top_p": TRAINING["sampling_top_p"],
    "max_tokens": _with(between(1, 8192, integer=True), 4096),
    "pass_k_values": _with(PASS_K, [1, 2, 4, 8]),
    "success_threshold": TRAINING["success_threshold"],
    "max_concurrent_rollouts": TRAINING["max_concurrent_rollouts"],
    "rollout_timeout_seconds": TRAINING["rollout_timeout_seconds"],
    "agent_retries": TRAINING["agent_retries"],
    "seed": TRAINING["seed"],
}
EVALUATION_ALIASES = {"temperature": "sampling_temperature", "sampling_top_p": "top_p"}


def spec(table: dict[str, Param]) -> dict:
    """The table as SageMaker's recipe override files state it: {name: {default, type, min, max, enum}}
    (a list default, pass_k_values, as the text the job parses)."""
    out = {}
    for name, param in table.items():
        entry = {"default": json.dumps(param.default) if isinstance(param.default, list) else param.default,
                 "type": param.kind}
        if param.low is not None:
            entry["min"] = param.low
        if param.high is not None:
            entry["max"] = param.high
        if param.options is not None:
            entry["enum"] = list(param.options)
        out[name] = entry
    return out


def parse(given: dict, table: dict[str, Param], aliases: dict[str, str], where: str) -> dict:
    """Every parameter of the table: the given value parsed and checked, or its default."""
    values = {name: param.default for name, param in table.items()}
    for key, text in given.items():
        name = aliases.get(key, key)
        param = table.get(name)
        if param is None:
            raise HyperParameterError(f"{where}.{key} is not a hyperparameter of this job; known: "
                                      f"{', '.join(sorted(table))}.")
        try:
            value = param.parse(str(text))
        except (ValueError, TypeError):
            value = None
        if value is None or not param.check(value):
            raise HyperParameterError(f"{where}.{key} must be {param.rule}; got {text!r}.")
        values[name] = value
    return values


def training(given: dict) -> dict:
    values = parse(given, TRAINING, TRAINING_ALIASES, "TrainingConfig.HyperParameters")
    if values["clip_low_threshold"] > values["clip_high_threshold"]:
        raise HyperParameterError("TrainingConfig.HyperParameters.clip_low_threshold must not exceed "
                                  "clip_high_threshold.")
    return values


def evaluation(given: dict) -> dict:
    return parse(given, EVALUATION, EVALUATION_ALIASES, "EvaluationConfig.HyperParameters")
