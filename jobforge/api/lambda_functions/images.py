"""Container-image functions (PackageType Image): the checks Lambda makes of their image and ImageConfig.

``ImageUri`` names an image the server's container engine has (built, pulled or loaded there; jobforge pulls
nothing); the function keeps the image it named at create or at its last code update, as Lambda keeps the
digest its tag resolved to (``ResolvedImageUri``). Without an engine such functions are refused with what
to install.
"""

from __future__ import annotations

from jobforge.api.base import RequestContext
from jobforge.api.lambda_functions.common import host, invalid
from jobforge.core.errors import ServiceError
from jobforge.execution import container_engine
from jobforge.execution.container_engine import EngineError, Image

MAX_WORKING_DIRECTORY = 1000
# Members of FunctionCode that belong to .zip archives.
ZIP_MEMBERS = ("ZipFile", "S3Bucket", "S3Key", "S3ObjectVersion")


def refusal() -> ServiceError:
    return invalid(container_engine.refusal("Container-image functions (PackageType Image, ImageUri)",
                                            "package the function as a .zip archive (Code.ZipFile or "
                                            "Code.S3Bucket/S3Key)"))


def wanted(req: dict) -> bool:
    """Whether a CreateFunction request asks for a container-image function."""
    return req.get("PackageType") == "Image" or bool((req.get("Code") or {}).get("ImageUri"))


def check_create(req: dict) -> None:
    """What a container-image function cannot be given: a runtime, a handler, an archive."""
    if req.get("PackageType") != "Image":
        raise invalid("Please don't provide ImageUri when creating a function with PackageType Zip: set "
                      "PackageType to Image.")
    if req.get("Runtime") or req.get("Handler"):
        raise invalid("Runtime and Handler are not supported for functions of PackageType Image: the image's "
                      "entry point and command (or ImageConfig) run the function.")
    code = req.get("Code") or {}
    if any(code.get(member) is not None for member in ZIP_MEMBERS):
        raise invalid("Please provide only an ImageUri as the code of a function of PackageType Image.")
    if not code.get("ImageUri"):
        raise invalid("Please provide an ImageUri for a function of PackageType Image.")


def image_of(ctx: RequestContext, uri: str, architectures: list[str]) -> Image:
    """The image the URI names on this server's engine, built for the function's architecture."""
    engine = host(ctx).containers
    if engine is None:
        raise refusal()
    try:
        image = engine.image(uri)
    except EngineError as err:
        raise ServiceError("ServiceException", f"The container engine did not answer: {err}", 500) from None
    if image is None:
        raise invalid(f"Source image {uri} does not exist on this host's {engine.name}: build, pull or load it "
                      f"there first ({engine.name} images lists what it has; jobforge pulls no images).")
    if [image.architecture] != architectures:
        raise invalid(f"The image {uri} is built for {image.architecture or 'an unknown architecture'}, and the "
                      f"function's Architectures is {architectures}.")
    return image


def image_config(config: dict | None) -> dict | None:
    """ImageConfig as kept: its EntryPoint, Command and WorkingDirectory (an absolute path)."""
    if not config:
        return None
    working_dir = config.get("WorkingDirectory")
    if working_dir and not working_dir.startswith("/"):
        raise invalid(f"ImageConfig WorkingDirectory must be an absolute path; it is {working_dir}.")
    kept = {member: config[member] for member in ("EntryPoint", "Command", "WorkingDirectory")
            if config.get(member) not in (None, "")}
    return kept or None


def code_values(image: Image) -> dict:
    """The function record's columns for its image."""
    return dict(image_uri=image.reference, resolved_image_uri=image.resolved_uri, image_id=image.id,
                code_sha256=image.digest.removeprefix("sha256:"), code_size=0)
