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
    Param,
    family_of,
)


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
