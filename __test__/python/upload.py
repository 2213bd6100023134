"""File upload with Microsoft's Python clients, as their samples do it: azure-iot-device's
get_storage_info_for_blob, azure-storage-blob's BlobClient writing the blob at the SAS URL it
gives (trusting the hub's CA, which Azurite's certificate is issued by), then
notify_blob_upload_status.

    upload.py CONNECTION_STRING CA_PEM_PATH BLOB_NAME TEXT

Prints one JSON line: the storage info (without its SAS token) and the SAS token's shape.
"""
import json
import re
import sys

from azure.iot.device import IoTHubDeviceClient
from azure.storage.blob import BlobClient


def main():
    connection_string, ca_path, blob_name, text = sys.argv[1:5]
    with open(ca_path) as f:
        ca = f.read()
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca, connection_retry=False
    )
    info = client.get_storage_info_for_blob(blob_name)
    url = "https://{hostName}/{containerName}/{blobName}{sasToken}".format(**info)
    try:
        with BlobClient.from_blob_url(url, connection_verify=ca_path) as blob:
            blob.upload_blob(text.encode(), overwrite=True)
        client.notify_blob_upload_status(info["correlationId"], True, 201, "uploaded")
    except Exception as e:
        client.notify_blob_upload_status(info["correlationId"], False, 500, str(e))
        raise
    finally:
        client.shutdown()
    shape = re.sub(r"(sig|se)=[^&]+", r"\1=…", info.pop("sasToken"))
    print(json.dumps({**info, "sasTokenShape": shape}), flush=True)


if __name__ == "__main__":
    main()
