"""README "Agent RL with the SageMaker Python SDK", followed literally: its shell lines run in bash and its
script as written, against a fresh server (its endpoint and data dir in place of the README's, and the tiny
test policy registered under the README's model name in place of /path/to/hf-model)."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from jobforge import tinylm
from jobforge.testing_server import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Agent RL with the SageMaker Python SDK"
README_ENDPOINT = "http://127.0.0.1:4566"


def _blocks() -> tuple[str, str]:
    """The section's shell block and its Python script."""
    lines = README.read_text().splitlines()
    start = lines.index(SECTION)
    fenced, end = False, len(lines)
    for number in range(start + 1, len(lines)):
        fenced ^= lines[number].startswith("```")
        if not fenced and lines[number].startswith("#"):  # the next heading
            end = number
            break
    section = "\n".join(lines[start:end])
    shell = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return shell, script


def _shell_for(shell: str, server: ServerProcess, policy: Path) -> str:
    """The README's shell lines for this server: its own `serve` is already running, the model is the tiny
    policy, and Python is this interpreter."""
    lines = []
    for line in shell.splitlines():
        command = shlex.split(line, comments=True)
        if command[:2] == ["jobforge", "serve"]:
            continue
        if command[:3] == ["jobforge", "models", "add"]:
            line = shlex.join([sys.executable, "-m", "jobforge.cli", "--data-dir", str(server.data_dir), "models",
                               "add", command[3], str(policy)])
        elif command[:1] == ["python"]:
            line = shlex.join([sys.executable, *command[1:]])
        lines.append(line.replace(README_ENDPOINT, server.endpoint).replace("$PWD/.jobforge", str(server.data_dir)))
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


def test_readme_script_trains_and_compares_pass_at_k(tmp_path):
    shell, script = _blocks()
    ast.parse(script)
    name = re.search(r'^MODEL = "([^"]+)"', script, re.M).group(1)
    assert f"jobforge models add {name} " in shell
    work = tmp_path / "work"
    work.mkdir()
    (work / "agent_rl.py").write_text(script)
    policy = tinylm.build_digits(tmp_path / "policy")
    server = ServerProcess(tmp_path / "data").start()
    try:
        # Nothing of this process's AWS settings, nor the user's files: only what the README sets.
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("AWS_", "SAGEMAKER_", "MLFLOW_"))}
        env["HOME"] = str(tmp_path / "home")
        done = subprocess.run(["bash", "-c", _shell_for(shell, server, policy)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1500)
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-6000:]
    out = done.stdout
    assert re.search(r"^fine-tuned model: arn:aws:sagemaker:us-east-1:\d{12}:model-package/"
                     rf"{name}-mtrl-mpg/1$", out, re.M), out
    rewards = ast.literal_eval(re.search(r"^training reward per step: (\[.*\])$", out, re.M).group(1))
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)
    for step in ("EvaluateBaseModel", "EvaluateFineTunedModel"):
        found = re.search(rf"^{step} (\{{.*\}})$", out, re.M)
        assert found, out
        pass_at = ast.literal_eval(found.group(1))
        assert set(pass_at) == {f"eval/pass_at_{k}" for k in (1, 2, 4, 8)}
        values = [pass_at[f"eval/pass_at_{k}"] for k in (1, 2, 4, 8)]
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
