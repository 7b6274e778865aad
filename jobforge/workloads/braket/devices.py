"""The Braket device catalogue: what GetDevice and SearchDevices answer.

SV1 and DM1 are served by amazon-braket-default-simulator's state-vector and
density-matrix simulators, with those simulators' own capabilities documents.
The other devices of the providers the Braket SDK lists as current (QPUs,
the retired TN1) are listed so that clients get an honest answer: OFFLINE (or
RETIRED) with the reason in the capabilities' ``deviceDocumentation.summary``,
and ``is_runnable`` false so the API answers DeviceOfflineException /
DeviceRetiredException instead of simulating a QPU under its name. Each has a
typed capabilities document of its provider's schema, holding only published
facts, so the SDK's ``AwsDevice(...).properties`` parses for every device.

Not listed, as on AWS: the devices of providers that left Braket (the SDK keeps
them in private groups only). Not listed either: a device whose schema requires
data jobforge does not have (AQT's calibration, which changes daily), rather
than a document with invented values.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from dataclasses import dataclass
from enum import StrEnum

from braket.devices import Devices
from braket.devices.local_simulator import LocalSimulator

ONLINE, OFFLINE, RETIRED = "ONLINE", "OFFLINE", "RETIRED"

SV1 = Devices.Amazon.SV1.value
DM1 = Devices.Amazon.DM1.value

# The local backend (entry point of amazon-braket-default-simulator) behind each ARN.
_SIMULATOR_BACKENDS = {SV1: "braket_sv", DM1: "braket_dm"}

# Names that reach the same simulators without an ARN: the backend names of
# LocalSimulator and the `local:<provider>/<backend>` form used in job device configs.
_ALIASES = {
    alias: arn
    for arn, backend in _SIMULATOR_BACKENDS.items()
    for alias in (backend, f"local:braket/{backend}")
}

# Provider names as the Braket service reports them, keyed by the SDK's Devices group.
_PROVIDERS = {
    "Amazon": "Amazon Braket",
    "AQT": "AQT",
    "DWave": "D-Wave Systems",
    "IonQ": "IonQ",
    "IQM": "IQM",
    "OQC": "Oxford",
    "QuEra": "QuEra",
    "Rigetti": "Rigetti",
    "Xanadu": "Xanadu",
}

# Shots per task SV1 and DM1 take on AWS ("Compare simulators" in the Braket developer guide):
# advertised and enforced here instead of the local simulators' [0, 2**63 - 1].
_SIMULATOR_SHOTS_RANGE = (0, 100_000)

# How often the SDK should poll GetQuantumTask; local simulations finish in milliseconds.
_POLL_INTERVAL_MS = 100


@dataclass(frozen=True)
class Device:
    arn: str
    name: str
    provider: str
    type: str  # QPU | SIMULATOR
    status: str  # ONLINE | OFFLINE | RETIRED
    reason: str  # why it cannot run here; empty when it can


def _known_devices() -> dict[str, Device]:
    """Every device ARN of the SDK's current providers, current and retired, that jobforge can describe.

    The SDK marks retired devices (and TN1) with a leading underscore in its
    per-provider enums; providers that left Braket are only in its private groups.
    """
    devices = {}
    for group_name, group in vars(Devices).items():
        if group_name.startswith("_") or not (isinstance(group, type) and issubclass(group, StrEnum)):
            continue
        provider = _PROVIDERS.get(group_name, group_name)
        for member in group:
            arn = member.value
            name = arn.rsplit("/", 1)[-1]
            is_simulator = "/quantum-simulator/" in arn
            if not (is_simulator or _device_path(arn) in _GATE_MODEL_QPUS or _device_path(arn) in _AHS_QPUS):
                continue  # its schema requires data jobforge does not have
            if arn in _SIMULATOR_BACKENDS:
                status, reason = ONLINE, ""
            elif member.name.startswith("_"):
                status = RETIRED
                reason = f"{provider} {name.upper() if is_simulator else name} has been retired from Amazon Braket."
            elif is_simulator:
                status = OFFLINE
                reason = f"jobforge does not run the {name.upper()} simulator; use SV1 or DM1."
            else:
                status = OFFLINE
                reason = (
                    f"{provider} {name} is quantum hardware that jobforge cannot reach, and it is "
                    "never simulated under its name; run on SV1 or DM1 instead."
                )
            devices[arn] = Device(
                arn=arn,
                name=name.upper() if is_simulator else name,
                provider=provider,
                type="SIMULATOR" if is_simulator else "QPU",
                status=status,
                reason=reason,
            )
    return devices


def _device_path(arn: str) -> str:
    """``provider/name`` of a QPU ARN."""
    return arn.split("/qpu/", 1)[-1]


def resolve(device: str) -> str:
    """The catalogue ARN for a device ARN or local simulator name; KeyError if unknown."""
    arn = _ALIASES.get(device, device)
    if arn not in _DEVICES:
        raise KeyError(device)
    return arn


def list_devices() -> list[dict]:
    """Every device as a SearchDevices ``DeviceSummary``."""
    return [_summary(device) for device in _DEVICES.values()]


def get_device(
    device: str, *, queued_tasks: int = 0, queued_priority_tasks: int = 0, queued_jobs: int = 0
) -> dict:
    """GetDevice's output for a device ARN or local name; KeyError if unknown.

    The queue sizes are the caller's to count (tasks created by jobs are the
    priority queue, as on Braket).
    """
    record = _DEVICES[resolve(device)]
    return {
        **_summary(record),
        "deviceCapabilities": capabilities_json(record.arn),
        "deviceQueueInfo": [
            {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": str(queued_tasks), "queuePriority": "Normal"},
            {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": str(queued_priority_tasks), "queuePriority": "Priority"},
            {"queue": "JOBS_QUEUE", "queueSize": str(queued_jobs)},
        ],
    }


def is_runnable(device: str) -> bool:
    """True when quantum tasks on this device ARN or local name really run here."""
    try:
        return _DEVICES[resolve(device)].status == ONLINE
    except KeyError:
        return False


def status(device: str) -> str:
    """ONLINE, OFFLINE or RETIRED; KeyError if unknown."""
    return _DEVICES[resolve(device)].status


def unavailable_reason(device: str) -> str:
    """Why tasks on this device cannot run here (empty for runnable devices); KeyError if unknown."""
    return _DEVICES[resolve(device)].reason


def simulator_backend(device: str) -> str:
    """The LocalSimulator backend name that runs a runnable device; KeyError otherwise."""
    return _SIMULATOR_BACKENDS[resolve(device)]


def _summary(device: Device) -> dict:
    return {
        "deviceArn": device.arn,
        "deviceName": device.name,
        "providerName": device.provider,
        "deviceType": device.type,
        "deviceStatus": device.status,
    }


@functools.cache
def capabilities_json(arn: str) -> str:
    """The ``deviceCapabilities`` JSON string of a catalogue ARN."""
    device = _DEVICES[arn]
    if device.status == ONLINE:
        document = json.loads(LocalSimulator(_SIMULATOR_BACKENDS[arn]).properties.json())
        service = document["service"]
        service["shotsRange"] = list(_SIMULATOR_SHOTS_RANGE)
        # paradigm.qubitCount stays the local backend's own limit (braket_sv and braket_dm
        # hold the full state vector / density matrix in this host's memory), not AWS's 34
        # (SV1) and 17 (DM1) qubits: advertising more qubits than this host can simulate
        # would only turn a refusal at CreateQuantumTask into a failed task.
        service["getTaskPollIntervalMillis"] = _POLL_INTERVAL_MS
        service["deviceDocumentation"] = {
            "summary": (
                f"{device.name} served by jobforge with amazon-braket-default-simulator's "
                f"{_SIMULATOR_BACKENDS[arn]} backend ({document['paradigm']['qubitCount']} qubits)."
            )
        }
        return json.dumps(document)
    return _offline_capabilities(device)


# Published hardware facts for the gate-model QPUs, which get a typed capabilities document
# while they cannot run here: (qubit count, native gate set, fully connected). Nothing else
# about them is stated: no calibration (``standardized``, ``provider``), no connectivity
# graph, no execution windows or prices. An empty gate set: none is published for the device.
_ASPEN_GATES = ("RX", "RZ", "CZ", "CPHASE", "XY")
_GATE_MODEL_QPUS = {
    "ionq/Harmony": (11, ("GPI", "GPI2", "MS"), True),
    "ionq/Aria-1": (25, ("GPI", "GPI2", "MS"), True),
    "ionq/Aria-2": (25, ("GPI", "GPI2", "MS"), True),
    "ionq/Forte-1": (36, ("GPI", "GPI2", "ZZ"), True),
    "ionq/Forte-Enterprise-1": (36, ("GPI", "GPI2", "ZZ"), True),
    "iqm/Garnet": (20, ("CZ", "PRX"), False),
    "iqm/Emerald": (54, ("CZ", "PRX"), False),
    "rigetti/Aspen-8": (31, _ASPEN_GATES, False),
    "rigetti/Aspen-9": (32, _ASPEN_GATES, False),
    "rigetti/Aspen-10": (32, _ASPEN_GATES, False),
    "rigetti/Aspen-11": (40, _ASPEN_GATES, False),
    "rigetti/Aspen-M-1": (80, _ASPEN_GATES, False),
    "rigetti/Aspen-M-2": (80, _ASPEN_GATES, False),
    "rigetti/Aspen-M-3": (79, _ASPEN_GATES, False),
    "rigetti/Ankaa-2": (84, ("RX", "RZ", "ISWAP"), False),
    "rigetti/Ankaa-3": (84, ("RX", "RZ", "ISWAP"), False),
    "rigetti/Cepheus-1-108Q": (108, (), False),
}
# Analog Hamiltonian simulation QPUs: their published paradigm (lattice, Rydberg ranges, performance).
_AHS_QPUS = {"quera/Aquila": "aquila_paradigm.json"}
_TN1_QUBITS = 50  # TN1's published maximum


def _schema_classes(provider_path: str):
    """(capabilities class, device-parameters class) of a provider's braket.device_schema package."""
    provider = provider_path.split("/", 1)[0]
    if provider == "ionq":
        from braket.device_schema.ionq import IonqDeviceCapabilities, IonqDeviceParameters

        return IonqDeviceCapabilities, IonqDeviceParameters
    if provider == "iqm":
        from braket.device_schema.iqm import IqmDeviceCapabilities, IqmDeviceParameters

        return IqmDeviceCapabilities, IqmDeviceParameters
    from braket.device_schema.rigetti import RigettiDeviceCapabilities, RigettiDeviceParameters

    return RigettiDeviceCapabilities, RigettiDeviceParameters


