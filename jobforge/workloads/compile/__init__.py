"""Compilation jobs (SageMaker CreateCompilationJob): a model compiled for a target, verified and timed.

The job's steps, one module each: ``package`` unpacks the input tarball and finds the model file,
``shapes`` reads DataInputConfig, ``targets`` maps a TargetDevice or TargetPlatform to backends,
``options`` reads CompilerOptions, ``sources`` loads each framework's model and converts it to ONNX,
``backends`` builds the candidate artifacts, ``measure`` verifies and times them, ``report`` writes the
manifest, the report and the output tarball; ``job`` runs them in order. ``shapes``, ``targets``,
``options`` and ``frameworks`` import nothing heavy: the API checks requests with them.
"""
