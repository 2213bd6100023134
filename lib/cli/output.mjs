// What the command line writes: tables and key/value blocks for people, JSON for scripts, and
// the progress of a wait (a live bar on a terminal, plain lines otherwise). Results go to
// stdout; progress and messages go to stderr, so `--output json` stdout is only JSON.

export class Output {
  constructor({ json = false, stdout = process.stdout, stderr = process.stderr } = {}) {
    this.json = json;
    this.stdout = stdout;
    this.stderr = stderr;
  }

  /** One JSON document (json mode) or the text made by `human()`. */
  result(document, human) {
    this.stdout.write(this.json ? `${JSON.stringify(document, null, 2)}\n` : `${human(document)}\n`);
  }

  /** One JSON line per item (json mode); streams of rows use it. */
  line(item) {
    this.stdout.write(`${JSON.stringify(item)}\n`);
  }

  note(text) {
    this.stderr.write(`${text}\n`);
  }
}

/** Rows (arrays of cells) under a header, columns padded to their widest cell. */
export function table(header, rows) {
  const cells = [header, ...rows].map((row) => row.map((c) => (c === undefined || c === null ? '' : String(c))));
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i].length)));
  return cells.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

function keyValues(pairs) {
  const shown = pairs.filter(([, v]) => v !== undefined && v !== null && v !== '');
  const width = Math.max(...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${`${k}:`.padEnd(width + 1)}  ${v}`).join('\n');
}

const FAR_FUTURE = /^9999-/;

function counters(stats = {}) {
  const { deviceCount = 0, succeededCount = 0, failedCount = 0, runningCount = 0, pendingCount = 0 } = stats;
  return { deviceCount, succeededCount, failedCount, runningCount, pendingCount };
}

export function deviceSummary(stats) {
  const s = counters(stats);
  return `${s.deviceCount} (succeeded ${s.succeededCount}, failed ${s.failedCount}, running ${s.runningCount}, pending ${s.pendingCount})`;
}

/** A job as a key/value block. */
export function formatJob(job) {
  const type = job.type ?? job.jobType;
  const method = job.cloudToDeviceMethod;
  const end = job.endTime ?? job.endTimeUtc;
  return keyValues([
    ['Job', job.jobId],
    ['Type', type],
    ['Status', job.status],
    ['Query', job.queryCondition],
    ['Method', method && `${method.methodName} (response timeout ${method.responseTimeoutInSeconds ?? '-'} s, connect timeout ${method.connectTimeoutInSeconds ?? '-'} s)`],
    ['Payload', method && method.payload != null ? JSON.stringify(method.payload) : undefined],
    ['Twin patch', job.updateTwin && JSON.stringify(job.updateTwin)],
    ['Created', job.createdTime ?? job.createdDateTimeUtc],
    ['Start', job.startTime ?? job.startTimeUtc],
    ['End', end && !FAR_FUTURE.test(end) ? end : undefined],
    ['Max execution', job.maxExecutionTimeInSeconds !== undefined ? `${job.maxExecutionTimeInSeconds} s` : undefined],
    ['Devices', job.deviceJobStatistics ? deviceSummary(job.deviceJobStatistics) : undefined],
    ['Failure reason', job.failureReason],
    ['Message', job.statusMessage],
  ]);
}

export function formatJobList(jobs) {
  if (jobs.length === 0) return 'no jobs';
  const rows = jobs.map((job) => {
    const s = counters(job.deviceJobStatistics);
    return [job.jobId, job.type ?? job.jobType, job.status, job.startTime ?? job.startTimeUtc, s.deviceCount, s.succeededCount, s.failedCount];
  });
  return table(['JOB', 'TYPE', 'STATUS', 'START', 'DEVICES', 'SUCCEEDED', 'FAILED'], rows);
}

/** The outcome of one device-job row in a few words: method status or error code. */
export function outcomeOf(row) {
  if (row.error) return row.error.code ?? 'error';
  const response = row.outcome?.deviceMethodResponse;
  if (response) return `status ${response.status}`;
  return row.status === 'completed' ? 'ok' : '';
}

export function formatDeviceRows(rows) {
  if (rows.length === 0) return 'no devices';
  return table(
    ['DEVICE', 'STATUS', 'OUTCOME', 'DETAIL'],
    rows.map((row) => {
      const response = row.outcome?.deviceMethodResponse;
      const detail = row.error?.description ?? (response && response.payload !== undefined ? JSON.stringify(response.payload) : '');
      return [row.deviceId, row.status, outcomeOf(row), detail];
    }),
  );
}

export function formatDeviceSummary(summary) {
  const lines = [`Job ${summary.jobId}: ${summary.jobStatus}, ${summary.deviceCount} device${summary.deviceCount === 1 ? '' : 's'}`];
  if (summary.deviceCount === 0) return lines[0];
  lines.push('', table(['STATUS', 'DEVICES'], Object.entries(summary.byStatus)));
  lines.push('', table(['OUTCOME', 'DEVICES'], Object.entries(summary.byOutcome).map(([k, n]) => [k || '(none yet)', n])));
  return lines.join('\n');
}

const BAR_WIDTH = 30;

/**
 * Progress of a wait on `stream` (stderr): on a terminal one line redrawn in place
 * (`[#####.....] 12/20 devices …`), otherwise one plain line each time the status or a count
 * changes. `update(job)` takes a Job or a fleet progress object (with `wave`/`waveCount`).
 */
export class Progress {
  constructor(stream, label) {
    this.stream = stream;
    this.label = label;
    this.tty = Boolean(stream.isTTY);
    this.last = '';
    this.drawn = false;
    this.started = Date.now();
  }

  update(state) {
    const s = counters(state.deviceJobStatistics ?? state);
    const status = state.status ?? state.phase;
    const done = s.succeededCount + s.failedCount;
    const wave = state.waveCount ? ` wave ${state.wave}/${state.waveCount}` : '';
    const counts = `${done}/${s.deviceCount} devices (succeeded ${s.succeededCount}, failed ${s.failedCount}, running ${s.runningCount}, pending ${s.pendingCount})`;
    if (this.tty) {
      const filled = s.deviceCount > 0 ? Math.round((done / s.deviceCount) * BAR_WIDTH) : 0;
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`;
      const elapsed = Math.round((Date.now() - this.started) / 1000);
      this.stream.write(`\r\x1b[2K${this.label}${wave} ${status} ${bar} ${counts} ${elapsed}s`);
      this.drawn = true;
      return;
    }
    const text = `${this.label}${wave}: ${status}, ${counts}`;
    if (text !== this.last) this.stream.write(`${text}\n`);
    this.last = text;
  }

  /** Ends the redrawn line so later output starts on a line of its own. */
  finish() {
    if (this.tty && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
