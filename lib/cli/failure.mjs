// Exit codes (the contract scripts rely on, documented in docs/cli.md) and the one place that
// turns any error into a one-line message and its code: no stack trace, no secret.
import { createRequire } from 'node:module';

const { errors } = createRequire(import.meta.url)('../main.js');

export const EXIT = Object.freeze({
  ok: 0,
  error: 1, // anything not listed below (network, service, unexpected)
  usage: 2, // bad command line or input file
  jobFailed: 3, // the job ended `failed` (or a staged rollout stopped at its failure threshold)
  jobCancelled: 4, // the job ended `cancelled`
  notFound: 5, // no such job
  auth: 6, // no credentials, malformed connection string, rejected key or token, credential failure
  timeout: 7, // --poll-duration (or a call's own timeout) ran out; the job goes on
  unsupported: 8, // this installation cannot do it (e.g. `emulator` without an emulator binary)
  interrupted: 130, // Ctrl-C while waiting; the job goes on
});

/** An error the CLI raises itself, carrying its exit code. */
export class CliError extends Error {
  constructor(message, exitCode = EXIT.error) {
    super(message);
    this.exitCode = exitCode;
  }
}

export const usageError = (message) => new CliError(message, EXIT.usage);

// Credentials that could reach a message through an error from below (the addon already scrubs
// its own; this is the last line of defence for text the CLI did not write).
const SECRET_PATTERNS = [
  [/(SharedAccessKey=)[^;\s'"]*/gi, '$1<redacted>'],
  [/(sig=)[^&\s'"]*/gi, '$1<redacted>'],
  [/(SharedAccessSignature\s+)\S+/g, '$1<redacted>'],
  [/(Bearer\s+)[\w.~+/=-]+/g, '$1<redacted>'],
];

export function scrub(text) {
  return SECRET_PATTERNS.reduce((t, [pattern, replacement]) => t.replace(pattern, replacement), text);
}

function isCredentialFailure(err) {
  // The native credentials reject with a plain Error naming the credential (see
  // docs/credentials-logging-proxy.md).
  return /^\w*Credential\b/.test(err.message ?? '');
}

/** The exit code for an error thrown by the addon or by the CLI. */
export function exitCodeOf(err) {
  if (err instanceof CliError) return err.exitCode;
  if (err?.name === 'AbortError') return EXIT.interrupted;
  if (err instanceof errors.JobNotFoundError) return EXIT.notFound;
  if (err instanceof errors.UnauthorizedError || isCredentialFailure(err)) return EXIT.auth;
  if (err instanceof errors.TimeoutError) return EXIT.timeout;
  return EXIT.error;
}

/** `err` as one line of text, without secrets. */
export function messageOf(err) {
  const text = err instanceof Error ? err.message || err.name : String(err);
  return scrub(text.replace(/\s*\n\s*/g, ' ').trim());
}
