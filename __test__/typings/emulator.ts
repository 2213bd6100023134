// iothub-emulator's typings (packages/iothub-emulator/index.d.ts), compiled by tsconfig.json: the options, the hub
// object a test uses, and what they refuse.
import { startEmulator, binaryPath, EmulatorNotFoundError } from 'iothub-emulator';
import type { Emulator, EmulatorOptions, CreatedDevice, Routing, Route } from 'iothub-emulator';

async function main(): Promise<void> {
  const options: EmulatorOptions = { devices: 3, tier: 'S1', faults: '429:0.1', bearerTokens: ['t'], dataDir: '/tmp/hub', seed: { generate: 2 }, args: ['--mqtt-port', '0'], stderr: 'inherit', partitions: 8, retentionHours: 48, consumerGroups: ['analytics'] };
  const hub: Emulator = await startEmulator(options);
  const cs: string = hub.connectionString;
  const eventHubCs: string = hub.eventHubConnectionString;
  const port: number = hub.port;
  const pem: string = hub.ca;
  const device: CreatedDevice = await hub.createDevice('d1', { primaryKey: 'a2V5' });
  const deviceCs: string = device.connectionString;
  await hub.setDeviceMethod('*', { status: 500, delayMs: 10, offline: false });
  await hub.setDeviceFaults('d1', { refuseConnects: 1 });
  const { nowMs } = await hub.advanceTime(3600);
  const { devices } = await hub.health();
  const routing: Routing = {
    routes: [{ name: 'hot', source: 'DeviceMessages', condition: '$body.t > 30', endpointNames: ['events'], isEnabled: true }],
    fallbackRoute: { name: '$fallback', condition: 'true', endpointNames: ['events'], isEnabled: false },
    enrichments: [{ key: 'site', value: '$twin.tags.site', endpointNames: ['events'] }],
  };
  const inForce: Routing = await hub.setRouting(routing);
  const routes: Route[] | undefined = (await hub.routing()).routes;
  await startEmulator({ routing });
  void [inForce, routes];
  // @ts-expect-error not a routing source
  await hub.setRouting({ routes: [{ name: 'r', source: 'Telemetry', endpointNames: ['events'] }] });
  // @ts-expect-error events is the one endpoint
  await hub.setRouting({ routes: [{ name: 'r', source: 'DeviceMessages', endpointNames: ['queue'] }] });
  await hub.reset();
  const code: number | string | null = await hub.stop();
  await hub[Symbol.asyncDispose]();
  const killed: boolean = hub.kill();
  const path: string = binaryPath();
  const notFound = new EmulatorNotFoundError('x');
  const errorCode: 'IOTHUB_EMULATOR_NOT_FOUND' = notFound.code;
  void [cs, eventHubCs, port, pem, deviceCs, nowMs, devices, code, path, errorCode, killed];
  // @ts-expect-error not a tier
  await startEmulator({ tier: 'F1' });
  // @ts-expect-error devices is a count
  await startEmulator({ devices: '3' });
  // @ts-expect-error a device id is a string
  await hub.createDevice(42);
  // @ts-expect-error no such member
  hub.restart();
}
void main;
