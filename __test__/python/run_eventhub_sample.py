"""Runs one of azure-eventhub's samples unmodified against the emulator (the sample file comes from
the pinned source archive, extracted by scripts/python-sdk.mjs's pythonSample).

    IOTHUB_CONN_STR=... python -u run_eventhub_sample.py CA_PEM_PATH SAMPLE_PATH

- Connection string: the sample reads it from the environment variable IOTHUB_CONN_STR, which the
  test sets; nothing in the sample is patched.
- Trust: neither uamqp nor pyamqp takes a CA here; both read certifi's bundle, which gets the hub's
  CA appended (as service.py does) before the sample imports them.
- What the test checks: the sample prints only "received N events from partition P". So that the
  test sees what it built and read, the EventHubConsumerClient it imports is a subclass that also
  prints, as JSON lines, the Event Hubs endpoint and entity it is built from (never the key) and
  each event's body. The sample receives forever: the test stops the process.
"""
import json
import runpy
import sys
import tempfile

import certifi


def trust(ca_path):
    bundle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    with open(certifi.where()) as roots, open(ca_path) as ca:
        bundle.write(roots.read() + "\n" + ca.read())
    bundle.close()
    certifi.where = lambda: bundle.name


def observe_consumer_client():
    import azure.eventhub.aio

    class ObservedConsumerClient(azure.eventhub.aio.EventHubConsumerClient):
        @classmethod
        def from_connection_string(cls, conn_str, **kwargs):
            fields = dict(field.split("=", 1) for field in conn_str.split(";") if field)
            print(json.dumps({"endpoint": fields["Endpoint"], "entityPath": fields["EntityPath"]}), flush=True)
            return super().from_connection_string(conn_str, **kwargs)

        async def receive_batch(self, on_event_batch, **kwargs):
            async def printing(partition_context, events):
                for event in events:
                    print(json.dumps({"body": event.body_as_json()}), flush=True)
                await on_event_batch(partition_context, events)

            return await super().receive_batch(printing, **kwargs)

    azure.eventhub.aio.EventHubConsumerClient = ObservedConsumerClient


if __name__ == "__main__":
    ca_path, sample_path = sys.argv[1:]
    trust(ca_path)
    observe_consumer_client()
    runpy.run_path(sample_path, run_name="__main__")
