// x509 devices with Microsoft's Node device SDK (azure-iot-device + azure-iot-device-mqtt and
// azure-iot-device-amqp, pinned, unmodified, `x509=true` connection strings and
// `setOptions({cert, key})`): a self-signed device registered by thumbprint and a device whose
// certificate a trusted CA (`--device-ca`) signed connect over MQTT and AMQP without a password
// and take a method job; unknown certificates are refused. The registry returns the identities
// as the service does.
//
// Certificates are made with the openssl command line (what Microsoft's own samples use); the
// thumbprint is Node's `X509Certificate.fingerprint`, the SHA-1 of the DER, as IoT Hub takes it.
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import { startEmulator } from './helpers/emulator.mjs'
import { prerequisite } from './helpers/prerequisite.mjs'
import { createIdentity, nodeDeviceScenario, refusal, shimAzureIothub, until } from './helpers/device-sdks.mjs'

const require = createRequire(import.meta.url)
const { JobClient } = require('..')
const { Client: DeviceClient } = require('azure-iot-device')
const { Mqtt } = require('azure-iot-device-mqtt')
const { Amqp } = require('azure-iot-device-amqp')
const { Http } = require('azure-iot-device-http')
const { Message } = require('azure-iot-common')

function hasOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const skip = prerequisite(!hasOpenssl() && 'the openssl command line is needed to make device certificates')

let dir
let hub
let ca
let jobs

const file = (name) => path.join(dir, name)
const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

