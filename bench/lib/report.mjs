// Renders bench/results.json as bench/RESULTS.md: machine, the issue-5 targets, one table per
// workload (ours, reference, ratio ours/reference; the hand-written peers and the Rust ceiling at c=16
// and 256), and the issue-4 fault table.
import { fmt, fmtRatio } from './common.mjs'

const MiB = 1024 * 1024
const kbToMiB = (kb) => (typeof kb === 'number' ? kb / 1024 : null)
const bToMiB = (b) => (typeof b === 'number' ? b / MiB : null)
const ADDON_LIMIT_BYTES = 6_000_000

const row = (cells) => `| ${cells.join(' | ')} |`
const table = (head, rows) => [row(head), row(head.map(() => '---')), ...rows.map(row)].join('\n')
const verdict = (value, ok) => (typeof value !== 'number' ? 'n/a' : ok(value) ? 'met' : '**missed**')
const failedNote = (w) => (w?.failed ? `\n> **Did not complete:** ${String(w.failed).replace(/\n/g, ' ')}\n` : '')

function targets(r) {
  const W = r.workloads
  const out = []
  const c = W.coldStart
  if (c?.ratio) {
    out.push(['Cold-start wall-time overhead', fmtRatio(c.ratio.wallMs), '≤ 0.10×', verdict(c.ratio.wallMs, (v) => v <= 0.1)])
    out.push(['Cold-start RSS overhead', fmtRatio(c.ratio.maxRssKb), '≤ 0.10×', verdict(c.ratio.maxRssKb, (v) => v <= 0.1)])
  }
  const f = W.footprint
  if (f?.ratio) out.push(['Installed size (bytes on disk)', fmtRatio(f.ratio.diskBytes), '≤ 0.125×', verdict(f.ratio.diskBytes, (v) => v <= 0.125)])
  for (const t of Array.isArray(W.throughput) ? W.throughput : []) {
    if (t.concurrency === 16 || t.concurrency === 256)
      out.push([`Client CPU per getJob, c=${t.concurrency}`, fmtRatio(t.ratio?.cpuPerCallUs), '≤ 0.5×', verdict(t.ratio?.cpuPerCallUs, (v) => v <= 0.5)])
    if (t.concurrency === 256) out.push(['getJob calls/s, c=256', fmtRatio(t.ratio?.callsPerSec), '≥ 1.5×', verdict(t.ratio?.callsPerSec, (v) => v >= 1.5)])
  }
  const m = W.memory
  if (m?.ratio) out.push([`Peak RSS, ${fmt(m.inFlight, 0)} in flight`, fmtRatio(m.ratio.maxRssKb), '≤ 0.5×', verdict(m.ratio.maxRssKb, (v) => v <= 0.5)])
  const ceilings = Array.isArray(W.ceiling) ? W.ceiling : []
  for (const ce of ceilings) {
    const pct = ce.addonPercentOfCeiling
    out.push([`Addon calls/s as % of the Rust ceiling, c=${ce.concurrency}`, typeof pct === 'number' ? `${pct.toFixed(0)} %` : 'n/a', '≥ 90 %', verdict(pct, (v) => v >= 90)])
    out.push([`Addon CPU per call / the Rust ceiling's, c=${ce.concurrency}`, fmtRatio(ce.addonCpuRatio), '≤ 1.25×', verdict(ce.addonCpuRatio, (v) => v <= 1.25)])
  }
  for (const t of Array.isArray(W.throughput) ? W.throughput : []) {
    const undici = t.peers?.undici?.oursRatio?.cpuPerCallUs
    if (t.peers) out.push([`Client CPU per getJob / hand-written undici's, c=${t.concurrency}`, fmtRatio(undici), '≤ 0.4×', verdict(undici, (v) => v <= 0.4)])
  }
  if (f?.addonBytes) {
    for (const [file, bytes] of Object.entries(f.addonBytes))
      out.push([`\`${file}\` size (as built)`, `${fmt(bToMiB(bytes), 2)} MiB (${fmt(bytes, 0)} B)`, '≤ 6 MB', verdict(bytes, (v) => v <= ADDON_LIMIT_BYTES)])
  }
  return out
}

