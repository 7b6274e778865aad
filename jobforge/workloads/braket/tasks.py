"""Quantum tasks: run a CreateQuantumTask action on the default simulator.

The result is a ``braket.task_result`` document, which the task runner stores as ``results.json`` under
``outputS3Bucket/outputS3KeyPrefix/<task-id>/``, where ``AwsQuantumTask.result()`` downloads and parses it.
"""

from __future__ import annotations

import functools
import json
import time
from importlib.metadata import entry_points

import numpy as np
from braket.ir.openqasm import Program as OpenQASMProgram
from pydantic.v1.json import pydantic_encoder
from braket.schema_common import BraketSchemaBase
from braket.task_result import GateModelTaskResult, SimulatorMetadata
from braket.tasks import GateModelQuantumTaskResult

from jobforge.execution.context import WorkloadError
from jobforge.workloads.braket import devices, parse_cache

def run_task(
    device_arn: str,
    action_json: str,
    shots: int,
    device_parameters: str | None = None,
    inputs: dict | None = None,
    *,
    task_arn: str | None = None,
) -> dict:
    """Simulate one task and return its results document (JSON-ready).

    ``inputs`` are merged into an OpenQASM program's inputs, as
    ``LocalSimulator.run(..., inputs=...)`` does.
    """
    return json.loads(results_json(device_arn, action_json, shots, device_parameters, inputs, task_arn=task_arn))


def results_json(
    device_arn: str,
    action_json: str,
    shots: int,
    device_parameters: str | None = None,
    inputs: dict | None = None,
    *,
    task_arn: str | None = None,
) -> str:
    """``run_task``'s document as the JSON text of results.json, serialised once."""
    if not devices.is_runnable(device_arn):
        try:
            reason = devices.unavailable_reason(device_arn)
        except KeyError:
            reason = f"Unknown device: {device_arn}"
        raise WorkloadError(reason)
    simulator = _simulator(devices.simulator_backend(device_arn))
    program = _parse(action_json, "action")
    action_type = program.braketSchemaHeader.name
    if action_type not in simulator.properties.action:
        raise WorkloadError(f"Device {device_arn} does not support action type {action_type}")
    if inputs:
        if not isinstance(program, OpenQASMProgram):
            raise WorkloadError(f"Inputs are only supported for OpenQASM programs, not {action_type}")
        program = OpenQASMProgram(source=program.source, inputs={**(program.inputs or {}), **inputs})
    parameters = _parse(device_parameters, "deviceParameters") if device_parameters else None

    started = time.perf_counter()
    try:
        result = simulator.run(program, shots=shots)
    except Exception as error:  # the simulator's own validation of the user's program
        raise WorkloadError(f"{type(error).__name__}: {error}") from error
    duration_ms = round((time.perf_counter() - started) * 1000)

    metadata = result.taskMetadata
    metadata.id = task_arn or metadata.id
    metadata.deviceId = device_arn
    metadata.deviceParameters = parameters
    metadata.status = "COMPLETED"
    if not isinstance(result, GateModelTaskResult):
        return result.json(exclude_none=True, encoder=_encode)
    _complete_gate_model_result(result, program, duration_ms)
    # pydantic walks every element of a list; shots x qubits measurements are added apart.
    measurements, result.measurements = result.measurements, None
    document = result.json(exclude_none=True, encoder=_encode)
    if measurements is None:
        return document
    return f'{document[:-1]}, "measurements": {json.dumps(measurements, separators=(",", ":"))}}}'


def _simulator(backend: str):
    # A fresh instance per task: simulators are cheap to build and not documented as re-entrant.
    return _simulator_class(backend)()


@functools.cache
def _simulator_class(backend: str):
    parse_cache.install()
    return entry_points(group="braket.simulators")[backend].load()


def _parse(document: str, field: str):
    try:
        return BraketSchemaBase.parse_raw_schema(document)
    except Exception as error:  # pydantic, JSON and unknown-schema errors alike
        raise WorkloadError(f"Invalid {field}: {error}") from error


def _complete_gate_model_result(result: GateModelTaskResult, program, duration_ms: int) -> None:
    """Make the simulator's raw result what the Braket service stores.

    The local simulator returns sampled measurements as strings and, for
    shots > 0, leaves result-type values for the SDK to compute on the client;
    the service writes integer measurements and the computed values. The SDK's
    own computation is reused for them.
    """
    additional = result.additionalMetadata
    additional.action = additional.action or program
    additional.simulatorMetadata = SimulatorMetadata(executionDuration=duration_ms)
    if not result.measurements:  # exact (shots = 0) results carry none; the schema forbids []
        result.measurements = None
        return
    result.measurements = np.asarray(result.measurements, dtype=np.int8).tolist()
    if result.resultTypes or getattr(program, "results", None):
        result.resultTypes = GateModelQuantumTaskResult.from_object(result).result_types


def _encode(value):
    """JSON form of simulator values: complex numbers as [real, imaginary] pairs."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, complex | np.complexfloating):
        return [float(value.real), float(value.imag)]
    if isinstance(value, np.generic):
        return value.item()
    return pydantic_encoder(value)
