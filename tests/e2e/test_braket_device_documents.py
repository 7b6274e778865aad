"""Every device the server lists reads back through the Braket SDK's AwsDevice, as in AWS's getting-started notebook."""

from __future__ import annotations

import warnings

import pytest

from jobforge.testing_server import ServerProcess

from braket_client import sdk_session


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("braket-devices") / "data").start()
    with sdk_session(server) as session:
        yield session
    server.stop()


def test_every_device_parses_without_warnings(session):
    from braket.aws import AwsDevice
    from braket.device_schema import DeviceCapabilities
    from braket.device_schema.quera import QueraDeviceCapabilities
    from braket.devices import Devices

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Unable to determine device capabilities" fails the test
        listed = AwsDevice.get_devices(statuses=["ONLINE", "OFFLINE", "RETIRED"], aws_session=session)
        default = AwsDevice.get_devices(aws_session=session)  # the notebook's call: RETIRED left out
        devices = {device.arn: device for device in listed}
        for arn, device in devices.items():
            assert isinstance(device.properties, DeviceCapabilities), arn
            assert isinstance(AwsDevice(arn, aws_session=session).properties, DeviceCapabilities), arn
    assert {device.arn for device in default} == {arn for arn, d in devices.items() if d.status != "RETIRED"}
    assert devices[Devices.Amazon.SV1].status == "ONLINE" and devices[Devices.Amazon.SV1].is_available
    assert devices[Devices.Amazon._TN1].status == "RETIRED"
    for arn in (Devices.Rigetti.Cepheus1108Q, Devices.QuEra.Aquila):
        assert devices[arn].status == "OFFLINE" and not devices[arn].is_available
    aquila = devices[Devices.QuEra.Aquila].properties
    assert isinstance(aquila, QueraDeviceCapabilities) and aquila.paradigm.qubitCount == 256
    assert "cannot reach" in aquila.service.deviceDocumentation.summary
