"""S3's flexible checksums: compute, compare, and combine over parts.

The digests are botocore's own checksum classes (zlib's CRC32, the fastest
here; CRT-backed CRC32C and CRC64NVME, so ``awscrt`` is required); combining
the CRCs of parts into a whole-object CRC uses ``awscrt.checksums.combine_*``.
Only what S3 defines on top (the composite "checksum of checksums", header and
member names) is written here.
"""

from __future__ import annotations

import base64
import binascii

from awscrt import checksums as crt
from botocore.httpchecksum import Crc32Checksum, CrtCrc32cChecksum, CrtCrc64NvmeChecksum, Sha1Checksum, Sha256Checksum

from jobforge.core.errors import ServiceError

CLASSES = {"CRC32": Crc32Checksum, "CRC32C": CrtCrc32cChecksum, "CRC64NVME": CrtCrc64NvmeChecksum,
           "SHA1": Sha1Checksum, "SHA256": Sha256Checksum}
ALGORITHMS = tuple(CLASSES)
DEFAULT = "CRC64NVME"  # what S3 computes when the client sends no checksum
_COMBINE = {"CRC32": (crt.combine_crc32, 4), "CRC32C": (crt.combine_crc32c, 4),
            "CRC64NVME": (crt.combine_crc64nvme, 8)}


def header(algorithm: str) -> str:
    return f"x-amz-checksum-{algorithm.lower()}"


def member(algorithm: str) -> str:
    return f"Checksum{algorithm}"


def new(algorithm: str):
    return CLASSES[algorithm]()


def algorithm_of(name: str) -> str:
    """A checksum algorithm named by a client (header suffix or enum value)."""
    upper = name.upper()
    if upper not in CLASSES:
        raise ServiceError("InvalidRequest", f"Checksum algorithm {name!r} is not supported", 400)
    return upper


def check(algorithm: str, expected: str, actual: str) -> None:
    try:
        valid = len(base64.b64decode(expected, validate=True)) == len(base64.b64decode(actual))
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise ServiceError("InvalidRequest", f"Value for {header(algorithm)} header is invalid.", 400)
    if expected != actual:
        raise ServiceError("BadDigest", f"The {algorithm} you specified did not match the calculated checksum.", 400)


def supports_full_object(algorithm: str) -> bool:
    return algorithm in _COMBINE


def default_type(algorithm: str) -> str:
    return "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"


def combine(algorithm: str, parts: list[tuple[str, int]]) -> str:
    """The whole-object CRC of concatenated parts, from (base64 CRC, size) pairs."""
    fn, width = _COMBINE[algorithm]
    total = 0  # the CRC of no data
    for value, size in parts:
        total = fn(total, int.from_bytes(base64.b64decode(value), "big"), size)
    return base64.b64encode(total.to_bytes(width, "big")).decode()


def composite(algorithm: str, values: list[str]) -> str:
    """S3's checksum of checksums for a multipart object: "<digest of the part digests>-<N>"."""
    digest = new(algorithm)
    for value in values:
        digest.update(base64.b64decode(value))
    return f"{digest.b64digest()}-{len(values)}"
