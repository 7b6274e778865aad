"""The Braket device catalogue, read back through the SDK's AwsDevice and schema classes."""

from __future__ import annotations

import json
import warnings

import boto3
import pytest

# The Braket SDK (and the catalogue built on it) is imported by the tests, so that collecting them stays fast.
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
DM1 = "arn:aws:braket:::device/quantum-simulator/amazon/dm1"
TN1 = "arn:aws:braket:::device/quantum-simulator/amazon/tn1"
FORTE = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"
HARMONY = "arn:aws:braket:us-east-1::device/qpu/ionq/Harmony"


def catalogue_session():
    """An AwsSession whose GetDevice is answered by the catalogue."""
    from braket.aws import AwsSession

    from jobforge.workloads.braket import devices

    class CatalogueSession(AwsSession):
        def get_device(self, arn):
            return devices.get_device(arn, queued_tasks=2, queued_priority_tasks=1, queued_jobs=0)

    return CatalogueSession(
        boto_session=boto3.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"))


def capabilities_class(name: str):
    """A device capabilities schema of the Braket SDK, by class name."""
    from braket.device_schema import ionq, iqm, quera, rigetti, simulators

    return next(getattr(module, name) for module in (ionq, iqm, quera, rigetti, simulators) if hasattr(module, name))


@pytest.mark.parametrize(("arn", "backend"), [(SV1, "braket_sv"), (DM1, "braket_dm")])
def test_simulators_are_online_with_the_default_simulator_capabilities(arn, backend):
    from braket.device_schema import DeviceActionType
    from braket.device_schema.simulators import GateModelSimulatorDeviceCapabilities
    from braket.devices import LocalSimulator
    from braket.schema_common import BraketSchemaBase

    from jobforge.workloads.braket import devices

    record = devices.get_device(arn)
    assert record["deviceStatus"] == "ONLINE" and record["deviceType"] == "SIMULATOR"
    assert record["providerName"] == "Amazon Braket"
    capabilities = BraketSchemaBase.parse_raw_schema(record["deviceCapabilities"])
    assert isinstance(capabilities, GateModelSimulatorDeviceCapabilities)
    local = LocalSimulator(backend).properties
    assert capabilities.action == local.action
    assert capabilities.paradigm == local.paradigm  # qubits: what this host's simulator runs
    assert capabilities.service.shotsRange == (0, 100_000)  # AWS's SV1/DM1 range, not the local one
    assert capabilities.deviceParameters == local.deviceParameters
    assert DeviceActionType.OPENQASM in capabilities.action and DeviceActionType.JAQCD in capabilities.action
    assert devices.is_runnable(arn) and devices.simulator_backend(arn) == backend


def test_aws_device_reads_the_catalogue():
    from braket.aws import AwsDevice
    from braket.device_schema.ionq import IonqDeviceCapabilities
    from braket.device_schema.simulators import GateModelSimulatorDeviceCapabilities

    session = catalogue_session()
    sv1 = AwsDevice(SV1, aws_session=session)
    assert (sv1.name, sv1.status, sv1.type.value, sv1.provider_name) == ("SV1", "ONLINE", "SIMULATOR", "Amazon Braket")
    assert sv1.properties.paradigm.qubitCount == 26
    assert sv1.is_available
    assert sv1._poll_interval_seconds == 0.1
    depth = sv1.queue_depth()
    assert depth.jobs == "0" and set(depth.quantum_tasks.values()) == {"2", "1"}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Unable to determine device capabilities" would fail the test
        forte = AwsDevice(FORTE, aws_session=session)
        tn1 = AwsDevice(TN1, aws_session=session)
    assert forte.status == "OFFLINE" and forte.type.value == "QPU" and not forte.is_available
    assert isinstance(forte.properties, IonqDeviceCapabilities)
    assert forte.properties.paradigm.qubitCount == 36 and forte.properties.standardized is None  # no calibration
    assert isinstance(tn1.properties, GateModelSimulatorDeviceCapabilities) and tn1.status == "RETIRED"


@pytest.mark.parametrize(
    ("arn", "status", "reason", "kind"),
    [
        (TN1, "RETIRED", "Amazon Braket TN1 has been retired", "GateModelSimulatorDeviceCapabilities"),
        (FORTE, "OFFLINE", "IonQ Forte-1 is quantum hardware that jobforge cannot reach", "IonqDeviceCapabilities"),
        (HARMONY, "RETIRED", "IonQ Harmony has been retired", "IonqDeviceCapabilities"),
    ],
)
def test_devices_that_cannot_run_here_say_so(arn, status, reason, kind):
    from braket.device_schema.simulators import GateModelSimulatorDeviceCapabilities
    from braket.schema_common import BraketSchemaBase

    from jobforge.workloads.braket import devices

    kind = capabilities_class(kind)
    record = devices.get_device(arn)
    assert record["deviceStatus"] == status
    assert not devices.is_runnable(arn)
    assert reason in devices.unavailable_reason(arn)
    capabilities = BraketSchemaBase.parse_raw_schema(record["deviceCapabilities"])
    assert isinstance(capabilities, kind)
    assert reason in capabilities.service.deviceDocumentation.summary
    assert capabilities.service.shotsRange == (0, 0)  # no shots are taken on it here
    assert capabilities.paradigm.qubitCount > 0
    if kind is not GateModelSimulatorDeviceCapabilities:
        assert capabilities.provider is None and capabilities.standardized is None  # no invented calibration


@pytest.mark.parametrize(
    ("arn", "kind"),
    [
        ("arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet", "IqmDeviceCapabilities"),
        ("arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3", "RigettiDeviceCapabilities"),
        (FORTE, "IonqDeviceCapabilities"),
    ],
)
def test_qpu_documents_have_their_provider_type(arn, kind):
    from braket.schema_common import BraketSchemaBase

    from jobforge.workloads.braket import devices

    kind = capabilities_class(kind)
    record = devices.get_device(arn)
    capabilities = BraketSchemaBase.parse_raw_schema(record["deviceCapabilities"])
    assert isinstance(capabilities, kind) and record["deviceStatus"] in ("OFFLINE", "RETIRED")
    assert capabilities.paradigm.nativeGateSet and "braket.ir.openqasm.program" in capabilities.action
    assert json.loads(record["deviceCapabilities"])["deviceParameters"]["title"].endswith("DeviceParameters")


def test_every_listed_device_has_a_typed_document_of_its_provider():
    from braket.device_schema.quera import QueraDeviceCapabilities
    from braket.device_schema.rigetti import RigettiDeviceCapabilities
    from braket.schema_common import BraketSchemaBase

    from jobforge.workloads.braket import devices

    for summary in devices.list_devices():
        capabilities = BraketSchemaBase.parse_raw_schema(devices.get_device(summary["deviceArn"])["deviceCapabilities"])
        assert capabilities.braketSchemaHeader.name.endswith("_device_capabilities"), summary["deviceArn"]
    aquila = BraketSchemaBase.parse_raw_schema(
        devices.get_device("arn:aws:braket:us-east-1::device/qpu/quera/Aquila")["deviceCapabilities"])
    assert isinstance(aquila, QueraDeviceCapabilities) and aquila.paradigm.qubitCount == 256
    assert list(aquila.action) == ["braket.ir.ahs.program"] and aquila.service.shotsRange == (0, 0)
    cepheus = BraketSchemaBase.parse_raw_schema(
        devices.get_device("arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q")["deviceCapabilities"])
    assert isinstance(cepheus, RigettiDeviceCapabilities) and cepheus.paradigm.qubitCount == 108


def test_devices_jobforge_cannot_describe_are_not_listed():
    from braket.devices import Devices

    from jobforge.workloads.braket import devices

    listed = {summary["deviceArn"] for summary in devices.list_devices()}
    assert Devices.AQT.IbexQ1 not in listed  # its schema requires today's calibration
    assert not any("/d-wave/" in arn or "/xanadu/" in arn or "/oqc/" in arn for arn in listed)  # left Braket
    with pytest.raises(KeyError):
        devices.get_device(Devices.AQT.IbexQ1)


def test_local_names_reach_the_simulators_and_unknown_devices_are_not_found():
    from jobforge.workloads.braket import devices

    assert devices.resolve("braket_sv") == SV1
    assert devices.resolve("local:braket/braket_dm") == DM1
    assert devices.get_device("braket_dm")["deviceArn"] == DM1
    assert devices.is_runnable("braket_sv")
    assert not devices.is_runnable("arn:aws:braket:::device/quantum-simulator/amazon/nope")
    with pytest.raises(KeyError):
        devices.get_device("arn:aws:braket:::device/quantum-simulator/amazon/nope")


def test_search_summaries_cover_the_sdk_catalogue():
    from braket.devices import Devices

    from jobforge.workloads.braket import devices

    summaries = {summary["deviceArn"]: summary for summary in devices.list_devices()}
    for group in (Devices.Amazon, Devices.IonQ, Devices.IQM, Devices.QuEra, Devices.Rigetti):
        for member in group:
            assert member.value in summaries
    assert set(summaries[SV1]) == {"deviceArn", "deviceName", "providerName", "deviceType", "deviceStatus"}
    online = sorted(arn for arn, summary in summaries.items() if summary["deviceStatus"] == "ONLINE")
    assert online == sorted([SV1, DM1])
    assert json.loads(devices.get_device(SV1)["deviceCapabilities"])["service"]["getTaskPollIntervalMillis"] == 100
