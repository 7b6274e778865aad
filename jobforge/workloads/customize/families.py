"""Model families: what Bedrock lets each base model do, and within which limits.

A registered base model is matched to a family by the prefix of its Bedrock
identifier (``meta.llama3-2-1b-instruct-v1:0`` → Llama 3.2). Identifiers that
match no Bedrock family (any Hugging Face model registered under a name of the
operator's choosing) get the permissive ``generic`` family.

Ranges and defaults are the ones in Bedrock's user guide (custom-models-hp and
the per-model pages); record and token limits are the documented ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FINE_TUNING = "FINE_TUNING"
CONTINUED_PRE_TRAINING = "CONTINUED_PRE_TRAINING"
DISTILLATION = "DISTILLATION"
CUSTOMIZATION_TYPES = (FINE_TUNING, CONTINUED_PRE_TRAINING, DISTILLATION)
# Configured in rftConfig rather than hyperParameters, and not among the catalog's ModelCustomization values.
REINFORCEMENT_FINE_TUNING = "REINFORCEMENT_FINE_TUNING"

# Record formats a family's fine-tuning data may use (see data.py).
PROMPT_COMPLETION = "prompt-completion"
MESSAGES = "messages"  # {"system": str, "messages": [{"role", "content": str}]}
CONVERSATION = "bedrock-conversation-2024"


@dataclass(frozen=True)
class Param:
    """One numeric hyperparameter: inclusive range and default (None: must be set)."""

    minimum: float
    maximum: float
    default: float | None
    integer: bool = False


@dataclass(frozen=True)
class ModelFamily:
    name: str
    prefixes: tuple[str, ...]
    customizations: tuple[str, ...]
    params: dict[str, Param]
    formats: tuple[str, ...]
    max_tokens: int = 4096
    min_records: int = 1
    max_train_records: int = 10_000
    max_validation_records: int = 1_000
    distillation_teacher: bool = False
    # Claude's learningRateMultiplier scales this unpublished base rate; we use
    # a rate that suits LoRA.
    base_learning_rate: float = 1e-4
    # Markers Bedrock's validator rejects in text (they break its prompt template).
    forbidden_substrings: tuple[str, ...] = ()
    extras: dict[str, Param] = field(default_factory=dict)
    # Distillation prompts: a single user turn (plus an optional golden assistant turn) for Anthropic and Meta
    # students; Nova students take multi-turn conversations.
    single_turn_prompts: bool = False
    # Meta's validator: the bedrock-conversation-2024 "system" array holds at most one element.
    max_system_blocks: int | None = None
    # Bedrock's RFT takes Nova 2 Lite and open-weight models (gpt-oss, Qwen3): none of the families above.
    reinforcement_fine_tuning: bool = False


def _titan_express_lite() -> dict[str, Param]:
    return {
        "epochCount": Param(1, 10, 5, integer=True),
        "batchSize": Param(1, 64, 1, integer=True),
        "learningRate": Param(0.0, 1.0, 1e-5),
        "learningRateWarmupSteps": Param(0, 250, 5, integer=True),
    }


def _early_stopping(threshold: float, patience: int) -> dict[str, Param]:
    return {
        "earlyStoppingThreshold": Param(0.0, 0.1, threshold),
        "earlyStoppingPatience": Param(1, 10, patience, integer=True),
    }


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        "titan-text-premier",
        ("amazon.titan-text-premier",),
        (FINE_TUNING,),
        {
            "epochCount": Param(1, 5, 2, integer=True),
            "batchSize": Param(1, 1, 1, integer=True),
            "learningRate": Param(1e-7, 1e-5, 1e-6),
            "learningRateWarmupSteps": Param(0, 20, 5, integer=True),
        },
        (PROMPT_COMPLETION,),
    ),
    ModelFamily(
        "titan-text",
        ("amazon.titan-text-lite", "amazon.titan-text-express", "amazon.titan-tg1"),
        (FINE_TUNING, CONTINUED_PRE_TRAINING),
        _titan_express_lite(),
        (PROMPT_COMPLETION,),
    ),
    ModelFamily(
        "nova",
        ("amazon.nova-micro", "amazon.nova-lite", "amazon.nova-pro", "amazon.nova-premier"),
        (FINE_TUNING, DISTILLATION),
        {
            "epochCount": Param(1, 5, 2, integer=True),
            # Not in Nova's table, but AWS's own Nova samples send batchSize "1" and Bedrock accepts it.
            "batchSize": Param(1, 1, 1, integer=True),
            "learningRate": Param(1e-6, 1e-4, 1e-5),
            "learningRateWarmupSteps": Param(0, 100, 10, integer=True),
        },
        (CONVERSATION,),
        min_records=8,
        max_train_records=20_000,
        max_validation_records=1_000,
        distillation_teacher=True,
        forbidden_substrings=(
            "System:", "SYSTEM:", "User:", "USER:", "Bot:", "BOT:", "Assistant:", "ASSISTANT:",
            "Thought:", "[EOS]", "<image>", "<video>",
        ),
    ),
    ModelFamily(
        "claude-3-haiku",
        ("anthropic.claude-3-haiku",),
        (FINE_TUNING, DISTILLATION),
        {
            "epochCount": Param(1, 10, 2, integer=True),
            "batchSize": Param(4, 256, 32, integer=True),
            "learningRateMultiplier": Param(0.1, 2.0, 1.0),
            **_early_stopping(0.001, 2),
        },
        (MESSAGES,),
        single_turn_prompts=True,
    ),
    ModelFamily(
        "claude",
        ("anthropic.claude",),
        (),
        {},
        (MESSAGES,),
        distillation_teacher=True,
        single_turn_prompts=True,
    ),
    ModelFamily(  # Command R and R+ are served (a chat body) but Bedrock customizes neither
        "cohere-command-r",
        ("cohere.command-r",),
        (),
        {},
        (MESSAGES,),
    ),
    ModelFamily(
        "cohere-command-light",
        ("cohere.command-light",),
        (FINE_TUNING,),
        {
            "epochCount": Param(1, 100, 1, integer=True),
            "batchSize": Param(8, 32, 8, integer=True),
            "learningRate": Param(5e-6, 0.1, 1e-5),
            "evalPercentage": Param(5, 50, 20),
            **_early_stopping(0.01, 6),
        },
        (PROMPT_COMPLETION,),
    ),
    ModelFamily(
        "cohere-command",
        ("cohere.command",),
        (FINE_TUNING,),
        {
            "epochCount": Param(1, 100, 1, integer=True),
            "batchSize": Param(8, 8, 8, integer=True),
            "learningRate": Param(5e-6, 0.1, 1e-5),
            "evalPercentage": Param(5, 50, 20),
            **_early_stopping(0.01, 6),
        },
        (PROMPT_COMPLETION,),
    ),
    ModelFamily(
        "llama3-2",
        ("meta.llama3-2",),
        (FINE_TUNING, DISTILLATION),
        {
            "epochCount": Param(1, 10, 5, integer=True),
            "batchSize": Param(1, 1, 1, integer=True),
            "learningRate": Param(5e-6, 0.1, 1e-4),
        },
        (CONVERSATION,),
        single_turn_prompts=True,
        max_system_blocks=1,
    ),
    ModelFamily(
        "llama3-1",
        ("meta.llama3-1", "meta.llama3-3"),
        (FINE_TUNING, DISTILLATION),
        {
            "epochCount": Param(1, 10, 5, integer=True),
            "batchSize": Param(1, 1, 1, integer=True),
            "learningRate": Param(5e-6, 0.1, 1e-4),
        },
        (PROMPT_COMPLETION,),
        distillation_teacher=True,
        single_turn_prompts=True,
        max_system_blocks=1,
    ),
    ModelFamily(
        "llama2",
        ("meta.llama2",),
        (FINE_TUNING,),
        {
            "epochCount": Param(1, 10, 5, integer=True),
            "batchSize": Param(1, 1, 1, integer=True),
            "learningRate": Param(5e-6, 0.1, 1e-4),
        },
        (PROMPT_COMPLETION,),
        single_turn_prompts=True,
        max_system_blocks=1,
    ),
)

GENERIC = ModelFamily(
    "generic",
    (),
    CUSTOMIZATION_TYPES,
    {
        "epochCount": Param(1, 100, 2, integer=True),
        "batchSize": Param(1, 256, 8, integer=True),
        "learningRate": Param(0.0, 1.0, 1e-4),
        "learningRateWarmupSteps": Param(0, 100_000, 0, integer=True),
        **_early_stopping(0.0, 2),
    },
    (PROMPT_COMPLETION, MESSAGES, CONVERSATION),
    max_tokens=8192,
    max_train_records=100_000,
    max_validation_records=10_000,
    distillation_teacher=True,
    reinforcement_fine_tuning=True,
)

# Accepted for every family; not Bedrock's, documented in __init__.
EXTRAS: dict[str, Param] = {
    "loraRank": Param(1, 256, 16, integer=True),
    "loraAlpha": Param(1, 1024, None, integer=True),  # default: 2 × loraRank
    "maxSequenceLength": Param(16, 131_072, None, integer=True),  # default: family max_tokens
    "gradientAccumulationSteps": Param(1, 1024, 1, integer=True),
    "checkpointInterval": Param(1, 1_000_000, 50, integer=True),
    "seed": Param(0, 2**31 - 1, 0, integer=True),
}
BOOLEAN_EXTRAS = {"fullFineTuning": False}

DISTILLATION_MAX_PROMPTS = 15_000
RFT_MIN_PROMPTS, RFT_MAX_PROMPTS = 100, 20_000
# Continued pre-training takes far larger files than fine-tuning.
CPT_MAX_TRAIN_RECORDS = 1_000_000


def on_demand_only(identifier: str) -> bool:
    """A Bedrock family's model id without its context-window variant (``amazon.nova-lite-v1:0``, not
    ``amazon.nova-lite-v1:0:300k``). Bedrock serves such an id on demand only: it customizes, and provisions
    throughput for, the variants alone, and refuses the plain id there as an invalid model identifier."""
    model_id = _model_id(identifier)
    return family_of(model_id) is not GENERIC and model_id.count(":") < 2


def _model_id(identifier: str) -> str:
    return identifier.rsplit("/", 1)[-1] if identifier.startswith("arn:") else identifier


def family_of(identifier: str) -> ModelFamily:
    """The family of a Bedrock model identifier or foundation-model ARN."""
    model_id = _model_id(identifier)
    for family in FAMILIES:
        if any(model_id.startswith(prefix) for prefix in family.prefixes):
            return family
    return GENERIC
