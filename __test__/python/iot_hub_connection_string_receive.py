"""Microsoft's sample iot_hub_connection_string_receive_async.py of azure-eventhub, as a user
pastes it:
https://github.com/Azure/azure-sdk-for-python/blob/main/sdk/eventhub/azure-eventhub/samples/async_samples/iot_hub_connection_string_receive_async.py
(MIT, Copyright (c) Microsoft Corporation). generate_sas_token, parse_iot_conn_str and
convert_iothub_to_eventhub_conn_str are the sample's own code, unchanged but for a raw-string
prefix on its regex (uamqp's ReceiveClient
attaches at messages/events/ConsumerGroups/$Default/Partitions/0 on port 5671 and follows the
LinkRedirect); only the end differs: it prints what it received as JSON lines and stops after
the first event (the sample receives forever).

    IOTHUB_CONN_STR=... iot_hub_connection_string_receive.py CA_PEM_PATH

Trust: neither client has a CA option here; uamqp and pyamqp read certifi's bundle, which gets
the hub's CA appended (as __test__/python/service.py does).
"""
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from base64 import b64encode, b64decode
from hashlib import sha256
from hmac import HMAC
from typing import Tuple
from urllib.parse import urlencode, quote_plus

import certifi


def trust(ca_path):
    bundle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    with open(certifi.where()) as roots, open(ca_path) as ca:
        bundle.write(roots.read() + "\n" + ca.read())
    bundle.close()
    certifi.where = lambda: bundle.name


trust(sys.argv[1])

from uamqp import ReceiveClient, Source  # noqa: E402
from uamqp.errors import LinkRedirect  # noqa: E402

from azure.eventhub.aio import EventHubConsumerClient  # noqa: E402


def generate_sas_token(uri, policy, key, expiry=None):
    """Create a shared access signiture token as a string literal.
    :returns: SAS token as string literal.
    :rtype: str
    """
    if not expiry:
        expiry = time.time() + 3600
    encoded_uri = quote_plus(uri)
    ttl = int(expiry)
    sign_key = '%s\n%d' % (encoded_uri, ttl)
    signature = b64encode(HMAC(b64decode(key), sign_key.encode('utf-8'), sha256).digest())
    result = {
        'sr': uri,
        'sig': signature,
        'se': str(ttl)}
    if policy:
        result['skn'] = policy
    return 'SharedAccessSignature ' + urlencode(result)


def parse_iot_conn_str(iothub_conn_str) -> Tuple[str, str, str]:
    hostname = ''
    shared_access_key_name = ''
    shared_access_key = ''
    for element in iothub_conn_str.split(';'):
        key, _, value = element.partition('=')
        if key.lower() == 'hostname':
            hostname = value.rstrip('/')
        elif key.lower() == 'sharedaccesskeyname':
            shared_access_key_name = value
        elif key.lower() == 'sharedaccesskey':
            shared_access_key = value
    if not all([hostname, shared_access_key_name, shared_access_key]):
        raise ValueError("Invalid connection string")
    return hostname, shared_access_key_name, shared_access_key


def convert_iothub_to_eventhub_conn_str(iothub_conn_str):
    hostname, shared_access_key_name, shared_access_key = parse_iot_conn_str(iothub_conn_str)
    iot_hub_name = hostname.split(".")[0]
    operation = '/messages/events/ConsumerGroups/{}/Partitions/{}'.format('$Default', 0)
    username = '{}@sas.root.{}'.format(shared_access_key_name, iot_hub_name)
    sas_token = generate_sas_token(hostname, shared_access_key_name, shared_access_key)
    uri = 'amqps://{}:{}@{}{}'.format(quote_plus(username),
                                      quote_plus(sas_token), hostname, operation)
    source_uri = Source(uri)
    receive_client = ReceiveClient(source_uri)
    try:
        receive_client.receive_message_batch(max_batch_size=1)
    except LinkRedirect as redirect:
        # Once a redirect error is received, close the original client and recreate a new one to the re-directed address
        receive_client.close()
        fully_qualified_name = redirect.hostname.decode("utf-8")
        # Use regular expression to parse the Event Hub name from the IoT Hub redirection address
        if redirect.address:
            # The regex searches for the Event Hub compatible name in the redirection address. The name is nested in
            # between the port and 'ConsumerGroups'.
            # (ex. "...servicebus.windows.net:12345/<Event Hub name>/ConsumerGroups/...").
            # The regex matches string ':<digits>/', then any characters, then the string '/ConsumerGroups'.
            iot_hub_name = re.search(r":\d+\/.*/ConsumerGroups", str(redirect.address)).group(0).split("/")[1]
        return "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={};EntityPath={}".format(
            fully_qualified_name,
            shared_access_key_name,
            shared_access_key,
            iot_hub_name
        )
    except Exception as exp:
        raise ValueError(
            "{} is not an invalid IoT Hub connection string. The underlying exception is {}".format(
                iothub_conn_str,
                exp,
            )
        )


# Not the sample's: what the test reads (the connection string without its key, then events).
async def receive_events_from_iothub(iothub_conn_str):
    eventhub_conn_str = convert_iothub_to_eventhub_conn_str(iothub_conn_str)
    fields = dict(f.split("=", 1) for f in eventhub_conn_str.split(";") if f)
    print(json.dumps({"endpoint": fields["Endpoint"], "entityPath": fields["EntityPath"]}), flush=True)
    consumer_client = EventHubConsumerClient.from_connection_string(eventhub_conn_str, consumer_group="$Default")
    received = asyncio.Event()

    async def on_event_batch(partition_context, events):
        for event in events:
            print(json.dumps({"body": event.body_as_json(), "partitionId": partition_context.partition_id}), flush=True)
        if events:
            received.set()

    async with consumer_client:
        receiving = asyncio.ensure_future(consumer_client.receive_batch(on_event_batch, starting_position=-1))
        await asyncio.wait_for(received.wait(), 60)
    # Closed, receive_batch would still sleep out its load-balancing interval (30 s).
    receiving.cancel()


if __name__ == '__main__':
    asyncio.run(receive_events_from_iothub(os.environ["IOTHUB_CONN_STR"]))
