"""The Braket job images (``braket.jobs.image_uris``) and the packages each ships, as jobforge prepares them.

An image is not pulled: its pinned list (``image_requirements/``, derived from
AWS's container definitions) names the packages a job's code finds. What the
server's own Python environment already satisfies is used from there; only the
rest is installed, once, into the image's environment (see ``environments``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

LISTS = Path(__file__).with_name("image_requirements")


@dataclass(frozen=True)
class Image:
    name: str  # how jobforge names the image
    repository: str  # the image's ECR repository, as in its URI
    lists: tuple[str, ...]  # its pinned lists, in image_requirements/

    def requirements(self) -> list[str]:
        """The image's requirement lines, comments dropped."""
        lines = []
        for name in self.lists:
            for line in (LISTS / name).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    lines.append(line)
        return lines

    def digest(self) -> str:
        """Identifies the image's pinned list: an environment built from another list is another environment."""
        return hashlib.sha256("\n".join([self.name, *self.requirements()]).encode()).hexdigest()

    def missing(self) -> list[str]:
        """The requirements the server's environment does not satisfy."""
        return [line for line in self.requirements() if not _satisfied(line)]


BASE = Image("base", "amazon-braket-base-jobs", ("base.txt",))
PYTORCH = Image("pytorch", "amazon-braket-pytorch-jobs", ("base.txt", "pytorch.txt"))
TENSORFLOW = Image("tensorflow", "amazon-braket-tensorflow-jobs", ("base.txt", "tensorflow.txt"))
IMAGES = {image.repository: image for image in (BASE, PYTORCH, TENSORFLOW)}
# Images jobforge has no environment for, and why (CreateJob refuses them).
REFUSED = {"amazon-braket-cudaq-jobs": "the CUDA-Q image's packages are CUDA builds that need NVIDIA GPUs and "
                                      "CUDA; jobforge prepares environments for the base, PyTorch and "
                                      "TensorFlow images"}


def repository(uri: str | None) -> str:
    """The ECR repository an image URI names: ``…/amazon-braket-base-jobs:latest`` → ``amazon-braket-base-jobs``."""
    return (uri or "").rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def image_for(uri: str | None) -> Image:
    """The image a job names; the base image for none, and for a custom image, which is not pulled either."""
    return IMAGES.get(repository(uri), BASE)


def _satisfied(line: str) -> bool:
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return False
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True
    try:
        installed = importlib.metadata.version(canonicalize_name(requirement.name))
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)
