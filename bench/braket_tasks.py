"""Quantum task execution vs the Braket LocalSimulator called directly.

A 10-qubit circuit (H on every qubit, then 3 layers of RY on every qubit and a
CNOT ladder), 1000 shots, fresh random angles on every call. jobforge's side is
``run_task`` on the action JSON the SDK would send (serialisation included);
the anchor is ``LocalSimulator().run(circuit, shots=1000).result()``. Prints
the medians and their ratio (target: at most 1.5).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
from braket.circuits import Circuit
from braket.circuits.serialization import IRType
from braket.devices import LocalSimulator

from jobforge.workloads.braket.tasks import run_task

QUBITS, LAYERS, SHOTS = 10, 3, 1000
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


def layered_circuit(angles: np.ndarray) -> Circuit:
    circuit = Circuit().h(range(QUBITS))
    for layer in angles:
        for qubit, angle in enumerate(layer):
            circuit.ry(qubit, float(angle))
        for qubit in range(QUBITS - 1):
            circuit.cnot(qubit, qubit + 1)
    return circuit


def jobforge_run(circuit: Circuit) -> dict:
    return run_task(SV1, circuit.to_ir(ir_type=IRType.OPENQASM).json(), SHOTS)


def direct_run(circuit: Circuit, simulator: LocalSimulator):
    return simulator.run(circuit, shots=SHOTS).result()


def measure(repeats: int = 15, seed: int = 7) -> dict:
    """Median seconds per task of both paths, alternating them on the same circuits."""
    rng = np.random.default_rng(seed)
    simulator = LocalSimulator()
    warm = layered_circuit(rng.uniform(0, np.pi, (LAYERS, QUBITS)))
    jobforge_run(warm), direct_run(warm, simulator)  # numba compilation, imports
    ours, anchor = [], []
    for _ in range(repeats):
        circuit = layered_circuit(rng.uniform(0, np.pi, (LAYERS, QUBITS)))
        started = time.perf_counter()
        jobforge_run(circuit)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        direct_run(circuit, simulator)
        anchor.append(time.perf_counter() - started)
    jobforge_s, direct_s = statistics.median(ours), statistics.median(anchor)
    return {"jobforge_s": jobforge_s, "direct_s": direct_s, "ratio": jobforge_s / direct_s}


def main() -> int:
    figures = measure()
    print(
        f"braket quantum task, {QUBITS} qubits, {SHOTS} shots: run_task {figures['jobforge_s'] * 1000:.1f} ms, "
        f"LocalSimulator {figures['direct_s'] * 1000:.1f} ms, ratio {figures['ratio']:.2f} (target <= 1.5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
