"""Run by __test__/python-package.test.mjs with pytest, in a fresh venv where the iothub-emulator
wheel is installed: the `iothub` fixture (the plugin comes from the wheel's pytest11 entry point)
serving Microsoft's Python SDKs, unmodified — azure-iot-device (MQTT and MQTT over WebSockets) and
azure-iot-hub (REST: direct methods, twins; AMQP: cloud-to-device messages).

Every hub's pid goes to the file named by $IOTHUB_TEST_PIDS, so that the Node test can check that
none is left running once pytest has exited. The device SDK dials ports 8883 and 443 only (it has
no port setting): those tests use `standard_ports=True` on a 127.0.0.x of their own, which needs root.
"""

import os
import queue

import certifi
import pytest
from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the device SDK dials ports 443 and 8883, which need root")




def record(hub):
    with open(os.environ["IOTHUB_TEST_PIDS"], "a") as f:
        f.write(f"{hub.pid}\n")


@pytest.fixture
def service_trust(iothub, monkeypatch, tmp_path):
    """azure-iot-hub has no CA option: its REST calls (requests) trust REQUESTS_CA_BUNDLE and its
    AMQP (uamqp) certifi.where(), so both get certifi's roots plus the hub's CA."""
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text(open(certifi.where()).read() + "\n" + iothub.ca)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setattr(certifi, "where", lambda: str(bundle))
    return IoTHubRegistryManager.from_connection_string(iothub.connection_string)


def test_session_hub(iothub, iothub_session, request):
    record(iothub)
    assert iothub is iothub_session  # no marker, the default scope: the session's hub
    assert iothub.health()["devices"] == int(request.config.getoption("iothub_devices"))
    device = iothub.create_device("py-session")
    assert device.connection_string == f"HostName={iothub.host_name};DeviceId=py-session;SharedAccessKey={device.primary_key}"
    assert iothub.connection_string.startswith(f"HostName={iothub.host_name};SharedAccessKeyName=iothubowner;")
    assert iothub.event_hub_connection_string == iothub.ready.get("eventHubConnectionString")
    assert "BEGIN CERTIFICATE" in iothub.ca and open(iothub.ca_path).read() == iothub.ca


@pytest.mark.iothub(devices=2, seed={"devices": [{"deviceId": "seeded"}]})
def test_marker_gives_a_hub_of_its_own(iothub, iothub_session):
    record(iothub)
    assert iothub is not iothub_session and iothub.port != iothub_session.port
    assert iothub.health()["devices"] == 3  # the marker's 2 simulated devices and the seed's one
    iothub.create_device("py-extra")
    assert iothub.health()["devices"] == 4
    iothub.reset()  # back to the initial devices
    assert iothub.health()["devices"] == 3


def connect(iothub, device_id, websockets):
    device = iothub.create_device(device_id)
    client = IoTHubDeviceClient.create_from_connection_string(
        device.connection_string, websockets=websockets, server_verification_cert=iothub.ca, connection_retry=False
    )
    client.connect()
    return client


@needs_root
@pytest.mark.parametrize(
    "websockets",
    [
        pytest.param(False, id="mqtt", marks=pytest.mark.iothub(standard_ports=True, host="127.0.0.46")),
        pytest.param(True, id="websockets", marks=pytest.mark.iothub(standard_ports=True, host="127.0.0.47")),
    ],
)
def test_direct_method_and_twin_patch(iothub, service_trust, websockets):
    record(iothub)
    registry = service_trust
    client = connect(iothub, "py-device", websockets)
    try:
        patches = queue.Queue()

        def on_method(request):
            client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"rebooted": request.payload["tag"]}))

        client.on_method_request_received = on_method
        client.on_twin_desired_properties_patch_received = patches.put

        answer = registry.invoke_device_method("py-device", CloudToDeviceMethod(method_name="reboot", payload={"tag": "t1"}, response_timeout_in_seconds=30))
        assert (answer.status, answer.payload) == (200, {"rebooted": "t1"})

        twin = registry.get_twin("py-device")
        registry.update_twin("py-device", Twin(properties=TwinProperties(desired={"color": "red"})), twin.etag)
        assert patches.get(timeout=30)["color"] == "red"
        assert client.get_twin()["desired"]["color"] == "red"
    finally:
        client.shutdown()


@needs_root
@pytest.mark.iothub(standard_ports=True, host="127.0.0.48")
def test_cloud_to_device_message(iothub, service_trust):
    record(iothub)
    client = connect(iothub, "py-c2d", False)
    try:
        service_trust.send_c2d_message("py-c2d", "hello from azure-iot-hub", properties={"kind": "greeting"})
        message = client.receive_message(timeout=30)
        assert message is not None, "no cloud-to-device message within 30 s"
        assert message.data == b"hello from azure-iot-hub"
        assert message.custom_properties["kind"] == "greeting"
    finally:
        client.shutdown()
