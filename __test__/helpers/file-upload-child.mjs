// Run by __test__/file-upload.test.mjs under `iothub-emulator exec --storage azurite
// --file-notifications`: Microsoft's clients as a user runs them, trusting the hub's CA through
// NODE_EXTRA_CA_CERTS (hub and Azurite alike). Prints one JSON line with what it saw.
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'

import { shimAzureIothub } from './device-sdks.mjs'

// azure-iot-device-http and azure-iothub pass `host:port` as https.request's host: the suites'
// shim splits the port off (the CA comes from NODE_EXTRA_CA_CERTS, as for any user of exec).
shimAzureIothub()
const require = createRequire(import.meta.url)
const iothub = require('azure-iothub')
const { Client: DeviceClient } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { Http } = require('azure-iot-device-http')
const { BlobServiceClient, BlockBlobClient } = require('@azure/storage-blob')

const cs = process.env.IOTHUB_CONNECTION_STRING
const hostName = /HostName=([^;]+)/.exec(cs)[1]
const registry = iothub.Registry.fromConnectionString(cs)

async function device(deviceId, transport) {
  const { responseBody } = await registry.create({ deviceId, status: 'enabled', authentication: { symmetricKey: { primaryKey: null, secondaryKey: null } } })
  const key = responseBody.authentication.symmetricKey.primaryKey
  return DeviceClient.fromConnectionString(`HostName=${hostName};DeviceId=${deviceId};SharedAccessKey=${key}`, transport)
}

const errorOf = (p) => p.then(() => null, (e) => ({ name: e.constructor.name, status: e.statusCode ?? e.response?.statusCode ?? null, message: e.message }))

const out = { notifications: [], contents: {}, errors: {} }
const service = iothub.Client.fromConnectionString(cs)
await service.open()
const receiver = await new Promise((resolve, reject) => service.getFileNotificationReceiver((err, r) => (err ? reject(err) : resolve(r))))
receiver.on('message', (msg) => {
  out.notifications.push(JSON.parse(msg.getData().toString()))
  receiver.complete(msg, () => {})
})

const payloads = {
  'mqtt.txt': Buffer.from('uploaded over the Mqtt client'),
  'http.txt': Buffer.from('uploaded over the Http client, a little longer'),
  'pair.bin': Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251)),
  'silent.txt': Buffer.from('never notified'),
}

const mqttDevice = await device('upload-mqtt', Mqtt)
await mqttDevice.open()
await mqttDevice.uploadToBlob('mqtt.txt', Readable.from([payloads['mqtt.txt']]), payloads['mqtt.txt'].length)

const httpDevice = await device('upload-http', Http)
await httpDevice.uploadToBlob('http.txt', Readable.from([payloads['http.txt']]), payloads['http.txt'].length)

// The two-step API with @azure/storage-blob in between, as the SDK's samples do it.
const pairDevice = await device('upload-pair', Mqtt)
const sas = await pairDevice.getBlobSharedAccessSignature('pair.bin')
out.sas = { ...sas, sasToken: undefined, sasTokenShape: sas.sasToken.replace(/sig=[^&]+/, 'sig=…').replace(/se=[^&]+/, 'se=…') }
const blobUrl = `https://${sas.hostName}/${sas.containerName}/${sas.blobName}${sas.sasToken}`
await new BlockBlobClient(blobUrl).upload(payloads['pair.bin'], payloads['pair.bin'].length)
// Scoped to that blob: the same SAS cannot write another one.
out.errors.otherBlob = await errorOf(new BlockBlobClient(blobUrl.replace('pair.bin', 'other.bin')).upload('x', 1))
await pairDevice.notifyBlobUploadStatus(sas.correlationId, true, 200, 'uploaded')
// A correlation id is used once.
out.errors.notifiedTwice = await errorOf(pairDevice.notifyBlobUploadStatus(sas.correlationId, true, 200, 'again'))

// Uploaded but never notified: no notification.
const silent = await pairDevice.getBlobSharedAccessSignature('silent.txt')
await new BlockBlobClient(`https://${silent.hostName}/${silent.containerName}/${silent.blobName}${silent.sasToken}`).upload(payloads['silent.txt'], payloads['silent.txt'].length)
// A failed upload, notified as such: no notification either.
const failed = await pairDevice.getBlobSharedAccessSignature('failed.txt')
await pairDevice.notifyBlobUploadStatus(failed.correlationId, false, 500, 'the upload failed')

// Ten active uploads per device: the eleventh is refused (the silent one is still active).
const busy = await device('upload-busy', Http)
for (let i = 0; i < 10; i++) await busy.getBlobSharedAccessSignature(`busy-${i}.txt`)
out.errors.eleventh = await errorOf(busy.getBlobSharedAccessSignature('busy-10.txt'))

// An unknown device.
const ghost = DeviceClient.fromConnectionString(`HostName=${hostName};DeviceId=ghost;SharedAccessKey=${Buffer.alloc(32).toString('base64')}`, Http)
out.errors.unknownDevice = await errorOf(ghost.getBlobSharedAccessSignature('x.txt'))

// Three notifications expected; wait for them, then a little longer for any that should not come.
const deadline = Date.now() + 15_000
while (out.notifications.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
await new Promise((r) => setTimeout(r, 1500))

// What storage holds, read through the linked account's connection string.
const container = BlobServiceClient.fromConnectionString(process.env.STORAGE_CONNECTION_STRING).getContainerClient('fileupload')
for (const [deviceId, name] of [['upload-mqtt', 'mqtt.txt'], ['upload-http', 'http.txt'], ['upload-pair', 'pair.bin'], ['upload-pair', 'silent.txt']]) {
  const data = await container.getBlockBlobClient(`${deviceId}/${name}`).downloadToBuffer()
  out.contents[`${deviceId}/${name}`] = data.equals(payloads[name])
}
out.sizes = Object.fromEntries(Object.entries(payloads).map(([k, v]) => [k, v.length]))

await Promise.all([mqttDevice.close(), pairDevice.close(), receiver.detach?.(), service.close()].map((p) => Promise.resolve(p).catch(() => {})))
console.log(JSON.stringify(out))
process.exit(0)
