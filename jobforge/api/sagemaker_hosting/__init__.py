"""SageMaker hosting: models, endpoint configs, endpoints (``sagemaker``) and their invocations
(``sagemaker-runtime``), served by the endpoint host's model servers."""

from jobforge.api.sagemaker_hosting import endpoint_configs, endpoints, invoke, models  # noqa: F401
