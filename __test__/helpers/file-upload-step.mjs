// One step of a file upload with Microsoft's clients, run as a child (NODE_EXTRA_CA_CERTS = the
// hub's CA, which Azurite's certificate is issued by too) so that a test can kill and restart
// the hub between steps. Prints one JSON line.
//   upload CS NAME TEXT notify|silent   azure-iot-device's getBlobSharedAccessSignature, the blob
//                                       written with @azure/storage-blob, notifyBlobUploadStatus
//                                       (notify) or not (silent) → {correlationId}
//   notify CS CORRELATION_ID            notifyBlobUploadStatus → {ok} or {error: message}
//   receive SERVICE_CS MS               azure-iothub's getFileNotificationReceiver for MS ms,
//                                       completing each → {notifications: [...]}
//   hold SERVICE_CS MS                  a receiver of the notifications that settles none, for MS
//                                       ms: one line {held: notification} per message
//   download STORAGE_CS BLOB            the blob's text, read with @azure/storage-blob → {text}
import { createRequire } from 'node:module'

import { shimAzureIothub } from './device-sdks.mjs'

shimAzureIothub() // azure-iot-device-http and azure-iothub pass `host:port` as https' host
const require = createRequire(import.meta.url)
const { Client: DeviceClient } = require('azure-iot-device')
const { Http } = require('azure-iot-device-http')
const iothub = require('azure-iothub')
const { BlobServiceClient, BlockBlobClient } = require('@azure/storage-blob')

const [step, cs, ...rest] = process.argv.slice(2)
const say = (o) => console.log(JSON.stringify(o))

if (step === 'upload') {
  const [name, text, how] = rest
  const device = DeviceClient.fromConnectionString(cs, Http)
  const sas = await device.getBlobSharedAccessSignature(name)
  const body = Buffer.from(text)
  await new BlockBlobClient(`https://${sas.hostName}/${sas.containerName}/${sas.blobName}${sas.sasToken}`).upload(body, body.length)
  if (how === 'notify') await device.notifyBlobUploadStatus(sas.correlationId, true, 200, 'uploaded')
  await device.close()
  say({ correlationId: sas.correlationId })
} else if (step === 'notify') {
  const device = DeviceClient.fromConnectionString(cs, Http)
  try {
    await device.notifyBlobUploadStatus(rest[0], true, 200, 'uploaded')
    say({ ok: true })
  } catch (e) {
    say({ error: e.message })
  }
  await device.close()
} else if (step === 'receive') {
  const service = iothub.Client.fromConnectionString(cs)
  await service.open()
  const receiver = await new Promise((resolve, reject) => service.getFileNotificationReceiver((err, r) => (err ? reject(err) : resolve(r))))
  const notifications = []
  receiver.on('message', (msg) => {
    const notification = JSON.parse(msg.getData().toString())
    notifications.push(notification)
    receiver.complete(msg, () => {})
  })
  await new Promise((resolve) => setTimeout(resolve, Number(rest[0])))
  await service.close()
  say({ notifications })
} else if (step === 'hold') {
  // rhea-promise, not azure-iothub: azure-iothub's receiver accepts each message as it arrives
  // (azure-iot-amqp-base's rhea `autoaccept`), so it can hold none unsettled. This one logs in as
  // the policy (SASL PLAIN `<policy>@sas.root.<hub>`) on the hub's HTTPS port, which speaks AMQP.
  const { Connection } = require('rhea-promise')
  const { serviceToken } = require('../../packages/iothub-emulator/lib/service-token.js')
  const fields = Object.fromEntries(cs.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
  const [host, port] = fields.HostName.split(':')
  const connection = new Connection({
    transport: 'tls', host, hostname: host, port: Number(port), reconnect: false,
    username: `${fields.SharedAccessKeyName}@sas.root.${host.split('.')[0]}`, password: serviceToken(cs),
  })
  await connection.open()
  await connection.createReceiver({
    source: { address: '/messages/serviceBound/filenotifications' },
    autoaccept: false,
    onMessage: ({ message }) => say({ held: JSON.parse(Buffer.from(message.body.content ?? message.body).toString()) }),
    onError: ({ receiver }) => { console.error(`the receiver failed: ${receiver?.error?.condition}`); process.exit(1) },
  })
  await new Promise((resolve) => setTimeout(resolve, Number(rest[0])))
  await connection.close()
} else if (step === 'download') {
  const blob = BlobServiceClient.fromConnectionString(cs).getContainerClient('fileupload').getBlobClient(rest[0])
  say({ text: (await blob.downloadToBuffer()).toString() })
} else {
  console.error(`unknown step ${step}`)
  process.exit(2)
}
