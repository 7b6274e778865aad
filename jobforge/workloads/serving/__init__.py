"""Model servers: what answers ``POST /invocations`` inside an endpoint instance's confined process.

``frameworks`` says which server a model gets (from its container image, its environment and what its
``model.tar.gz`` holds); each server module loads a model directory into a ``Predictor``; ``codecs`` decodes
and encodes payloads by content type as SageMaker's framework containers do.
"""
