"""Quantum tasks: results equal (or agree statistically with) LocalSimulator and documents the SDK parses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jobforge.execution.context import WorkloadError

# The Braket SDK is imported by the tests that use it, so that collecting them stays fast.
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
DM1 = "arn:aws:braket:::device/quantum-simulator/amazon/dm1"
TASK_ID = "6f1c3b6e-5f0a-4c6f-9d55-1d2a8f0b9c11"
TASK_ARN = f"arn:aws:braket:us-east-1:000000000000:quantum-task/{TASK_ID}"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # JAQCD deprecation, noise-free DM runs


def exact_circuit():
    from braket.circuits import Circuit, Observable

    circuit = Circuit().h(0).cnot(0, 1).ry(2, 0.7).rx(1, 0.2).cz(1, 2)
    return (
        circuit.expectation(Observable.Z() @ Observable.Z(), target=[0, 2])
        .variance(Observable.X(), target=[1])
        .probability(target=[0, 2])
        .amplitude(["000", "110"])
        .state_vector()
        .density_matrix(target=[2])
    )


def as_complex(value):
    """Density matrices stay [real, imaginary] pairs in results.json, as the service writes them."""
    array = np.asarray(value)
    return array[..., 0] + 1j * array[..., 1] if array.dtype != complex and array.shape[-1:] == (2,) else array


def parse(document: dict):
    from braket.tasks import GateModelQuantumTaskResult

    return GateModelQuantumTaskResult.from_string(json.dumps(document))


@pytest.mark.parametrize("ir_type", ["OPENQASM", "JAQCD"])
def test_exact_results_equal_a_direct_local_simulator_run(ir_type):
    from braket.circuits.serialization import IRType
    from braket.devices import LocalSimulator

    from jobforge.workloads.braket import tasks

    circuit = exact_circuit()
    document = tasks.run_task(SV1, circuit.to_ir(ir_type=IRType[ir_type]).json(), 0, task_arn=TASK_ARN)
    ours = parse(document)
    direct = LocalSimulator("braket_sv").run(circuit, shots=0).result()
    assert len(ours.values) == len(direct.values) == 6
    for value, expected in zip(ours.values, direct.values, strict=True):
        if isinstance(expected, dict):
            assert value.keys() == expected.keys()
            np.testing.assert_allclose(list(value.values()), list(expected.values()), atol=1e-12)
        else:
            np.testing.assert_allclose(as_complex(value), expected, atol=1e-12)
    assert ours.task_metadata.id == TASK_ARN and ours.task_metadata.deviceId == SV1
    assert ours.task_metadata.status == "COMPLETED" and ours.task_metadata.shots == 0
    assert ours.additional_metadata.simulatorMetadata.executionDuration >= 0


def test_noisy_program_on_dm1_equals_local_density_matrix_simulator():
    from braket.circuits import Circuit, Noise
    from braket.circuits.serialization import IRType
    from braket.devices import LocalSimulator

    from jobforge.workloads.braket import tasks

    circuit = Circuit().h(0).cnot(0, 1).apply_gate_noise(Noise.Depolarizing(0.1)).probability()
    program = circuit.to_ir(ir_type=IRType.OPENQASM)
    document = tasks.run_task(DM1, program.json(), 0)
    direct = LocalSimulator("braket_dm").run(circuit, shots=0).result()
    np.testing.assert_allclose(parse(document).values[0], direct.values[0], atol=1e-12)
    with pytest.raises(WorkloadError, match="Noise instructions are not supported"):
        tasks.run_task(SV1, program.json(), 0)


def test_inputs_bind_free_parameters_like_local_simulator():
    from braket.circuits import Circuit, FreeParameter, Observable
    from braket.circuits.serialization import IRType
    from braket.devices import LocalSimulator

    from jobforge.workloads.braket import tasks

    theta = FreeParameter("theta")
    circuit = Circuit().ry(0, theta).expectation(Observable.Z(), target=[0])
    action = circuit.to_ir(ir_type=IRType.OPENQASM).json()
    document = tasks.run_task("braket_sv", action, 0, inputs={"theta": 0.4})
    direct = LocalSimulator().run(circuit, shots=0, inputs={"theta": 0.4}).result()
    assert parse(document).values[0] == pytest.approx(direct.values[0]) == pytest.approx(math.cos(0.4))


@pytest.mark.parametrize(("device", "ir_type"), [(SV1, "OPENQASM"), (SV1, "JAQCD"), (DM1, "OPENQASM")])
def test_sampled_results_agree_statistically_with_local_simulator(device, ir_type):
    from braket.circuits import Circuit, Observable
    from braket.circuits.serialization import IRType
    from braket.devices import LocalSimulator

    from jobforge.workloads.braket import devices, tasks

    shots, theta = 4000, 1.1
    circuit = Circuit().ry(0, theta).cnot(0, 1).expectation(Observable.Z(), target=[1]).probability(target=[0])
    document = tasks.run_task(device, circuit.to_ir(ir_type=IRType[ir_type]).json(), shots)
    ours = parse(document)
    direct = LocalSimulator(devices.simulator_backend(device)).run(circuit, shots=shots).result()

    p_one = math.sin(theta / 2) ** 2
    tolerance = 5 * math.sqrt(p_one * (1 - p_one) / shots)  # five standard deviations
    for result in (ours, direct):
        assert set(result.measurement_counts) <= {"00", "11"}
        assert result.measurement_counts["11"] / shots == pytest.approx(p_one, abs=tolerance)
        assert result.values[0] == pytest.approx(1 - 2 * p_one, abs=2 * tolerance)
        assert result.values[1][1] == pytest.approx(p_one, abs=tolerance)
    assert ours.values[0] == pytest.approx(direct.values[0], abs=4 * tolerance)
    assert len(document["measurements"]) == shots and document["measuredQubits"] == [0, 1]
    # The service writes the computed result-type values, not just the requests.
    assert document["resultTypes"][0]["type"] == {"observable": ["z"], "targets": [1], "type": "expectation"}


def test_program_set_results_parse():
    from braket.circuits import Circuit
    from braket.program_sets import ProgramSet
    from braket.schema_common import BraketSchemaBase
    from braket.tasks import ProgramSetQuantumTaskResult

    from jobforge.workloads.braket import tasks

    program_set = ProgramSet([Circuit().x(0).measure(0), Circuit().h(0).measure(0)])
    document = tasks.run_task(SV1, program_set.to_ir().json(), 200)
    result = ProgramSetQuantumTaskResult.from_object(
        BraketSchemaBase.parse_raw_schema(json.dumps(document)), program_set=program_set
    )
    assert result[0][0].counts == {"1": 100}
    assert sum(result[1][0].counts.values()) == 100


def hadamard() -> str:
    from braket.circuits import Circuit
    from braket.circuits.serialization import IRType

    return Circuit().h(0).to_ir(ir_type=IRType.OPENQASM).json()


def sample_without_shots() -> str:
    from braket.circuits import Circuit, Observable
    from braket.circuits.serialization import IRType

    return Circuit().h(0).sample(Observable.Z(), target=[0]).to_ir(ir_type=IRType.OPENQASM).json()


def not_a_program() -> str:
    return '{"not": "a program"}'


@pytest.mark.parametrize(
    ("device", "action", "shots", "message"),
    [
        ("arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1", hadamard, 10, "quantum hardware that jobforge cannot reach"),
        ("arn:aws:braket:::device/quantum-simulator/amazon/nope", hadamard, 10, "Unknown device"),
        (SV1, not_a_program, 10, "Invalid action"),
        (SV1, sample_without_shots, 0, "Error"),
    ],
)
def test_failures_are_workload_errors(device, action, shots, message):
    from jobforge.workloads.braket import tasks

    with pytest.raises(WorkloadError, match=message):
        tasks.run_task(device, action(), shots)
