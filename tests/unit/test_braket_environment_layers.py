"""Braket job environments: the images' pinned lists, and the cached layers jobs build on the server's environment
(built once under a lock, used only when finished, stacked so that a layer's packages come first)."""

from __future__ import annotations

import importlib.util
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from jobforge.workloads.braket import environments, images

ECR = "292282985366.dkr.ecr.us-east-1.amazonaws.com"


def run(command: list[str], cwd: Path, on_line) -> int:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    for line in (done.stdout + done.stderr).splitlines():
        on_line(line)
    return done.returncode


def python_says(environment: environments.Environment, code: str) -> str:
    return subprocess.run([environment.python, "-P", "-c", code], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def local_package(root: Path, name: str, value: str) -> Path:
    """A source package built by the test: pip installs it with no index."""
    package = root / name
    (package / name).mkdir(parents=True)
    (package / name / "__init__.py").write_text(f"VALUE = {value!r}\n")
    (package / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0"\n'
                                            '[build-system]\nrequires = ["setuptools"]\n'
                                            'build-backend = "setuptools.build_meta"\n')
    return package


def offline(requirements: Path) -> list[list[str]]:
    return [["--no-index", "--no-build-isolation", "-r", str(requirements)]]


# -- the images -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("uri, image", [
    (f"{ECR}/amazon-braket-base-jobs:latest", images.BASE),
    (f"{ECR}/amazon-braket-pytorch-jobs:latest", images.PYTORCH),
    (f"{ECR}/amazon-braket-tensorflow-jobs@sha256:0123", images.TENSORFLOW),
    ("123456789012.dkr.ecr.us-west-2.amazonaws.com/my-own-image:1", images.BASE),
    (None, images.BASE),
])
def test_an_image_uri_names_its_environment(uri, image):
    assert images.image_for(uri) is image


def test_the_cuda_q_image_is_refused_with_a_reason():
    assert "NVIDIA" in images.REFUSED[images.repository(f"{ECR}/amazon-braket-cudaq-jobs:latest")]


def test_every_pinned_line_is_a_requirement_and_framework_images_extend_the_base_image():
    for image in images.IMAGES.values():
        assert [Requirement(line) for line in image.requirements()]
    base = images.BASE.requirements()
    assert images.PYTORCH.requirements()[:len(base)] == base
    assert any(line.startswith("torch") for line in images.PYTORCH.requirements())
    assert any(line.startswith("tensorflow-cpu==") for line in images.TENSORFLOW.requirements())
    assert len({image.digest() for image in images.IMAGES.values()}) == 3


@pytest.mark.skipif(importlib.util.find_spec("braket") is None, reason="the braket extra is not installed")
def test_the_base_image_is_the_servers_own_environment():
    assert images.BASE.missing() == []  # the braket extra installs it: a base-image job installs nothing


# -- the layers -------------------------------------------------------------------------------------------------
def test_a_layer_is_built_once_and_adds_its_packages_before_the_servers(tmp_path):
    code = tmp_path / "code"
    local_package(code, "layered_pkg", "first")
    (code / "requirements.txt").write_text("./layered_pkg\n")
    server = environments.server_environment()
    key = environments.requirements_key(server, code, [code / "requirements.txt"])
    logs: list[str] = []
    built = environments.layer(tmp_path / "cache", key, server, offline(code / "requirements.txt"), code, run,
                               logs.append, "requirements.txt")
    assert any("building an environment" in line for line in logs)
    assert any("Successfully installed layered_pkg-1.0" in line for line in logs)
    assert python_says(built, "import layered_pkg, packaging; print(layered_pkg.VALUE)") == "first"

    logs.clear()
    again = environments.layer(tmp_path / "cache", key, server, offline(code / "requirements.txt"), code,
                               lambda *_: pytest.fail("installed again"), logs.append, "requirements.txt")
    assert again == built
    assert logs == [f"jobforge: requirements.txt: using the environment an earlier job built ({key[:12]}); "
                    "nothing to install"]


