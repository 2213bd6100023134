"""A back end reading device telemetry with Microsoft's Python Event Hubs client (azure-eventhub
5, pinned in requirements.txt, unmodified; its AMQP client is pyamqp, pure Python) from the
emulator's built-in events endpoint, with the ready line's eventHubConnectionString as it is.

    events.py CONNECTION_STRING info
    events.py CONNECTION_STRING read PARTITION_ID START COUNT [--exclusive]

`info` prints {"step": "info", "name", "partitionIds", "partitions": {id: {...}}}. `read`
receives from PARTITION_ID starting at START (`-1`: the earliest offset; a number: that
sequence number, inclusive unless --exclusive) until COUNT events arrived, and prints
{"step": "read", "events": [...]}, each event with its body, application properties, system
properties (annotations), sequence number and offset. A step that raises prints
{"step": NAME, "error": "<class>: <text>"} and the script exits 1.
"""
import json
import sys
import threading

from azure.eventhub import EventHubConsumerClient

WAIT_SECONDS = 30


def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def plain(mapping):
    """A dict of the client's (bytes keys and values) as JSON can print it."""
    return {text(k): text(v) if isinstance(v, (bytes, str)) else v for k, v in (mapping or {}).items()}


def info(client):
    props = client.get_eventhub_properties()
    ids = client.get_partition_ids()
    partitions = {}
    for pid in ids:
        p = client.get_partition_properties(pid)
        partitions[pid] = {
            "beginningSequenceNumber": p["beginning_sequence_number"],
            "lastEnqueuedSequenceNumber": p["last_enqueued_sequence_number"],
            "isEmpty": p["is_empty"],
        }
    return {"name": props["eventhub_name"], "partitionIds": ids, "partitions": partitions}


def read(client, partition_id, start, count, inclusive):
    events = []
    enough = threading.Event()
    errors = []

    def on_event(_context, event):
        if event is None:
            return
        events.append({
            "body": event.body_as_str(),
            "properties": plain(event.properties),
            "system": plain(event.system_properties),
            "sequenceNumber": event.sequence_number,
            "offset": event.offset,
        })
        if len(events) >= count:
            enough.set()

    def on_error(_context, error):
        errors.append(f"{type(error).__name__}: {error}")
        enough.set()

    position = start if start == "-1" else int(start)
    receiving = threading.Thread(
        target=client.receive,
        kwargs={
            "on_event": on_event,
            "on_error": on_error,
            "partition_id": partition_id,
            "starting_position": position,
            "starting_position_inclusive": inclusive,
            "max_wait_time": 1,
        },
        daemon=True,
    )
    receiving.start()
    enough.wait(WAIT_SECONDS)
    client.close()
    receiving.join(10)
    if errors:
        raise RuntimeError(errors[0])
    if len(events) < count:
        raise TimeoutError(f"{len(events)} of {count} events within {WAIT_SECONDS} s")
    return {"events": events[:count]}


def main():
    connection_string, command = sys.argv[1:3]
    client = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group="$Default", retry_total=0
    )
    try:
        if command == "info":
            seen = info(client)
        else:
            partition_id, start, count = sys.argv[3:6]
            seen = read(client, partition_id, start, int(count), "--exclusive" not in sys.argv[6:])
        print(json.dumps({"step": command, **seen}), flush=True)
    except Exception as e:  # noqa: BLE001 - the test reads the class and text
        print(json.dumps({"step": command, "error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
