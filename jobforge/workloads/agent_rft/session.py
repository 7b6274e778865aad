"""The policy of a running job (``PolicySession``: the model with its LoRA adapter, the batch sampler), and
served to the user's agent (``Session``: the policy server the runtime API reaches, the dispatcher that sends
prompts to the agent)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from jobforge.execution.context import JobContext
from jobforge.workloads.customize.job import max_positions
from jobforge.workloads.customize.model_io import pick_device, quiet_transformers
from jobforge.workloads.customize.prompting import ensure_chat_template

from .agents import Dispatcher, agent_for
from .policy_server import Policy, PolicyServer, Usage
from .sampler import BatchSampler
from .trajectories import Trajectories


def load_policy(model_dir: Path, device: torch.device, lora_rank: int | None, lora_alpha: int | None,
                adapter_dir: Path | None = None):
    """(model, tokenizer): the base model with the LoRA adapter saved in ``adapter_dir`` (trainable when training),
    or else a fresh LoRA adapter on every linear layer when training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model.to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=bool(lora_rank))
    elif lora_rank:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    return model, tokenizer


class PolicySession:
    """The policy a job samples and trains: the model (with a LoRA adapter when training), its tokenizer, the
    batch sampler, the trajectories sampled from it and the tokens they cost."""

    def __init__(self, ctx: JobContext, hp: dict, model_dir: Path, model_name: str, training: bool,
                 adapter_dir: Path | None = None):
        self.device = pick_device(ctx.resources)
        self.model, self.tokenizer = load_policy(model_dir, self.device, hp.get("lora_rank") if training else None,
                                                 hp.get("lora_alpha"), adapter_dir)
        self.lock = threading.Lock()
        self.version = 0
        self.trajectories = Trajectories()
        self.sampler = BatchSampler(self.model, self.tokenizer.pad_token_id, self.lock, lambda: self.version,
                                    self.trajectories.open)
        self.usage = Usage()
        self.policy = Policy(self.tokenizer, self.sampler, model_name, max_positions(model_dir),
                             temperature=hp.get("temperature", hp.get("sampling_temperature", 1.0)),
                             top_p=hp.get("sampling_top_p", hp.get("top_p", 1.0)),
                             max_tokens=hp.get("sampling_max_tokens", hp.get("max_tokens", 4096)))

    def close(self) -> None:
        self.sampler.close()


class Session(PolicySession):
    """The policy served to the user's agent: the policy server the runtime API reaches, and the dispatcher
    that sends prompts to the agent."""

    def __init__(self, ctx: JobContext, spec: dict, model_dir: Path, training: bool, adapter_dir: Path | None = None):
        hp = spec["hyperparameters"]
        super().__init__(ctx, hp, model_dir, spec["base_model"]["name"], training, adapter_dir)
        self.server = PolicyServer(self.policy, self.trajectories, self.usage)
        ctx.result({"PolicyServer": {"url": self.server.url, "secret": self.server.secret}})
        self.agent = agent_for(spec["agent"], ctx.region, hp["max_concurrent_rollouts"])
        endpoint = self.agent.endpoint(ctx.env.get("AWS_ENDPOINT_URL", ""))
        self.dispatcher = Dispatcher(self.agent, self.trajectories, ctx.job_arn, ctx.job_name, ctx.region, endpoint,
                                     hp["max_concurrent_rollouts"], hp["agent_retries"], hp["rollout_timeout_seconds"],
                                     ctx.should_stop)

    def close(self) -> None:
        self.server.close()
        super().close()
        self.agent.close()
