"""S3 (restXml): buckets and their settings, objects, listings and multipart uploads over the object store."""

from jobforge.api.s3 import (bucket_policy, bucket_tagging, buckets, cors, lifecycle, listing,  # noqa: F401
                             multipart, object_attributes, objects)  # (importing them registers the handlers)
