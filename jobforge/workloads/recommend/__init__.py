"""Inference recommendation jobs (SageMaker CreateInferenceRecommendationsJob): real load tests of real endpoints.

The load generator, one module each: ``http_connection`` (keep-alive HTTP/1.1 connections parsed by httptools),
``traffic`` (PHASES and STAIRS as segments of constant load), ``latency`` (the measurements of one window),
``load_test`` (closed-loop users and open-loop arrivals on one event loop), ``generator_process`` (the
generator in a process of its own, pinned apart from the endpoint), ``reference_server`` and ``ceiling``
(the generator's own ceiling, measured against a trivial server). The recommender: ``cost`` (AWS's formula),
``search`` (MaxInvocations from the windows of a ramp), ``plan`` (which tests a job runs), ``candidates`` (a
Default job's instance types), ``payloads`` (the sample payload archive) and ``job`` (the workload). ``traffic``,
``cost``, ``plan`` and ``candidates`` import nothing heavy: the API checks requests with them.
"""
