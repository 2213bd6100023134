// `npm run lint:workflows [FILE…]`: actionlint on the GitHub workflows (.github/workflows/*.yml, or
// the files named). actionlint comes from PyPI, pinned in scripts/actionlint-requirements.txt,
// into the venv target/actionlint (made on first use; needs python3). Exit code: actionlint's.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pinnedVenv } from './python-sdk.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const WORKFLOWS = path.join(ROOT, '.github', 'workflows');

/** The actionlint command of the pinned venv (made first when missing or out of date). */
export function actionlintPath() {
  const python = pinnedVenv(path.join(ROOT, 'target', 'actionlint'), path.join(ROOT, 'scripts', 'actionlint-requirements.txt'));
  return path.join(path.dirname(python), process.platform === 'win32' ? 'actionlint.exe' : 'actionlint');
}

/** actionlint on `files` (default: every workflow); returns {code, output}. */
export function lintWorkflows(files = readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(WORKFLOWS, f))) {
  const result = spawnSync(actionlintPath(), ['-no-color', ...files], { cwd: ROOT, encoding: 'utf8' });
  if (result.error) throw result.error;
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = process.argv.slice(2);
  const { code, output } = lintWorkflows(files.length ? files.map((f) => path.resolve(f)) : undefined);
  process.stdout.write(output);
  process.exitCode = code;
}
