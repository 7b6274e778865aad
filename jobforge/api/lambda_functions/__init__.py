"""AWS Lambda (restJson1): Python functions from .zip archives, run in warm, confined environments, and
functions from container images, run by the server's container engine."""

from jobforge.api.lambda_functions import concurrency, invoke, manage  # noqa: F401  (handlers)
