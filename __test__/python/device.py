"""The device side of the emulator's device scenario, with Microsoft's Python device SDK
(azure-iot-device, pinned in requirements.txt, unmodified): answers the `reboot` method with
{"rebooted": <payload tag>} and echoes a desired `color` as the reported `sawColor`.

    device.py CONNECTION_STRING CA_PEM_PATH [--websockets] [--expect-refusal]

Prints one JSON line: {"connected": true} once connected (then serves until stdin closes), or,
with --expect-refusal, {"refused": "<exception class>"} (or {"connected": true} when the hub
wrongly admitted it).
"""
import json
import sys

from azure.iot.device import IoTHubDeviceClient, MethodResponse


def say(obj):
    print(json.dumps(obj), flush=True)


def main():
    connection_string, ca_path = sys.argv[1], sys.argv[2]
    flags = set(sys.argv[3:])
    with open(ca_path) as f:
        ca = f.read()
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string,
        websockets="--websockets" in flags,
        server_verification_cert=ca,
        connection_retry=False,
    )

    def on_method(request):
        tag = (request.payload or {}).get("tag")
        client.send_method_response(
            MethodResponse.create_from_method_request(request, 200, {"rebooted": tag})
        )

    def on_desired(patch):
        if isinstance(patch.get("color"), str):
            client.patch_twin_reported_properties({"sawColor": patch["color"]})

    try:
        client.connect()
    except Exception as e:  # the refusal is the expected outcome then
        if "--expect-refusal" in flags:
            say({"refused": type(e).__name__, "message": str(e)})
            return
        raise
    if "--expect-refusal" in flags:
        say({"connected": True})
        client.shutdown()
        return
    # Setting a handler subscribes (and would connect first): after connect, so a refused
    # connection surfaces from connect() above.
    client.on_method_request_received = on_method
    client.on_twin_desired_properties_patch_received = on_desired
    say({"connected": True})
    sys.stdin.read()  # until the test closes stdin
    client.shutdown()


if __name__ == "__main__":
    main()
