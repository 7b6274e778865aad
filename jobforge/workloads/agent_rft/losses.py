"""The three policy losses of ``loss_fn``, per trained token, normalised over the step's trained tokens.

ratio = exp(log π_θ − log π_sampling), with log π_sampling stored when the token was sampled.

- ``importance_sampling``: −ratio · A;
- ``ppo``: −min(ratio · A, clip(ratio, clip_low, clip_high) · A);
- ``cispo``: −stop_gradient(clip(ratio, clip_low, clip_high)) · A · log π_θ (wide bounds suit it, e.g. 1.0/6.0).
"""

from __future__ import annotations

import torch


def per_token(name: str, logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
              clip_low: float, clip_high: float) -> torch.Tensor:
    ratio = torch.exp(logprobs - old_logprobs)
    if name == "importance_sampling":
        return -ratio * advantages
    if name == "ppo":
        return -torch.minimum(ratio * advantages, ratio.clamp(clip_low, clip_high) * advantages)
    if name == "cispo":
        return -ratio.clamp(clip_low, clip_high).detach() * advantages * logprobs
    raise ValueError(f"unknown loss {name!r}")


def kl_estimate(logprobs: torch.Tensor, old_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π_sampling ‖ π_θ) over tokens sampled from π_sampling: non-negative,
    unbiased, low variance."""
    log_ratio = logprobs - old_logprobs
    return torch.exp(log_ratio) - log_ratio - 1
