"""S3 (restXml): buckets, objects, listings and multipart uploads over the object store."""

from jobforge.api.s3 import buckets, listing, multipart, objects  # noqa: F401  (registers the handlers)
