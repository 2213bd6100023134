// The tests start the emulator through the project's one launcher.
export { emulatorBinary, startEmulator } from '../../scripts/emulator-process.mjs'
