"""Hyperparameter validation and per-family customization support.

Pure Python (no torch) so the Bedrock API handler can call it synchronously
in CreateModelCustomizationJob and ListFoundationModels.
"""

from __future__ import annotations

import math

from .families import (
    BOOLEAN_EXTRAS,
    CONTINUED_PRE_TRAINING,
    CUSTOMIZATION_TYPES,
    EXTRAS,
    REINFORCEMENT_FINE_TUNING,
    Param,
    family_of,
)

# rftConfig.hyperParameters: jobforge's defaults (AWS publishes an example request, not defaults). The
# ranges are the API's own (RFTHyperParameters), checked with the request; the token limits default to the
# base model's context (the job works them out: ``rft_token_limits``).
RFT_DEFAULTS = {"epochCount": 1, "batchSize": 64, "learningRate": 1e-5, "trainingSamplePerPrompt": 8,
                "evalInterval": 10, "maxPromptLength": None, "inferenceMaxTokens": None, "reasoningEffort": None}
# Accepted in an RFT job's hyperParameters: jobforge's own, as for the other types.
RFT_EXTRAS = ("loraRank", "loraAlpha", "seed")
RFT_DEFAULT_MAX_TOKENS = 4096


def customization_support(identifier: str) -> dict:
    """What a base model supports, for ListFoundationModels / GetFoundationModel.

    Returns ``{"family", "customizationsSupported": [...],
    "distillationTeacher": bool, "hyperParameters": {name: {"min", "max",
    "default"}}, "maxTokens": int}``.
    """
    family = family_of(identifier)
    params = {**family.params, **EXTRAS}
    return {
        "family": family.name,
        "customizationsSupported": list(family.customizations),
        "distillationTeacher": family.distillation_teacher,
        "hyperParameters": {
            name: {"min": p.minimum, "max": p.maximum, "default": p.default} for name, p in params.items()
        },
        "maxTokens": family.max_tokens,
    }


def validate_hyperparameters(identifier: str, customization_type: str, hyper_parameters: dict | None) -> dict:
    """Parse Bedrock's string hyperparameters and apply the family's ranges and defaults.

    Returns the normalized values: every Bedrock name of the family plus the
    extras (``loraRank``, ``loraAlpha``, ``maxSequenceLength``,
    ``fullFineTuning``, ``gradientAccumulationSteps``, ``checkpointInterval``,
    ``seed``), numbers as int/float, and ``learningRate`` always present
    (Claude's ``learningRateMultiplier`` resolved against the family's base
    rate). Raises ``ValueError`` with an AWS-style message on an unsupported
    customization type, an unknown key, an unparsable or out-of-range value.
    """
    family = family_of(identifier)
    if customization_type not in CUSTOMIZATION_TYPES:
        raise ValueError(f"Customization type {customization_type} is not supported.")
    if customization_type not in family.customizations:
        supported = ", ".join(family.customizations) or "none"
        raise ValueError(
            f"The base model {identifier} does not support customization type {customization_type}. "
            f"Supported customization types: {supported}."
        )
    given = dict(hyper_parameters or {})
    params: dict[str, Param] = {**family.params, **EXTRAS}
    unknown = sorted(set(given) - set(params) - set(BOOLEAN_EXTRAS))
    if unknown:
        raise ValueError(
            f"The hyperparameter(s) {', '.join(unknown)} are not supported for base model {identifier}. "
            f"Supported hyperparameters: {', '.join(sorted(set(params) | set(BOOLEAN_EXTRAS)))}."
        )

    values: dict = {}
    for name, param in params.items():
        if name in given:
            values[name] = _parse(name, given[name], param)
        elif param.default is not None:
            values[name] = param.default
    for name, default in BOOLEAN_EXTRAS.items():
        values[name] = _parse_bool(name, given[name]) if name in given else default

    if "learningRateMultiplier" in values:
        values["learningRate"] = family.base_learning_rate * values["learningRateMultiplier"]
    values.setdefault("learningRateWarmupSteps", 0)
    values.setdefault("batchSize", 1)
    values.setdefault("loraAlpha", 2 * values["loraRank"])
    values.setdefault("maxSequenceLength", family.max_tokens)
    if values["maxSequenceLength"] > family.max_tokens:
        raise ValueError(
            f"Hyperparameter maxSequenceLength value {values['maxSequenceLength']} exceeds the maximum "
            f"of {family.max_tokens} tokens for base model {identifier}."
        )
    if customization_type == CONTINUED_PRE_TRAINING:
        values.pop("evalPercentage", None)
    return values


