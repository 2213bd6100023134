// The `iothub-emulator` Python package as its users get it: the wheels scripts/wheels.mjs packs
// (here into a temporary folder) from the binaries `npm run build:platforms` makes, the linux-x64 one
// installed with no network (`pip install --no-index`) into a fresh venv beside pytest and
// Microsoft's Python SDKs (pinned in packages/python/requirements-test.txt, built into
// target/python-wheelhouse by scripts/python-sdk.mjs), then used there:
//   - every wheel's tags match the binary it carries (static ELF of the tag's architecture, …);
//   - `iothub-emulator --devices 3` prints its ready line, running the wheel's own binary;
//     `exec` passes the hub to a command and its exit code back;
//   - pytest with the plugin (from the wheel's pytest11 entry point): the `iothub` fixture serves
//     azure-iot-device (MQTT and WebSockets: a direct method, a twin patch) and azure-iot-hub
//     (test_package_hub.py), and no emulator is left running once pytest has exited — nor
//     when pytest is SIGKILLed;
//   - the README's Python recipes pass as written;
//   - the linux-arm64 wheel's binary, under qemu-aarch64, driven by the Python API.
// Needs the musl builds (`node scripts/platforms/ci.mjs build` makes them as root) and python3;
// skipped, saying so, without them.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { checkWheel, packWheels, pyproject } from '../scripts/wheels.mjs';
import { hasPython3, makeVenv, pythonWheelhouse, PYTHON_REQUIREMENTS } from '../scripts/python-sdk.mjs';
import { EMULATOR_PLATFORMS } from '../scripts/platforms/targets.mjs';
import { emulatorBinaryPath } from '../scripts/platforms/check.mjs';
import { cleanEnv, gone, lastJson, run, runIn } from './helpers/packages.mjs';
import { prerequisite } from './helpers/prerequisite.mjs';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const PYTESTS = path.join(ROOT, '__test__', 'python');
const x64 = EMULATOR_PLATFORMS.find((p) => p.name === 'linux-x64');
const arm64 = EMULATOR_PLATFORMS.find((p) => p.name === 'linux-arm64');
const BUILD_FIRST = 'run `npm run setup:platforms && npm run build:platforms emulator-linux-x64 emulator-linux-arm64` first';
const hasQemu = spawnSync('qemu-aarch64', ['--version'], { stdio: 'ignore' }).status === 0;
const skipAll = !(process.platform === 'linux' && process.arch === 'x64')
  ? 'the installed wheel is checked on linux-x64'
  : prerequisite(!existsSync(emulatorBinaryPath(x64)) ? BUILD_FIRST : !hasPython3() && 'python3 is not installed');

let work;
let venv;
let wheels;
const bin = (name) => path.join(venv, 'bin', name);

/** Runs a command of the venv in the work folder (see runIn). */
const runHere = (command, args, options) => runIn(work, command, args, { timeoutMs: 120_000, ...options });

async function allGone(pids, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!pids.every(gone) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return pids.filter((pid) => !gone(pid));
}

// Rewrites a wheel with another binary in iothub_emulator/bin/, its RECORD row made to match.
const SWAP_BINARY = `
import base64, hashlib, sys, zipfile
source, binary, target = sys.argv[1:]
data = open(binary, 'rb').read()
digest = 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
with zipfile.ZipFile(source) as z, zipfile.ZipFile(target, 'w', zipfile.ZIP_DEFLATED) as out:
    for info in z.infolist():
        body = z.read(info)
        if info.filename.startswith('iothub_emulator/bin/'):
            body = data
        elif info.filename.endswith('.dist-info/RECORD'):
            body = '\\n'.join(f'{r.split(",")[0]},{digest},{len(data)}' if r.startswith('iothub_emulator/bin/') else r for r in body.decode().splitlines()).encode()
        out.writestr(info, body)
`;

const pidsIn = async (file) => (existsSync(file) ? (await readFile(file, 'utf8')).split('\n').filter(Boolean).map(Number) : []);

