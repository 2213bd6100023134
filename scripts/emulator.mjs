// `npm run emulator [-- ARGS]`: the package's `iothub-emulator` command (packages/iothub-emulator/bin/) in the
// foreground, on this checkout's binary (built if needed); `npm run emulator -- exec -- CMD` too.
import { emulatorBinary } from './emulator-process.mjs'

process.env.IOTHUB_EMULATOR = emulatorBinary()
await import('../packages/iothub-emulator/bin/iothub-emulator.js')
