"""S3 (restXml): buckets, objects, listings and multipart uploads over the object store."""

from jobforge.server import router
from jobforge.server.protocol import restxml

router.register_protocol("rest-xml", restxml)

from jobforge.api.s3 import buckets, listing, multipart, objects  # noqa: E402,F401  (registers the handlers)