function coldStartSection(c) {
  if (!c?.median) return `## 1. Cold start\n${failedNote(c) || '\nnot run\n'}`
  const n = c.runs?.bare?.length ?? 0
  return `## 1. Cold start

\`node -e\` that requires the package and calls \`JobClient.fromConnectionString\` (no request), minus bare
\`node -e\` (same report statement in all three). Wall time from spawn to exit, measured by the parent;
peak RSS is \`process.resourceUsage().maxRSS\` at the end of the child script. Median of ${n} rounds
(order rotated each round) after one unrecorded warm-up round.

${table(
    ['', 'bare node', 'ours', 'reference', 'ours overhead', 'reference overhead', 'ratio (overhead)'],
    [
      ['wall time, ms', fmt(c.median.bare.wallMs), fmt(c.median.ours.wallMs), fmt(c.median.reference.wallMs), fmt(c.overhead.ours.wallMs), fmt(c.overhead.reference.wallMs), fmtRatio(c.ratio.wallMs)],
      ['in-process time to client ready, ms', fmt(c.median.bare.readyMs), fmt(c.median.ours.readyMs), fmt(c.median.reference.readyMs), fmt(c.overhead.ours.readyMs), fmt(c.overhead.reference.readyMs), fmtRatio(c.ratio.readyMs)],
      ['peak RSS, MiB', fmt(kbToMiB(c.median.bare.maxRssKb)), fmt(kbToMiB(c.median.ours.maxRssKb)), fmt(kbToMiB(c.median.reference.maxRssKb)), fmt(kbToMiB(c.overhead.ours.maxRssKb)), fmt(kbToMiB(c.overhead.reference.maxRssKb)), fmtRatio(c.ratio.maxRssKb)],
    ],
  )}
${failedNote(c)}`
}

function footprintSection(f) {
  if (!f?.ours) return `## 2. Footprint\n${failedNote(f) || '\nnot run\n'}`
  return `## 2. Footprint

\`npm pack\` of ours, then \`npm install <tarball>\` and \`npm install azure-iothub@1.16.6\` each into an empty
folder (\`--prefer-offline\`). Bytes = sum of file sizes under \`node_modules\`; on disk = allocated blocks
(like \`du\`); packages = entries of \`node_modules/.package-lock.json\`. Deterministic: measured once.

${table(
    ['', 'ours', 'reference', 'ratio'],
    [
      ['installed, on disk (MiB)', fmt(bToMiB(f.ours.diskBytes), 2), fmt(bToMiB(f.reference.diskBytes), 2), fmtRatio(f.ratio.diskBytes)],
      ['installed, file bytes (MiB)', fmt(bToMiB(f.ours.bytes), 2), fmt(bToMiB(f.reference.bytes), 2), fmtRatio(f.ratio.bytes)],
      ['packages installed', fmt(f.ours.packages, 0), fmt(f.reference.packages, 0), fmtRatio(f.ratio.packages)],
      ['files installed', fmt(f.ours.files, 0), fmt(f.reference.files, 0), fmtRatio(f.ours.files / f.reference.files)],
      ['npm pack tarball (MiB)', fmt(bToMiB(f.ours.tarballBytes), 2), '', ''],
    ],
  )}
${failedNote(f)}`
}

function loadRows(w) {
  const m = w.median
  return [
    ['calls/s', fmt(m.ours.callsPerSec, 0), fmt(m.reference.callsPerSec, 0), fmtRatio(w.ratio.callsPerSec)],
    ['client CPU per call (user+sys), µs', fmt(m.ours.cpuPerCallUs), fmt(m.reference.cpuPerCallUs), fmtRatio(w.ratio.cpuPerCallUs)],
    ['p50 latency, ms', fmt(m.ours.p50Ms, 2), fmt(m.reference.p50Ms, 2), fmtRatio(w.ratio.p50Ms)],
    ['p99 latency, ms', fmt(m.ours.p99Ms, 2), fmt(m.reference.p99Ms, 2), fmtRatio(w.ratio.p99Ms)],
    ['peak RSS, MiB', fmt(kbToMiB(m.ours.maxRssKb)), fmt(kbToMiB(m.reference.maxRssKb)), fmtRatio(w.ratio.maxRssKb)],
  ]
}