before(async () => {
  if (skipAll) return;
  work = realpathSync(await mkdtemp(path.join(os.tmpdir(), 'iothub-emulator-python-')));
  const built = [x64, arm64].filter((p) => existsSync(emulatorBinaryPath(p)));
  wheels = Object.fromEntries(packWheels(path.join(work, 'wheels'), built).packed.map((p, i) => [built[i].name, p.tarball]));
  const wheelhouse = pythonWheelhouse();
  venv = path.join(work, 'venv');
  const python = makeVenv(venv);
  await run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-index', '--find-links', wheelhouse, wheels['linux-x64'], '-r', PYTHON_REQUIREMENTS.test], { timeout: 300_000 });
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the iothub-emulator wheels', { skip: skipAll }, () => {
  test('are named and tagged for the binary each carries, at the npm package\'s version', () => {
    const { version } = pyproject();
    assert.equal(version, JSON.parse(readFileSync(path.join(ROOT, 'packages', 'iothub-emulator', 'package.json'), 'utf8')).version);
    assert.equal(path.basename(wheels['linux-x64']), `iothub_emulator-${version}-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.musllinux_1_1_x86_64.whl`);
    for (const wheel of Object.values(wheels)) {
      const { tags, binary, files } = checkWheel(wheel);
      assert.equal(binary.format, 'elf');
      assert.equal(binary.interpreter, null, 'a static binary');
      assert.ok(tags.every((tag) => tag.endsWith(`_${binary.arch}`)), `${tags} for ${binary.arch}`);
      for (const file of ['iothub_emulator/py.typed', 'iothub_emulator/pytest_plugin.py', `iothub_emulator-${version}.dist-info/entry_points.txt`]) assert.ok(files.includes(file), file);
    }
  });

  test('a wheel whose binary does not fit its tags is refused by the check', { skip: prerequisite(!existsSync(emulatorBinaryPath(arm64)) && BUILD_FIRST) }, async () => {
    // The x64 wheel with the arm64 binary in it (RECORD updated, so only the tags can tell).
    const swapped = path.join(work, 'swapped', path.basename(wheels['linux-x64']));
    await mkdir(path.dirname(swapped));
    await run(bin('python'), ['-c', SWAP_BINARY, wheels['linux-x64'], emulatorBinaryPath(arm64), swapped]);
    assert.throws(() => checkWheel(swapped), /manylinux_2_17_x86_64: the binary is elf aarch64/);
  });

  test('`iothub-emulator --devices 3` (on PATH in the venv) prints its ready line, running the wheel\'s binary', async () => {
    let pid;
    const r = await runHere(bin('iothub-emulator'), ['--devices', '3'], {
      onStdout: (out, child) => {
        if (!out.includes('\n') || pid) return;
        pid = child.pid;
        child.kill('SIGTERM'); // passed on to the hub, which stops; the launcher ends like it
      },
    });
    const ready = JSON.parse(r.stdout.split('\n')[0]);
    assert.match(ready.connectionString, /^HostName=127\.0\.0\.1:\d+;SharedAccessKeyName=iothubowner;SharedAccessKey=/);
    assert.match(r.stderr, /\(3 devices/);
    assert.ok(r.code === 0 || r.signal === 'SIGTERM', `exit ${r.code ?? r.signal}\n${r.stderr}`);

    const which = await runHere(bin('python'), ['-c', 'import iothub_emulator; print(iothub_emulator.binary_path())']);
    assert.ok(which.stdout.trim().startsWith(venv) && which.stdout.trim().endsWith('/site-packages/iothub_emulator/bin/iothub-emulator'), which.stdout);
    assert.deepEqual(readFileSync(which.stdout.trim()), readFileSync(emulatorBinaryPath(x64)), 'the npm package\'s binary, byte for byte');
  });

  test('`iothub-emulator exec`: the command gets the hub, its exit code is ours, the hub is stopped after', async () => {
    const script = 'import json, os, sys; print(json.dumps({"cs": os.environ["IOTHUB_CONNECTION_STRING"], "ca": os.environ["IOTHUB_CA_FILE"], "node": os.environ["NODE_EXTRA_CA_CERTS"], "argv": sys.argv[1:]})); sys.exit(7)';
    const r = await runHere(bin('iothub-emulator'), ['exec', '--devices', '2', '--', bin('python'), '-c', script, 'arg 1']);
    assert.equal(r.code, 7, r.stderr);
    const seen = lastJson(r.stdout);
    assert.match(seen.cs, /^HostName=127\.0\.0\.1:\d+;SharedAccessKeyName=iothubowner;/);
    assert.equal(seen.ca, seen.node);
    assert.deepEqual(seen.argv, ['arg 1']);
    assert.equal(existsSync(seen.ca), false, 'the hub stopped (its CA directory is gone)');
    const killed = await runHere(bin('iothub-emulator'), ['exec', '--', bin('python'), '-c', 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)']);
    assert.equal(killed.code, 128 + os.constants.signals.SIGTERM, 'killed by a signal: 128 + its number');
    const usage = await runHere(bin('iothub-emulator'), ['exec', '--devices', '1']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^iothub-emulator: usage: iothub-emulator exec /);
  });

  test('pytest with the plugin: the iothub fixture serves azure-iot-device (MQTT, WebSockets) and azure-iot-hub; no emulator is left running', async () => {
    const pids = path.join(work, 'pids-hub');
    const r = await runHere(bin('pytest'), ['-p', 'no:cacheprovider', '-rxXs', '--iothub-devices', '3', path.join(PYTESTS, 'test_package_hub.py')], {
      env: cleanEnv({ IOTHUB_TEST_PIDS: pids }),
      timeoutMs: 240_000,
    });
    assert.equal(r.code, 0, `pytest exited with ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`);
    const root = process.getuid?.() === 0;
    // The device tests need root (ports 443 and 8883): CI runs as root.
    // Cloud-to-device passes, or meets only the emulator's known CBS audience refusal (test_package_hub.py).
    assert.match(r.stdout, root ? /\b5 passed\b/ : /\b2 passed, 3 skipped\b/, r.stdout);
    const started = await pidsIn(pids);
    assert.equal(started.length, root ? 5 : 2, `hubs recorded: ${started}`);
    assert.deepEqual(await allGone(started, 1000), [], 'every hub stopped with pytest');
  });

  test('the README\'s Python recipes (a device test with azure-iot-device, a back-end test with azure-iot-hub) pass as written', { skip: prerequisite(process.getuid?.() !== 0 && 'the device recipe takes ports 443 and 8883, which need root') }, async () => {
    const readme = readFileSync(path.join(ROOT, 'packages', 'iothub-emulator', 'README.md'), 'utf8');
    const recipe = (title) => {
      const at = readme.indexOf(title);
      assert.ok(at >= 0, `the README has ${title}`);
      return /```python\n([\s\S]*?)```/.exec(readme.slice(at))[1];
    };
    // The back-end recipe defines the `registry` fixture the device recipe uses.
    const file = path.join(work, 'test_readme.py');
    await writeFile(file, `${recipe('**A back-end test with azure-iot-hub.**')}\n${recipe('**A device test with azure-iot-device.**')}`);
    const r = await runHere(bin('pytest'), ['-p', 'no:cacheprovider', file], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /\b2 passed\b/);
  });

  test('--iothub-scope=function: a hub per test, each stopped after it', async () => {
    const pids = path.join(work, 'pids-scope');
    const r = await runHere(bin('pytest'), ['-p', 'no:cacheprovider', '--iothub-scope=function', path.join(PYTESTS, 'test_package_scope.py')], { env: cleanEnv({ IOTHUB_TEST_PIDS: pids }) });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /\b2 passed\b/);
    const started = await pidsIn(pids);
    assert.equal(new Set(started).size, 2);
    assert.deepEqual(await allGone(started, 1000), []);
    const bad = await runHere(bin('pytest'), ['-p', 'no:cacheprovider', '--iothub-scope=module', path.join(PYTESTS, 'test_package_scope.py')]);
    assert.equal(bad.code, 4, 'a usage error');
    assert.match(bad.stderr, /--iothub-scope: invalid choice: 'module'/);
  });

  test('a SIGKILLed pytest leaves no emulator running (stdin pipe, --exit-on-stdin-eof)', async () => {
    const pids = path.join(work, 'pids-killed');
    const child = spawn(bin('pytest'), ['-p', 'no:cacheprovider', path.join(PYTESTS, 'test_package_killed.py')], {
      cwd: work,
      env: cleanEnv({ IOTHUB_TEST_PIDS: pids }),
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
    const deadline = Date.now() + 60_000;
    let started = [];
    while (started.length === 0 && child.exitCode === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      started = await pidsIn(pids);
    }
    assert.equal(started.length, 1, 'the test recorded its hub');
    assert.equal(gone(started[0]), false, 'the hub runs while pytest does');
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    assert.deepEqual(await allGone(started), [], 'the hub stopped with pytest');
  });
});

describe('the linux-arm64 wheel', { skip: skipAll || prerequisite(!existsSync(emulatorBinaryPath(arm64)) ? BUILD_FIRST : !hasQemu && 'no qemu-aarch64 (npm run setup:platforms)') }, () => {
  test('its binary, under qemu-aarch64, serves the Python API: a device created, a reset, stop() returns 0', async () => {
    const unpacked = path.join(work, 'arm64');
    // Unpacked as pip installs it: with the modes the wheel records (zipfile alone drops them).
    const unzip = 'import os, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor i in z.infolist():\n    os.chmod(z.extract(i, sys.argv[2]), (i.external_attr >> 16) or (0o755 if i.is_dir() else 0o644))';
    await run(bin('python'), ['-c', unzip, wheels['linux-arm64'], unpacked]);
    const binary = path.join(unpacked, 'iothub_emulator', 'bin', 'iothub-emulator');
    const wrapper = path.join(work, 'qemu-emulator.sh');
    await writeFile(wrapper, `#!/bin/sh\nexec qemu-aarch64 ${JSON.stringify(binary)} "$@"\n`);
    await chmod(wrapper, 0o755);
    const script = [
      'import json, sys',
      'from iothub_emulator import start_emulator',
      'with start_emulator(binary=sys.argv[1], devices=2, ready_timeout_ms=60000) as hub:',
      '    device = hub.create_device("arm64-device")',
      '    counted = hub.health()["devices"]',
      '    hub.reset()',
      '    after = hub.health()["devices"]',
      'print(json.dumps({"device": device.device_id, "counted": counted, "after": after, "stopped": hub.stop()}))',
    ].join('\n');
    const out = lastJson(await run(bin('python'), ['-c', script, wrapper]));
    assert.deepEqual(out, { device: 'arm64-device', counted: 3, after: 2, stopped: 0 });
  });
});