def validate_rft_hyperparameters(identifier: str, rft_config: dict, hyper_parameters: dict | None) -> dict:
    """rftConfig.hyperParameters with jobforge's defaults, plus the extras of ``hyperParameters``.

    Raises ``ValueError`` for a base model RFT does not take, a token limit below 1, or a key of
    ``hyperParameters`` other than the extras (the training settings belong in rftConfig).
    """
    if not family_of(identifier).reinforcement_fine_tuning:
        raise ValueError(
            f"The base model {identifier} does not support customization type {REINFORCEMENT_FINE_TUNING}. "
            "Reinforcement fine-tuning takes Amazon Nova 2 Lite and open-weight models."
        )
    given = dict((rft_config or {}).get("hyperParameters") or {})
    for name in ("maxPromptLength", "inferenceMaxTokens"):
        if name in given and given[name] < 1:
            raise ValueError(f"rftConfig.hyperParameters.{name} must be a positive number of tokens, got {given[name]}.")
    extras = dict(hyper_parameters or {})
    unknown = sorted(set(extras) - set(RFT_EXTRAS))
    if unknown:
        raise ValueError(
            f"The hyperparameter(s) {', '.join(unknown)} are not supported for {REINFORCEMENT_FINE_TUNING} jobs: "
            f"set the training in customizationConfig.rftConfig.hyperParameters. hyperParameters takes "
            f"{', '.join(RFT_EXTRAS)}."
        )
    values = {**RFT_DEFAULTS, **given}
    for name in RFT_EXTRAS:
        param = EXTRAS[name]
        if name in extras:
            values[name] = _parse(name, extras[name], param)
        elif param.default is not None:
            values[name] = param.default
    values.setdefault("loraAlpha", 2 * values["loraRank"])
    return values


def rft_token_limits(values: dict, context: int) -> tuple[int, int]:
    """(maxPromptLength, inferenceMaxTokens) within the base model's context of ``context`` tokens; what
    is not set takes the room the other leaves (generation first up to ``RFT_DEFAULT_MAX_TOKENS``, at most
    half the context when neither is set). ``ValueError`` when the two do not fit together."""
    prompt, answer = values.get("maxPromptLength"), values.get("inferenceMaxTokens")
    if answer is None:
        answer = min(RFT_DEFAULT_MAX_TOKENS, context - prompt if prompt is not None else context // 2)
    if prompt is None:
        prompt = context - answer
    if prompt < 1 or answer < 1 or prompt + answer > context:
        raise ValueError(
            f"rftConfig.hyperParameters: maxPromptLength ({prompt}) plus inferenceMaxTokens ({answer}) must fit in "
            f"the base model's context of {context} tokens."
        )
    return prompt, answer


def _parse(name: str, raw, param: Param):
    text = str(raw).strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"Hyperparameter {name} must be a number, got '{raw}'.") from None
    if not math.isfinite(number):
        raise ValueError(f"Hyperparameter {name} must be a finite number, got '{raw}'.")
    if param.integer and not number.is_integer():
        raise ValueError(f"Hyperparameter {name} must be an integer, got '{raw}'.")
    if not param.minimum <= number <= param.maximum:
        raise ValueError(
            f"Hyperparameter {name} value {text} is out of range. "
            f"Valid range: [{_fmt(param.minimum)}, {_fmt(param.maximum)}]."
        )
    return int(number) if param.integer else number


def _parse_bool(name: str, raw) -> bool:
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"Hyperparameter {name} must be 'true' or 'false', got '{raw}'.")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
