"""A device of the gateway-fault suite, with Microsoft's Python device SDK (azure-iot-device,
pinned in requirements.txt, unmodified) and its automatic reconnect on, as an application runs
it. Driven by JSON lines on stdin; says what it sees as JSON lines on stdout.

    fault_device.py CONNECTION_STRING CA_PEM_PATH [--websockets]

stdin:
  {"fault": KIND, "delay": SECS}  sends a fault message built as the SDK's own e2e suite builds
                                  it (tests/e2e/iothub_e2e/utils.py: get_fault_injection_message)
  {"send": ID}                    sends telemetry with message id ID
stdout:
  {"connected": true}             once connected, with the method and desired-patch handlers set
  {"change": N, "at": T}          the Nth connection state change the SDK reports
                                  (on_connection_state_change: 1 the connect, 2 a drop, 3 the
                                  reconnect; the handler runs on its own thread, after the fact,
                                  so `client.connected` may already say the next state)
  {"dropped": ERROR, "at": T}     an error the SDK reports from its background threads
                                  (on_background_exception: ConnectionDroppedError on a drop)
  {"sent": ID, "at": T}           once the hub acknowledged a message (for the fault: "fault",
                                  and "began": T when the script began sending it)
  {"method": NAME, "payload": P}  a direct method call, answered 200 {"pong": P}
  {"desired": PATCH}              a desired-property patch
T is time.time() when the SDK told the script.
"""
import json
import logging
import sys
import threading
import time

from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse

# The close reasons of the SDK's e2e utils.
CLOSE_REASONS = {
    "KillTcp": " severs the TCP connection ",
    "ShutDownMqtt": " cleanly shutdowns the MQTT connection ",
}

printing = threading.Lock()


def say(obj):
    with printing:
        print(json.dumps(obj), flush=True)


def fault_message(kind, delay):
    message = Message(" ")
    message.custom_properties["AzIoTHub_FaultOperationType"] = kind
    message.custom_properties["AzIoTHub_FaultOperationCloseReason"] = CLOSE_REASONS[kind]
    message.custom_properties["AzIoTHub_FaultOperationDelayInSecs"] = delay
    return message


def main():
    # The SDK's warnings (a failed reconnect attempt, …) on stderr, which the suite shows when
    # a step does not come.
    logging.basicConfig(level=logging.WARNING)
    connection_string, ca_path = sys.argv[1], sys.argv[2]
    with open(ca_path) as f:
        ca = f.read()
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string,
        websockets="--websockets" in sys.argv[3:],
        server_verification_cert=ca,
        # The SDK's default policy (retry on), retrying every second rather than every 10.
        connection_retry_interval=1,
    )

    changes = 0

    def on_state():
        nonlocal changes
        changes += 1
        say({"change": changes, "at": time.time()})

    def on_background_exception(error):
        say({"dropped": type(error).__name__, "at": time.time()})

    def on_method(request):
        say({"method": request.name, "payload": request.payload})
        client.send_method_response(
            MethodResponse.create_from_method_request(request, 200, {"pong": request.payload})
        )

    def on_desired(patch):
        say({"desired": patch})

    client.on_connection_state_change = on_state
    client.on_background_exception = on_background_exception
    client.connect()
    client.on_method_request_received = on_method
    client.on_twin_desired_properties_patch_received = on_desired
    say({"connected": True})
    for line in sys.stdin:
        command = json.loads(line)
        if "fault" in command:
            began = time.time()
            client.send_message(fault_message(command["fault"], command["delay"]))
            say({"sent": "fault", "began": began, "at": time.time()})
        elif "send" in command:
            message = Message(json.dumps({"after": "fault"}))
            message.message_id = command["send"]
            client.send_message(message)
            say({"sent": command["send"], "at": time.time()})
    client.shutdown()


if __name__ == "__main__":
    main()