def _offline_service(device: Device) -> dict:
    """The service properties of a device that cannot run here: no shots, no execution windows, and why."""
    return {
        "braketSchemaHeader": {"name": "braket.device_schema.device_service_properties", "version": "1"},
        "executionWindows": [],
        "shotsRange": [0, 0],
        "deviceDocumentation": {"summary": device.reason},
    }


def _offline_capabilities(device: Device) -> str:
    """The typed capabilities document of a device that cannot run here, built with the schema classes.

    ``service.shotsRange`` is [0, 0] and the OpenQASM action lists only the
    native gates: no shots are taken on such a device here, whatever the device
    takes on AWS, and ``deviceDocumentation.summary`` says why.
    """
    service = _offline_service(device)
    openqasm = {"actionType": "braket.ir.openqasm.program", "version": ["1"]}
    if device.arn.endswith("/quantum-simulator/amazon/tn1"):
        from braket.device_schema.simulators import (
            GateModelSimulatorDeviceCapabilities,
            GateModelSimulatorDeviceParameters,
        )

        document = GateModelSimulatorDeviceCapabilities.parse_obj({
            "braketSchemaHeader": {"name": "braket.device_schema.simulators.gate_model_simulator_device_capabilities",
                                   "version": "1"},
            "service": service,
            "action": {"braket.ir.openqasm.program": {**openqasm, "supportedOperations": []}},
            "paradigm": {"braketSchemaHeader": {
                "name": "braket.device_schema.simulators.gate_model_simulator_paradigm_properties", "version": "1"},
                "qubitCount": _TN1_QUBITS},
            "deviceParameters": GateModelSimulatorDeviceParameters.schema(),
        })
        return document.json()
    path = _device_path(device.arn)
    if path in _AHS_QPUS:
        return _ahs_capabilities(service, path)
    qubits, native_gates, fully_connected = _GATE_MODEL_QPUS[path]
    capabilities_class, parameters_class = _schema_classes(path)
    header = capabilities_class.__fields__["braketSchemaHeader"].default
    document = capabilities_class.parse_obj({
        "braketSchemaHeader": header.dict(),
        "service": service,
        "action": {"braket.ir.openqasm.program": {
            **openqasm, "supportedOperations": [gate.lower() for gate in native_gates]}},
        "paradigm": {
            "braketSchemaHeader": {"name": "braket.device_schema.gate_model_qpu_paradigm_properties", "version": "1"},
            "qubitCount": qubits,
            "nativeGateSet": list(native_gates),
            "connectivity": {"fullyConnected": fully_connected, "connectivityGraph": {}},
        },
        "deviceParameters": parameters_class.schema(),
    })
    return document.json()


def _ahs_capabilities(service: dict, path: str) -> str:
    from braket.device_schema.quera import QueraAhsParadigmProperties, QueraDeviceCapabilities

    paradigm = json.loads(resources.files(__package__).joinpath(_AHS_QPUS[path]).read_text())
    document = QueraDeviceCapabilities.parse_obj({
        "braketSchemaHeader": QueraDeviceCapabilities.__fields__["braketSchemaHeader"].default.dict(),
        "service": service,
        "action": {"braket.ir.ahs.program": {"actionType": "braket.ir.ahs.program", "version": ["1"]}},
        "paradigm": {"braketSchemaHeader": QueraAhsParadigmProperties.__fields__["braketSchemaHeader"].default.dict(),
                     **paradigm},
        "deviceParameters": {},
    })
    return document.json()


_DEVICES = _known_devices()
