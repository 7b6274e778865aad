"""Fixtures of the workload tests: tiny models, built once per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_models import build_model


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2", seed=1)