/** Ours beside the hand-written getJob peers (bench/workers/peer-client.mjs), measured in the same rounds. */
function peersTable(t) {
  if (!t.peers) return ''
  const u = t.peers.undici
  const f = t.peers.fetch
  const o = t.median.ours
  return `
Beside the hand-written getJob of \`bench/workers/peer-client.mjs\` (no SDK), measured in the same rounds:

${table(
    ['', 'ours', 'undici 7', 'fetch (Node)', 'ours / undici', 'ours / fetch'],
    [
      ['calls/s', fmt(o.callsPerSec, 0), fmt(u?.median?.callsPerSec, 0), fmt(f?.median?.callsPerSec, 0), fmtRatio(u?.oursRatio?.callsPerSec), fmtRatio(f?.oursRatio?.callsPerSec)],
      ['client CPU per call (user+sys), µs', fmt(o.cpuPerCallUs), fmt(u?.median?.cpuPerCallUs), fmt(f?.median?.cpuPerCallUs), fmtRatio(u?.oursRatio?.cpuPerCallUs), fmtRatio(f?.oursRatio?.cpuPerCallUs)],
      ['p50 latency, ms', fmt(o.p50Ms, 2), fmt(u?.median?.p50Ms, 2), fmt(f?.median?.p50Ms, 2), fmtRatio(u?.oursRatio?.p50Ms), fmtRatio(f?.oursRatio?.p50Ms)],
      ['peak RSS, MiB', fmt(kbToMiB(o.maxRssKb)), fmt(kbToMiB(u?.median?.maxRssKb)), fmt(kbToMiB(f?.median?.maxRssKb)), fmtRatio(u?.oursRatio?.maxRssKb), fmtRatio(f?.oursRatio?.maxRssKb)],
    ],
  )}
`
}

function throughputSection(list, runs) {
  if (!Array.isArray(list)) return `## 3. Throughput and client CPU (getJob)\n${failedNote(list) || '\nnot run\n'}`
  const parts = list.map((t) =>
    t.median
      ? `### ${fmt(t.total, 0)} getJob at concurrency ${t.concurrency}\n\n${table(['', 'ours', 'reference', 'ratio'], loadRows(t))}\n${peersTable(t)}${failedNote(t)}`
      : `### concurrency ${t.concurrency}\n${failedNote(t)}`,
  )
  return `## 3. Throughput and client CPU (getJob)

Fault-free emulator, ${list[0]?.total ? fmt(list[0].total, 0) : ''} calls over 64 pre-created jobs per measurement, after a warm-up
of max(2 × concurrency, 200) unrecorded calls (connections open). CPU is \`process.cpuUsage()\` of the
client process (all threads) over the measured calls. Median of ${runs} runs per package, alternating.

${parts.join('\n')}`
}

function scheduleSection(s, runs) {
  if (!s?.median) return `## 4. Schedule path\n${failedNote(s) || '\nnot run\n'}`
  return `## 4. Schedule path (scheduleDeviceMethod)

${fmt(s.total, 0)} \`scheduleDeviceMethod\` calls (fresh job ids, 5-argument promise form so both send the same body,
start time a day ahead) at concurrency ${s.concurrency}; median of ${runs} runs per package.

${table(['', 'ours', 'reference', 'ratio'], loadRows(s).filter((r) => !r[0].startsWith('peak')))}
${failedNote(s)}`
}

