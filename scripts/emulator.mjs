// `npm run emulator [-- ARGS]`: runs the local IoT Hub in the foreground (builds it if needed).
import { spawn } from 'node:child_process'
import { emulatorBinary } from './emulator-process.mjs'

const child = spawn(emulatorBinary(), process.argv.slice(2), { stdio: 'inherit' })
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
child.on('exit', (code) => process.exit(code ?? 0))
