// The ESM entry: the same objects as the CommonJS one (lib/index.js). Loaded through require
// rather than `import ... from './index.js'`, so that runtimes which decide a .js file's module
// kind differently (Deno, outside its workspace's package.json) still load it as CommonJS.
import { createRequire } from 'node:module';

const emulator = createRequire(import.meta.url)('./index.js');

export const { startEmulator, binaryPath, EmulatorNotFoundError } = emulator;
export default emulator;