function memorySection(m, runs) {
  if (!m?.median) return `## 5. Memory under load\n${failedNote(m) || '\nnot run\n'}`
  const M = m.median
  return `## 5. Memory under load

${fmt(m.inFlight, 0)} \`getJob\` calls issued at once against \`iothub-emulator --faults latency:${m.latencyMs}-${m.latencyMs}ms\`
(every response held ${m.latencyMs} ms, so all calls are in flight together). Peak RSS is the child's
\`maxRSS\`; growth = peak − RSS after the client was built. Median of ${runs} runs per package.

${table(
    ['', 'ours', 'reference', 'ratio'],
    [
      ['peak RSS, MiB', fmt(kbToMiB(M.ours.maxRssKb)), fmt(kbToMiB(M.reference.maxRssKb)), fmtRatio(m.ratio.maxRssKb)],
      ['RSS growth under load, MiB', fmt(kbToMiB(M.ours.rssGrowthKb)), fmt(kbToMiB(M.reference.rssGrowthKb)), fmtRatio(m.ratio.rssGrowthKb)],
      ['wall time for all calls, ms', fmt(M.ours.wallMs, 0), fmt(M.reference.wallMs, 0), fmtRatio(m.ratio.wallMs)],
      ['client CPU per call, µs', fmt(M.ours.cpuPerCallUs), fmt(M.reference.cpuPerCallUs), fmtRatio(m.ratio.cpuPerCallUs)],
    ],
  )}
${failedNote(m)}`
}

function ceilingSection(list, throughput, runs) {
  if (!Array.isArray(list) || !list.some((c) => c.median)) return `## 6. Ceiling (pure Rust)\n${failedNote(list) || '\nnot run\n'}`
  const parts = list.map((c) => {
    if (!c.median) return `### concurrency ${c.concurrency}\n${failedNote(c)}`
    const addon = Array.isArray(throughput) ? throughput.find((t) => t.concurrency === c.concurrency)?.median?.ours : null
    return `### concurrency ${c.concurrency}

${table(
      ['', 'ceiling (Rust)', 'addon (ours)', 'addon / ceiling'],
      [
        ['calls/s', fmt(c.median.callsPerSec, 0), fmt(addon?.callsPerSec, 0), typeof c.addonPercentOfCeiling === 'number' ? `${c.addonPercentOfCeiling.toFixed(0)} %` : 'n/a'],
        ['CPU per call, µs', fmt(c.median.cpuPerCallUs), fmt(addon?.cpuPerCallUs), fmtRatio(c.addonCpuRatio)],
        ['p50 latency, ms', fmt(c.median.p50Ms, 2), fmt(addon?.p50Ms, 2), ''],
        ['p99 latency, ms', fmt(c.median.p99Ms, 2), fmt(addon?.p99Ms, 2), ''],
        ['peak RSS, MiB', fmt(kbToMiB(c.median.maxRssKb)), fmt(kbToMiB(addon?.maxRssKb)), ''],
      ],
    )}
${failedNote(c)}`
  })
  return `## 6. Ceiling (pure Rust, no N-API)

The same ${fmt(list[0].total, 0)} getJob calls at concurrency 16 and 256, issued from Rust through \`crates/core\`
(\`cargo build --release --workspace --example ceiling\`, tokio's default multi-thread runtime, default
client options), interleaved with the runs of workload 3 at the same concurrency; median of ${runs} runs. The
emulator runs on the same machine: when the two calls/s figures are close, the machine, not the client, is
the bound, and the CPU-per-call row is what shows the cost of the N-API boundary.

${parts.join('\n')}`
}

