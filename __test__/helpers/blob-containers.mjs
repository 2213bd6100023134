// Blob containers of a hub's linked storage account, as an import/export job's caller makes
// them: container SAS URIs signed with @azure/storage-blob (the account's key from the hub's
// storageConnectionString), and blob reads and writes over HTTP(S) trusting the hub's CA (the
// storage client has no CA option of its own). Used by the import/export suite and benchmark.
import http from 'node:http'
import https from 'node:https'
import { createRequire } from 'node:module'
import assert from 'node:assert/strict'

const require = createRequire(import.meta.url)
const { StorageSharedKeyCredential, generateBlobSASQueryParameters, generateAccountSASQueryParameters, ContainerSASPermissions, AccountSASPermissions, AccountSASResourceTypes, AccountSASServices } = require('@azure/storage-blob')

/** The account of a hub's linked storage (Azurite's well-known account). */
export function account(hub) {
  const field = (name) => new RegExp(`${name}=([^;]+)`).exec(hub.storageConnectionString)[1]
  return { name: field('AccountName'), key: field('AccountKey'), endpoint: field('BlobEndpoint').replace(/\/$/, '') }
}

/** A container SAS URI of `container` on `hub`'s account (`expiresInSecs` < 0: expired). */
export function containerSas(hub, container, { permissions = 'racwdl', expiresInSecs = 3600 } = {}) {
  const a = account(hub)
  const sas = generateBlobSASQueryParameters({
    containerName: container,
    permissions: ContainerSASPermissions.parse(permissions),
    startsOn: new Date(Date.now() - 120_000 + Math.min(0, expiresInSecs) * 1000),
    expiresOn: new Date(Date.now() + expiresInSecs * 1000),
  }, new StorageSharedKeyCredential(a.name, a.key)).toString()
  return `${a.endpoint}/${container}?${sas}`
}

/** One HTTPS request trusting the hub's CA: `{ status, body }`. */
export function request(hub, method, url, body = '', headers = {}) {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('http:') ? http : https).request(url, { method, ca: hub.ca, headers: { 'x-ms-version': '2020-10-02', 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

const blobUrl = (containerUri, blob) => containerUri.replace('?', `/${blob}?`)

export async function createContainer(hub, container) {
  const a = account(hub)
  const accountSas = generateAccountSASQueryParameters({
    permissions: AccountSASPermissions.parse('rwdlac'),
    services: AccountSASServices.parse('b').toString(),
    resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
    expiresOn: new Date(Date.now() + 3600_000),
  }, new StorageSharedKeyCredential(a.name, a.key)).toString()
  const uri = containerSas(hub, container)
  const { status } = await request(hub, 'PUT', `${a.endpoint}/${container}?restype=container&${accountSas}`)
  assert.ok(status === 201 || status === 409, `create container ${container}: ${status}`)
  return uri
}

export async function putBlob(hub, containerUri, blob, text) {
  const { status } = await request(hub, 'PUT', blobUrl(containerUri, blob), text, { 'x-ms-blob-type': 'BlockBlob' })
  assert.equal(status, 201)
}

export async function getBlob(hub, containerUri, blob) {
  const { status, body } = await request(hub, 'GET', blobUrl(containerUri, blob))
  assert.equal(status, 200, `GET ${blob}: ${status} ${body}`)
  return body
}
