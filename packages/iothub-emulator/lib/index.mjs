// The ESM entry: the same objects as the CommonJS one (lib/index.js).
import emulator from './index.js';

export const { startEmulator, binaryPath, EmulatorNotFoundError } = emulator;
export default emulator;