export function renderFaults(f) {
  if (!f?.packages) return `## Faults\n${failedNote(f) || '\nnot run\n'}`
  const P = f.packages
  const cell = (pkg, fn) => (P[pkg]?.error ? 'error' : fn(P[pkg]))
  const rows = [
    ['operations issued', (r) => fmt(r.operations, 0)],
    ['calls failed (after the client’s own retries)', (r) => fmt(r.failed, 0)],
    ['jobs lost (schedule call made, job not on the hub)', (r) => fmt(r.lost, 0)],
    ['jobs duplicated (created more than once)', (r) => fmt(r.duplicated, 0)],
    ['failures reported for jobs that were created', (r) => fmt(r.failedButCreated, 0)],
    ['calls never settled', (r) => fmt(r.unsettled, 0)],
    ['unhandled rejections', (r) => fmt(r.unhandledRejections, 0)],
    ['wall time, s', (r) => fmt(r.wallMs / 1000, 1)],
  ].map(([label, fn]) => [label, cell('ours', fn), cell('reference', fn)])
  const kinds = (pkg) =>
    Object.entries(P[pkg]?.errorKinds ?? {})
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${n} × ${k}`)
      .join('; ') || 'none'
  return `## Faults: the same workload through both clients

\`iothub-emulator --devices 10 --faults ${f.faults}\`; ${fmt(f.operations, 0)} operations per package at concurrency
${f.concurrency}: chains of scheduleDeviceMethod (start in 1 h) → scheduleTwinUpdate → getJob → cancelJob, every
step issued even if an earlier one failed. Hub state read from the emulator's control API after each package.
Wall time includes each client's own retry backoff (ours: its default retry policy; the reference never retries).

${table(['', 'iothub-jobs', 'azure-iothub'], rows)}

Errors seen — iothub-jobs: ${kinds('ours')}. azure-iothub: ${kinds('reference')}.
${failedNote(f)}`
}

export function renderMarkdown(r) {
  const m = r.machine
  const banner = [
    r.label ? `> **${r.label}**` : null,
    r.quick ? '> **Quick run (CI smoke test): small sizes, one run each. These numbers are not benchmark figures.**' : null,
    ...(r.warnings ?? []).map((w) => `> **Warning:** ${w}`),
  ].filter(Boolean)
  const T = targets(r)
  return `# Benchmarks: iothub-jobs vs azure-iothub@1.16.6

${banner.join('\n>\n')}${banner.length ? '\n\n' : ''}Made by \`${r.command}\` (${r.durationSec} s). Every client runs in a fresh child process per measurement; the two
packages alternate run by run on the same machine and hub; each figure is the median of ${r.runs} runs
unless said otherwise; ratio = ours / reference (lower is better except calls/s).

| machine | |
|---|---|
| CPU | ${m.cpu} × ${m.cores} cores |
| memory | ${m.memoryGiB} GiB |
| OS | ${m.os} |
| Node.js | ${m.node} |
| date | ${m.date} |
| commit | \`${m.commit ?? 'unknown'}\`${m.dirty ? ' (with uncommitted changes)' : ''} |
| load average at start | ${m.loadavgAtStart?.join(' ') ?? 'n/a'} |
| addon measured | ${(r.addon ?? []).map((a) => `\`${a.file}\` ${a.bytes.toLocaleString('en-US')} B, sha256 ${a.sha256}…`).join('; ') || 'none built'} |

## Targets

${T.length ? table(['target', 'measured', 'goal', ''], T) : 'no target could be computed'}
${r.errors.length ? `\n**Workloads that did not complete:**\n\n${r.errors.map((e) => `- ${e.replace(/\n/g, ' ')}`).join('\n')}\n` : ''}
${coldStartSection(r.workloads.coldStart)}
${footprintSection(r.workloads.footprint)}
${throughputSection(r.workloads.throughput, r.runs)}
${scheduleSection(r.workloads.schedule, r.runs)}
${memorySection(r.workloads.memory, r.runs)}
${ceilingSection(r.workloads.ceiling, r.workloads.throughput, r.runs)}
${renderFaults(r.workloads.faults)}
## How the reference is run

azure-iothub has no CA option and cannot reach a \`HostName\` with a port, which the emulator needs. Each
reference worker therefore gets \`NODE_EXTRA_CA_CERTS=<emulator CA>\` and a harness-only preload,
\`node --require bench/workers/reference-host-port.cjs\`, that splits \`host: '127.0.0.1:PORT'\` into host and
port before \`https.request\` (one regex per request; nothing else changes). The same shim is loaded for
every reference measurement that sends requests (not for cold start, which sends none). The reference
keeps its own keep-alive \`https.Agent\` (one per client, unlimited sockets). Ours gets \`{ ca: pem }\` as
the last argument of \`fromConnectionString\` and otherwise default options (retries on, none needed).
`
}
