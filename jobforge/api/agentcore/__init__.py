"""Bedrock AgentCore runtimes (bedrock-agentcore-control and bedrock-agentcore, restJson1): Python agents from
.zip archives in S3, each runtime session in a confined process of its own."""

from jobforge.api.agentcore import endpoints, invoke, runtimes  # noqa: F401  (handlers)
