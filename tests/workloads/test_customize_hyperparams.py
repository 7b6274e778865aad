import subprocess
import sys

import pytest

from jobforge.workloads.customize import customization_support, validate_hyperparameters


def test_defaults_per_family():
    llama = validate_hyperparameters("meta.llama3-2-1b-instruct-v1:0", "FINE_TUNING", {})
    assert (llama["epochCount"], llama["batchSize"], llama["learningRate"]) == (5, 1, 1e-4)
    assert llama["loraRank"] == 16 and llama["loraAlpha"] == 32 and llama["fullFineTuning"] is False
    titan = validate_hyperparameters("amazon.titan-text-express-v1", "CONTINUED_PRE_TRAINING", {})
    assert titan["learningRateWarmupSteps"] == 5 and titan["maxSequenceLength"] == 4096
    nova = validate_hyperparameters("amazon.nova-lite-v1:0:300k", "FINE_TUNING", {"learningRate": "0.00005"})
    assert nova["learningRate"] == 5e-5 and nova["epochCount"] == 2


def test_nova_takes_the_batch_size_aws_samples_send():
    sample = {"epochCount": "1", "batchSize": "1", "learningRate": "0.00001", "learningRateWarmupSteps": "5"}
    assert validate_hyperparameters("amazon.nova-micro-v1:0:128k", "FINE_TUNING", sample)["batchSize"] == 1
    with pytest.raises(ValueError, match=r"batchSize value 4 is out of range. Valid range: \[1, 1\]"):
        validate_hyperparameters("amazon.nova-micro-v1:0:128k", "FINE_TUNING", {"batchSize": "4"})


def test_context_window_variants_alone_are_customizable():
    from jobforge.workloads.customize.families import on_demand_only

    assert on_demand_only("amazon.nova-lite-v1:0") and on_demand_only("meta.llama3-1-8b-instruct-v1:0")
    assert on_demand_only("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0")
    assert not on_demand_only("amazon.nova-lite-v1:0:300k") and not on_demand_only("cohere.command-text-v14:7:4k")
    assert not on_demand_only("myorg.tiny-v1")  # outside Bedrock's families


def test_strings_are_parsed():
    hp = validate_hyperparameters(
        "my.model", "FINE_TUNING", {"epochCount": "3", "batchSize": "4", "learningRate": "1e-3", "fullFineTuning": "TRUE"}
    )
    assert hp["epochCount"] == 3 and isinstance(hp["epochCount"], int)
    assert hp["learningRate"] == 1e-3 and hp["fullFineTuning"] is True


def test_claude_multiplier_resolves_learning_rate():
    hp = validate_hyperparameters("anthropic.claude-3-haiku-20240307-v1:0:200k", "FINE_TUNING", {"learningRateMultiplier": "2"})
    assert hp["learningRate"] == pytest.approx(2e-4)
    assert hp["earlyStoppingPatience"] == 2 and hp["batchSize"] == 32


@pytest.mark.parametrize(
    "model, params, message",
    [
        ("meta.llama3-1-8b-instruct-v1:0", {"epochCount": "11"}, "epochCount value 11 is out of range. Valid range: [1, 10]"),
        ("meta.llama3-1-8b-instruct-v1:0", {"batchSize": "2"}, "batchSize value 2 is out of range. Valid range: [1, 1]"),
        ("amazon.titan-text-premier-v1:0", {"learningRate": "0.1"}, "Valid range: [1e-07, 1e-05]"),
        ("meta.llama3-1-8b-instruct-v1:0", {"epochCount": "2.5"}, "epochCount must be an integer"),
        ("meta.llama3-1-8b-instruct-v1:0", {"learningRate": "fast"}, "learningRate must be a number"),
        ("meta.llama3-1-8b-instruct-v1:0", {"earlyStoppingPatience": "3"}, "earlyStoppingPatience are not supported"),
        ("my.model", {"fullFineTuning": "maybe"}, "fullFineTuning must be 'true' or 'false'"),
        ("amazon.titan-text-lite-v1", {"maxSequenceLength": "8192"}, "exceeds the maximum of 4096"),
    ],
)
def test_range_errors(model, params, message):
    with pytest.raises(ValueError) as error:
        validate_hyperparameters(model, "FINE_TUNING", params)
    assert message in str(error.value)


def test_unsupported_customization_type():
    with pytest.raises(ValueError, match="does not support customization type CONTINUED_PRE_TRAINING"):
        validate_hyperparameters("meta.llama3-2-1b-instruct-v1:0", "CONTINUED_PRE_TRAINING", {})
    with pytest.raises(ValueError, match="REINFORCEMENT_FINE_TUNING is not supported"):
        validate_hyperparameters("my.model", "REINFORCEMENT_FINE_TUNING", {})


def test_customization_support():
    titan = customization_support("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1")
    assert titan["customizationsSupported"] == ["FINE_TUNING", "CONTINUED_PRE_TRAINING"]
    assert titan["hyperParameters"]["epochCount"] == {"min": 1, "max": 10, "default": 5}
    assert customization_support("anthropic.claude-3-5-sonnet-20240620-v1:0")["customizationsSupported"] == []
    assert customization_support("anthropic.claude-3-5-sonnet-20240620-v1:0")["distillationTeacher"] is True
    generic = customization_support("acme.tiny-v1")
    assert generic["family"] == "generic" and len(generic["customizationsSupported"]) == 3


def test_api_side_imports_no_torch():
    code = "import sys, jobforge.workloads.customize as c; c.validate_hyperparameters('x.y', 'FINE_TUNING', {}); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
