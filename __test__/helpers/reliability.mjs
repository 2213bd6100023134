// Small tools shared by the reliability suites (faults, retry policy, timeouts, soak, secrets).
import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The package under test, through its entry (`lib/main.js`). */
export const pkg = require(ROOT)

/** A deterministic PRNG (mulberry32), so a failing workload can be replayed with its seed. */
export function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Runs `count` tasks `task(i)` with at most `concurrency` in flight; resolves when all settled. */
export async function pool(count, concurrency, task) {
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      await task(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

/**
 * Drains the emulator's request ring (`GET /_emulator/requests?clear=true`) every `everyMs`, so
 * runs longer than the ring (1,000 entries) keep every request. `stop()` does a final drain and
 * resolves with `{ requests, dropped }`.
 */
export function drainRequests(hub, everyMs = 100) {
  const requests = []
  let dropped = 0
  let timer
  let busy = Promise.resolve()
  const drain = () => {
    busy = busy.then(async () => {
      const page = await hub.control('GET', 'requests?clear=true')
      requests.push(...page.requests)
      dropped += page.dropped ?? 0
    })
    return busy
  }
  const tick = () => {
    drain().finally(() => {
      if (timer !== null) timer = setTimeout(tick, everyMs)
    })
  }
  timer = setTimeout(tick, everyMs)
  return {
    async stop() {
      clearTimeout(timer)
      timer = null
      await busy
      await drain()
      return { requests, dropped }
    },
  }
}

/** Groups recorded requests by their `Request-Id` header, in arrival order. */
export function byRequestId(requests) {
  const groups = new Map()
  for (const r of requests) {
    const id = r.headers?.['request-id']
    if (!groups.has(id)) groups.set(id, [])
    groups.get(id).push(r)
  }
  return groups
}

/** A loopback port nobody listens on (bound, then closed). */
export async function refusedPort() {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Collects unhandled rejections while `fn` runs (and a little after, for late ones). */
export async function withUnhandledRejections(fn) {
  const seen = []
  const onRejection = (reason) => seen.push(reason)
  process.on('unhandledRejection', onRejection)
  try {
    const result = await fn()
    await new Promise((resolve) => setTimeout(resolve, 50))
    return { result, unhandled: seen }
  } finally {
    process.off('unhandledRejection', onRejection)
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