def writes_modules(**modules: str):
    """An installer that puts each module (name → its VALUE) into the layer being built."""
    def install(command, cwd, on_line):
        where = "import sysconfig; print(sysconfig.get_path('purelib'))"
        site_packages = Path(subprocess.run([command[0], "-c", where], capture_output=True, text=True,
                                            check=True).stdout.strip())
        for name, value in modules.items():
            (site_packages / f"{name}.py").write_text(f"VALUE = {value!r}\n")
        return 0
    return install


def test_a_layer_on_a_layer_comes_first_and_sees_both_below(tmp_path):
    server = environments.server_environment()
    below = environments.layer(tmp_path / "cache", "below", server, [["x"]], tmp_path,
                               writes_modules(shadowed="below", only_below="below"), print, "below")
    above = environments.layer(tmp_path / "cache", "above", below, [["x"]], tmp_path,
                               writes_modules(shadowed="above"), print, "above")
    assert python_says(below, "import shadowed; print(shadowed.VALUE)") == "below"
    assert python_says(above, "import shadowed, only_below, packaging; print(shadowed.VALUE, only_below.VALUE)") \
        == "above below"
    assert above.site_packages[1:] == below.site_packages


def test_a_failed_install_says_why_and_leaves_nothing_a_later_job_would_use(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "requirements.txt").write_text("not a requirement ==\n")
    server = environments.server_environment()
    with pytest.raises(environments.InstallFailed) as failed:
        environments.layer(tmp_path / "cache", "bad", server, offline(code / "requirements.txt"), code, run,
                           print, "requirements.txt")
    assert failed.value.status == 1 and "Invalid requirement" in str(failed.value)
    assert not (tmp_path / "cache" / "bad" / environments.COMPLETE).exists()


def test_an_unfinished_layer_is_built_again(tmp_path):
    (tmp_path / "cache" / "key" / "bin").mkdir(parents=True)  # what a job killed mid-build leaves
    calls = []
    environments.layer(tmp_path / "cache", "key", environments.server_environment(), [["x"]], tmp_path,
                       lambda command, cwd, on_line: calls.append(command) or 0, print, "requirements.txt")
    assert len(calls) == 1 and (tmp_path / "cache" / "key" / environments.COMPLETE).exists()


def _build_slowly(cache: str, record: str) -> None:
    def install(command, cwd, on_line):
        with open(record, "a") as file:
            file.write("built\n")
        time.sleep(0.5)
        return 0

    environments.layer(Path(cache), "shared", environments.server_environment(), [["x"]], Path(cache), install,
                       lambda line: None, "requirements.txt")


def test_concurrent_jobs_with_the_same_requirements_build_once(tmp_path):
    record = tmp_path / "record"
    context = multiprocessing.get_context("fork")
    jobs = [context.Process(target=_build_slowly, args=(str(tmp_path / "cache"), str(record))) for _ in range(3)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
        assert job.exitcode == 0
    assert record.read_text() == "built\n"


# -- the keys ---------------------------------------------------------------------------------------------------
def test_plain_requirements_are_keyed_by_their_text_and_the_environment_below(tmp_path):
    server = environments.server_environment()
    for folder in ("a", "b/nested"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "requirements.txt").write_text("tabulate==0.10.0  # tables\n")
        (tmp_path / folder / "algo.py").write_text(f"# {folder}\n")
    key_a = environments.requirements_key(server, tmp_path / "a", [tmp_path / "a" / "requirements.txt"])
    key_b = environments.requirements_key(server, tmp_path / "b", [tmp_path / "b" / "nested" / "requirements.txt"])
    assert key_a == key_b  # the source's other files and the file's place do not matter
    other_parent = environments.Environment(sys.executable, "another environment")
    assert environments.requirements_key(other_parent, tmp_path / "a", [tmp_path / "a" / "requirements.txt"]) \
        != key_a


def test_requirements_naming_the_source_are_keyed_by_the_source_too(tmp_path):
    server = environments.server_environment()
    package = local_package(tmp_path, "pkg", "one")
    (tmp_path / "requirements.txt").write_text("./pkg\n")
    before = environments.requirements_key(server, tmp_path, [tmp_path / "requirements.txt"])
    (package / "pkg" / "__init__.py").write_text("VALUE = 'two'\n")
    assert environments.requirements_key(server, tmp_path, [tmp_path / "requirements.txt"]) != before
