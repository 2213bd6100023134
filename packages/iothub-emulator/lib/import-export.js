'use strict';
// What `iothub-emulator export` and `iothub-emulator import` do with a started hub that has a
// linked storage account: move `devices.txt` (and `importErrors.log`) between a local directory
// and a container of that account, and run the hub's import/export job on it
// (`POST /jobs/create`, then `GET /jobs/{id}` until it ends), telling each status and progress
// change to `onProgress`. Storage requests carry an account SAS signed here with the linked
// account's key (the container URI the job gets carries it too); every request trusts the hub's
// CA, which Azurite's certificate comes from.
const { createHmac } = require('node:crypto');
const { readFileSync, writeFileSync } = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const { API_VERSION, serviceToken } = require('./service-token.js');

const CONTAINER = 'iothub-emulator-files';
const STORAGE_VERSION = '2020-10-02';

function fields(connectionString) {
  return Object.fromEntries(connectionString.split(';').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** The linked account's container URL and an account SAS (blob service, 1 hour) for it. */
function container(hub) {
  if (!hub.storageConnectionString) throw new Error('the hub has no storage account (give --storage azurite or --storage-connection-string)');
  const f = fields(hub.storageConnectionString);
  const se = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
  // accountname, sp, ss, srt, st, se, sip, spr, sv (the account SAS of this storage version).
  const toSign = `${f.AccountName}\nrwdlac\nb\nsco\n\n${se}\n\n\n${STORAGE_VERSION}\n`;
  const sig = createHmac('sha256', Buffer.from(f.AccountKey, 'base64')).update(toSign).digest('base64');
  const sas = `sv=${STORAGE_VERSION}&ss=b&srt=sco&sp=rwdlac&se=${encodeURIComponent(se)}&sig=${encodeURIComponent(sig)}`;
  return { url: `${f.BlobEndpoint.replace(/\/$/, '')}/${CONTAINER}`, sas };
}

function send(hub, method, url, body = '', headers = {}) {
  return new Promise((resolve, reject) => {
    const transport = url.startsWith('http:') ? http : https;
    const req = transport.request(url, { method, ca: hub.ca, headers: { 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function storage(hub, method, blob, body, headers = {}) {
  const c = container(hub);
  const url = blob === null ? `${c.url}?restype=container&${c.sas}` : `${c.url}/${blob}?${c.sas}`;
  const answer = await send(hub, method, url, body, { 'x-ms-version': STORAGE_VERSION, ...headers });
  if (answer.status >= 300 && !(blob === null && answer.status === 409)) {
    throw new Error(`storage answered ${answer.status} to ${method} ${blob ?? CONTAINER}`);
  }
  return answer.text;
}

async function service(hub, method, servicePath, body) {
  const url = `https://${hub.host}:${hub.port}${servicePath}?api-version=${API_VERSION}`;
  const text = body === undefined ? '' : JSON.stringify(body);
  const answer = await send(hub, method, url, text, { authorization: serviceToken(hub.connectionString), 'content-type': 'application/json' });
  if (answer.status >= 300) throw new Error(`the hub answered ${answer.status}: ${answer.text}`);
  return JSON.parse(answer.text);
}

/** Creates the job and polls it until it ends; a failed or cancelled job throws its reason. */
async function runJob(hub, request, onProgress) {
  const c = container(hub);
  const uri = `${c.url}?${c.sas}`;
  let job = await service(hub, 'POST', '/jobs/create', { ...request, inputBlobContainerUri: uri, outputBlobContainerUri: uri });
  let told = '';
  for (;;) {
    const now = `${job.status} ${job.progress}%`;
    if (now !== told) onProgress(job);
    told = now;
    if (job.status === 'completed') return job;
    if (job.status === 'failed' || job.status === 'cancelled') throw new Error(`${job.type} job ${job.jobId} ${job.status}${job.failureReason ? `: ${job.failureReason}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
    job = await service(hub, 'GET', `/jobs/${encodeURIComponent(job.jobId)}`);
  }
}

/** Exports the hub's devices to `dir/devices.txt`; the number of lines written. */
async function exportToDirectory(hub, dir, { excludeKeys = false, onProgress = () => {} } = {}) {
  await storage(hub, 'PUT', null, '');
  await runJob(hub, { type: 'export', excludeKeysInExport: excludeKeys }, onProgress);
  const text = await storage(hub, 'GET', 'devices.txt');
  writeFileSync(path.join(dir, 'devices.txt'), text);
  return text.split('\n').filter(Boolean).length;
}

/** Imports `dir/devices.txt` into the hub and writes `dir/importErrors.log`; the failed lines. */
async function importFromDirectory(hub, dir, { onProgress = () => {} } = {}) {
  const text = readFileSync(path.join(dir, 'devices.txt'));
  await storage(hub, 'PUT', null, '');
  await storage(hub, 'PUT', 'devices.txt', text, { 'x-ms-blob-type': 'BlockBlob' });
  await runJob(hub, { type: 'import' }, onProgress);
  const errors = await storage(hub, 'GET', 'importErrors.log');
  writeFileSync(path.join(dir, 'importErrors.log'), errors);
  return errors.split('\n').filter(Boolean).length;
}

module.exports = { exportToDirectory, importFromDirectory };
