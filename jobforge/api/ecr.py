"""ECR BatchGetImage for the Braket job images, as the Braket SDK reads them.

``@hybrid_job`` checks, before it creates a job, that the client's Python
version matches the job image's: it reads the image's tags through ECR and
looks for ``-py<major><minor>-``. jobforge runs hybrid jobs in its own Python
environment rather than in the image, so for Braket's built-in job images it
describes that environment: a small manifest (Python and jobforge versions)
whose SHA-256 is the digest, tagged with the requested tag and a
``<jobforge version>-cpu-py<XY>-jobforge`` tag. Other repositories do not
exist here.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys

from jobforge import __version__
from jobforge.api.base import RequestContext, handler
from jobforge.core.errors import ServiceError

BRAKET_JOB_IMAGES = ("amazon-braket-base-jobs", "amazon-braket-pytorch-jobs", "amazon-braket-tensorflow-jobs",
                     "amazon-braket-cudaq-jobs")
MEDIA_TYPE = "application/vnd.jobforge.environment.v1+json"
MANIFEST = json.dumps({"mediaType": MEDIA_TYPE, "python": platform.python_version(), "jobforge": __version__},
                      sort_keys=True)
DIGEST = "sha256:" + hashlib.sha256(MANIFEST.encode()).hexdigest()
VERSION_TAG = f"{__version__}-cpu-py{sys.version_info.major}{sys.version_info.minor}-jobforge"


@handler("ecr", "BatchGetImage")
def batch_get_image(ctx: RequestContext, req: dict) -> dict:
    repository = req["repositoryName"]
    registry = req.get("registryId", ctx.account_id)
    if repository not in BRAKET_JOB_IMAGES:
        raise ServiceError("RepositoryNotFoundException", f"The repository with name '{repository}' does not exist "
                           f"in the registry with id '{registry}'")
    images, failures = [], []
    for wanted in req["imageIds"]:
        tag, digest = wanted.get("imageTag"), wanted.get("imageDigest")
        if (digest and digest != DIGEST) or (tag and tag not in ("latest", VERSION_TAG)):
            failures.append({"imageId": wanted, "failureCode": "ImageNotFound",
                             "failureReason": "Requested image not found"})
            continue
        tags = [tag] if tag else ["latest", VERSION_TAG]
        images += [{"registryId": registry, "repositoryName": repository, "imageManifest": MANIFEST,
                    "imageManifestMediaType": MEDIA_TYPE, "imageId": {"imageDigest": DIGEST, "imageTag": t}}
                   for t in tags]
    return {"images": images, "failures": failures}