/** A self-signed certificate for `cn`: {cert, key, thumbprint}. */
function selfSigned(name, cn) {
  openssl('req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${cn}`)
  return load(name)
}

/** A CA certificate and key. */
function makeCa(name) {
  openssl('req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
}

/** A device certificate for `cn` signed by the CA `caName`. */
function signedBy(caName, name, cn) {
  writeFileSync(file(`${name}.ext`), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n')
  openssl('req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial',
    '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`)
  return load(name)
}

/**
 * An X.509 v1 certificate for `cn`, as the `pem` package of Microsoft's samples and e2e suite
 * makes it (`openssl x509 -req` without extensions): signed by the CA `caName`, or self-signed.
 */
function v1(name, cn, caName) {
  openssl('req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
  const signer = caName ? ['-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial'] : ['-signkey', `${name}.key`]
  openssl('x509', '-req', '-in', `${name}.csr`, ...signer, '-days', '2', '-out', `${name}.pem`)
  const text = execFileSync('openssl', ['x509', '-in', file(`${name}.pem`), '-noout', '-text'], { encoding: 'utf8' })
  assert.match(text, /Version: 1 \(0x0\)/)
  return load(name)
}

function load(name) {
  const cert = readFileSync(file(`${name}.pem`), 'utf8')
  return { cert, key: readFileSync(file(`${name}.key`), 'utf8'), thumbprint: new X509Certificate(cert).fingerprint.replaceAll(':', '') }
}

before(async () => {
  if (skip) return
  dir = mkdtempSync(path.join(tmpdir(), 'iothub-x509-'))
  makeCa('trusted-ca')
  makeCa('unknown-ca')
  hub = await startEmulator({ args: ['--host', '127.0.0.43', '--device-ca', file('trusted-ca.pem')] })
  ca = readFileSync(hub.caPath, 'utf8')
  shimAzureIothub(ca)
  jobs = JobClient.fromConnectionString(hub.connectionString, { ca })
})

after(async () => {
  if (hub) assert.equal(await hub.stop(), 0)
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** The hub logs why it refused a device (after the CONNACK, so the line may come later). */
const logged = (re) => until(() => re.test(hub.stderr()), 10_000, `log line ${re}`)

/** Opens an x509 device client with its certificate, or returns why the hub refused it. */
async function x509Client(deviceId, { cert, key }, Transport = Mqtt) {
  const client = DeviceClient.fromConnectionString(`HostName=${hub.hostName};DeviceId=${deviceId};x509=true`, Transport)
  // The Http transport answers setOptions only when a receive policy is among the options.
  await client.setOptions({ cert, key, ca, ...(Transport === Http && { http: { receivePolicy: { interval: 1 } } }) })
  return client
}

test('a self-signed device (thumbprint) connects without a password and takes jobs; another certificate is refused', { skip }, async () => {
  const own = selfSigned('self', 'x509-self')
  const identity = await createIdentity(hub.connectionString, {
    deviceId: 'x509-self',
    authentication: { x509Thumbprint: { primaryThumbprint: own.thumbprint, secondaryThumbprint: selfSigned('self2', 'x509-self').thumbprint } },
  })
  assert.deepEqual(identity.authentication.symmetricKey, { primaryKey: null, secondaryKey: null })
  assert.equal(identity.authentication.type, 'selfSigned')
  assert.equal(identity.authentication.x509Thumbprint.primaryThumbprint, own.thumbprint)

  const client = await x509Client('x509-self', own)
  await nodeDeviceScenario(client, { hub, jobs, deviceId: 'x509-self' })

  const stranger = selfSigned('stranger', 'x509-self')
  const err = await refusal(await x509Client('x509-self', stranger))
  assert.equal(err.constructor.name, 'UnauthorizedError', String(err))
  await logged(/device x509-self refused: the client certificate's thumbprint is not the device's/)
})

test('a device whose certificate the trusted CA signed connects; an unknown CA or another name is refused', { skip }, async () => {
  const identity = await createIdentity(hub.connectionString, { deviceId: 'x509-ca', authentication: { type: 'certificateAuthority' } })
  assert.deepEqual(identity.authentication, {
    symmetricKey: { primaryKey: null, secondaryKey: null },
    x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    type: 'certificateAuthority',
  })

  const client = await x509Client('x509-ca', signedBy('trusted-ca', 'ca-dev', 'x509-ca'))
  await nodeDeviceScenario(client, { hub, jobs, deviceId: 'x509-ca' })

  for (const cert of [signedBy('unknown-ca', 'rogue', 'x509-ca'), signedBy('trusted-ca', 'other-name', 'someone-else')]) {
    const err = await refusal(await x509Client('x509-ca', cert))
    assert.equal(err.constructor.name, 'UnauthorizedError', String(err))
  }
  await logged(/device x509-ca refused: the client certificate does not chain to a CA the hub trusts/)
  await logged(/device x509-ca refused: the client certificate's common name is not the device id/)
})

test('X.509 v1 certificates (made as Microsoft\'s samples make them) work: self-signed and CA-signed devices take jobs; an unknown one is refused', { skip }, async () => {
  const own = v1('v1-self', 'x509-v1-self')
  await createIdentity(hub.connectionString, {
    deviceId: 'x509-v1-self',
    authentication: { x509Thumbprint: { primaryThumbprint: own.thumbprint, secondaryThumbprint: null } },
  })
  await nodeDeviceScenario(await x509Client('x509-v1-self', own), { hub, jobs, deviceId: 'x509-v1-self' })

  await createIdentity(hub.connectionString, { deviceId: 'x509-v1-ca', authentication: { type: 'certificateAuthority' } })
  await nodeDeviceScenario(await x509Client('x509-v1-ca', v1('v1-ca-dev', 'x509-v1-ca', 'trusted-ca')), { hub, jobs, deviceId: 'x509-v1-ca' })

  for (const [deviceId, cert] of [['x509-v1-self', v1('v1-stranger', 'x509-v1-self')], ['x509-v1-ca', v1('v1-rogue', 'x509-v1-ca', 'unknown-ca')]]) {
    const err = await refusal(await x509Client(deviceId, cert))
    assert.equal(err.constructor.name, 'UnauthorizedError', String(err))
  }
  await logged(/device x509-v1-self refused: the client certificate's thumbprint is not the device's/)
  await logged(/device x509-v1-ca refused: the client certificate does not chain to a CA the hub trusts/)
})

test('a SAS device and HTTPS clients are unaffected by the certificate request; an x509 device without a certificate is refused', { skip }, async () => {
  await createIdentity(hub.connectionString, { deviceId: 'x509-nocert', authentication: { type: 'certificateAuthority' } })
  const deviceKeyless = DeviceClient.fromConnectionString(
    `HostName=${hub.hostName};DeviceId=x509-nocert;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')}`, Mqtt)
  await deviceKeyless.setOptions({ ca })
  const err = await refusal(deviceKeyless)
  assert.equal(err.constructor.name, 'UnauthorizedError', String(err))
  await logged(/device x509-nocert refused: the device uses x509 authentication but sent no client certificate/)
  // The registry (HTTPS, no client certificate) answered every call above; the twin shows the type.
  const twin = await new Promise((resolve, reject) =>
    require('azure-iothub').Registry.fromConnectionString(hub.connectionString).getTwin('x509-self', (e, t) => (e ? reject(e) : resolve(t))))
  assert.equal(twin.authenticationType, 'selfSigned')
})

test('over Amqp an x509 device puts no token: its TLS certificate admits its links (method job, twin job, query); a certificate that does not match is UnauthorizedError', { skip }, async () => {
  const own = selfSigned('amqp-self', 'x509-amqp')
  await createIdentity(hub.connectionString, {
    deviceId: 'x509-amqp',
    authentication: { x509Thumbprint: { primaryThumbprint: own.thumbprint, secondaryThumbprint: null } },
  })
  await nodeDeviceScenario(await x509Client('x509-amqp', own, Amqp), { hub, jobs, deviceId: 'x509-amqp' })
  await createIdentity(hub.connectionString, { deviceId: 'x509-amqp-ca', authentication: { type: 'certificateAuthority' } })
  await nodeDeviceScenario(await x509Client('x509-amqp-ca', signedBy('trusted-ca', 'amqp-ca-dev', 'x509-amqp-ca'), Amqp), { hub, jobs, deviceId: 'x509-amqp-ca' })

  // The SDK opens the connection without a login (nothing names the device yet); the first
  // link it attaches is refused, as Microsoft's e2e suite expects (sendEvent → UnauthorizedError).
  for (const [deviceId, cert] of [['x509-amqp', selfSigned('amqp-stranger', 'x509-amqp')], ['x509-amqp-ca', signedBy('unknown-ca', 'amqp-rogue', 'x509-amqp-ca')]]) {
    const client = await x509Client(deviceId, cert, Amqp)
    try {
      const err = await new Promise((resolve) => client.sendEvent(new Message('x'), resolve))
      assert.equal(err?.constructor.name, 'UnauthorizedError', String(err))
    } finally {
      await client.close().catch(() => {})
    }
  }
  await logged(/AMQP device x509-amqp refused: the client certificate's thumbprint is not the device's/)
  await logged(/AMQP device x509-amqp-ca refused: the client certificate does not chain to a CA the hub trusts/)
})

test('over Http an x509 device sends no Authorization header: its TLS certificate authenticates it (telemetry); a certificate that does not match is UnauthorizedError', { skip }, async () => {
  const own = selfSigned('http-self', 'x509-http')
  await createIdentity(hub.connectionString, {
    deviceId: 'x509-http',
    authentication: { x509Thumbprint: { primaryThumbprint: own.thumbprint, secondaryThumbprint: null } },
  })
  const send = async (cert) => {
    const client = await x509Client('x509-http', cert, Http)
    try {
      return await new Promise((resolve) => client.sendEvent(new Message('over https'), resolve))
    } finally {
      await client.close().catch(() => {})
    }
  }
  assert.ifError(await send(own))
  const messages = await hub.telemetry()
  assert.ok(messages.some((m) => m.deviceId === 'x509-http'), JSON.stringify(messages))
  const err = await send(selfSigned('http-stranger', 'x509-http'))
  assert.equal(err?.constructor.name, 'UnauthorizedError', String(err))
})
