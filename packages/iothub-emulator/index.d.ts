// Typings of iothub-emulator: startEmulator() and what it returns. Written by hand (the package
// is plain JavaScript); checked by the repository's `npm run test:types`.

/** Options of `startEmulator`: the emulator's flags (camelCase; see `iothub-emulator --help`)
 * plus the Node-only `args`, `env`, `stderr`, `binary`, `unref` and `readyTimeoutMs`. */
export interface EmulatorOptions {
  /** Simulated devices `device-0000` … with tags `{group: 'even'|'odd', index}` (`--devices`). */
  devices?: number;
  /** A seed file's path, or the seed object itself (written to a temporary file) (`--seed`). */
  seed?: string | SeedFile;
  /** Enforce that tier's limits (`--tier`); default: no limits. */
  tier?: 'S1' | 'S2' | 'S3';
  /** Fault injection, e.g. `'429:0.1,reset:0.05,latency:1-20ms'` (`--faults`). */
  faults?: string;
  /** Address to listen on (`--host`, default `127.0.0.1`). */
  host?: string;
  /** Port (`--port`); default 0: a free port for every hub. */
  port?: number;
  /** Answer to GET of an unknown job (`--unknown-job`, default 404). */
  unknownJob?: 404 | 200 | '404' | '200';
  /** Accepted `Authorization: Bearer` tokens (`--bearer-token`, repeated). */
  bearerTokens?: string[];
  /** Keep the hub's state in this directory across restarts (`--data-dir`). */
  dataDir?: string;
  /** Your own CA certificate and key, PEM files (`--ca-cert`, `--ca-key`). */
  caCert?: string;
  caKey?: string;
  /** Partitions of the built-in events endpoint, 2 to 128 (`--partitions`, default 4). */
  partitions?: number;
  /** How long the events endpoint keeps a message, 1 to 168 hours of the hub's clock
   * (`--retention-hours`, default 24). */
  retentionHours?: number;
  /** Consumer groups of the events endpoint besides `$Default` (`--consumer-group`, repeated). */
  consumerGroups?: string[];
  /** Message routing in the shape of IoT Hub's `properties.routing` (put in the seed, over a
   * seed file's own `routing`). */
  routing?: Routing;
  /** Start a storage account linked to the hub: `'azurite'`, Azurite's blob service as the
   * emulator's child (`--storage`; needs the optional peer dependency `azurite`). */
  storage?: 'azurite';
  /** Link the hub to this storage account instead (`--storage-connection-string`). */
  storageConnectionString?: string;
  /** More command-line flags, passed as they are (e.g. `['--mqtt-port', '0']`). */
  args?: string[];
  /** Environment variables for the emulator, on top of this process's. */
  env?: Record<string, string>;
  /** The emulator's log (stderr): kept for `stderr()` (`'pipe'`, default), shown, or dropped. */
  stderr?: 'pipe' | 'inherit' | 'ignore';
  /** The binary to run; default `$IOTHUB_EMULATOR`, else the installed platform package's. */
  binary?: string;
  /** Default true: once ready, the hub does not keep this process alive (it still stops with
   * it). `false` keeps the process running as long as the hub does (a hub in the foreground). */
  unref?: boolean;
  /** How long to wait for the ready line (default 30000). */
  readyTimeoutMs?: number;
}

/** A seed file's content (the emulator README's "Seed file"). */
export interface SeedFile {
  generate?: number;
  /** Consumer groups of the events endpoint besides `$Default`. */
  consumerGroups?: string[];
  /** Message routing, in the shape of IoT Hub's `properties.routing`. */
  routing?: Routing;
  /** Start and link a storage account, as the `storage` option (`--storage`; the flag wins). */
  storage?: 'azurite';
  /** File-upload notifications on, as the `fileNotifications` option. */
  fileNotifications?: boolean;
  devices?: Array<{ deviceId: string; tags?: Record<string, unknown>; properties?: { desired?: Record<string, unknown>; reported?: Record<string, unknown> }; method?: MethodBehaviour } & Record<string, unknown>>;
  [key: string]: unknown;
}

/** The sources a route reads, as IoT Hub names them. */
export type RoutingSource =
  | 'DeviceMessages'
  | 'TwinChangeEvents'
  | 'DeviceLifecycleEvents'
  | 'DeviceConnectionStateEvents'
  | 'DeviceJobLifecycleEvents';

/** A route: messages of `source` matching `condition` (routing query language; default `true`)
 * go to the endpoint. `events` (the built-in endpoint) is the only one the emulator has. */
export interface Route {
  name: string;
  source: RoutingSource;
  condition?: string;
  endpointNames: ['events'];
  /** Default true. */
  isEnabled?: boolean;
}

/** Adds an application property to routed messages: a static `value`, `$twin.tags.x`,
 * `$twin.properties.desired.x` / `.reported.x` or `$iothubname`. */
export interface Enrichment {
  key: string;
  value: string;
  endpointNames: ['events'];
}

/** IoT Hub's `properties.routing`. Without `fallbackRoute` the fallback route is on (a new
 * hub's): device messages no route took go to `events`. Custom `endpoints` are refused. */
export interface Routing {
  routes?: Route[];
  fallbackRoute?: Omit<Route, 'source'> & { source?: 'DeviceMessages' };
  enrichments?: Enrichment[];
  endpoints?: never;
}

/** How a simulated device answers direct methods (absent fields are kept). */
export interface MethodBehaviour {
  status?: number;
  payload?: unknown;
  delayMs?: number;
  offline?: boolean;
}

/** Faults of one device's MQTT session (all zero/false clears them). */
export interface DeviceFaults {
  refuseConnects?: number;
  methodResponseDelayMs?: number;
  swallowMethodResponses?: boolean;
}

export interface CreatedDevice {
  deviceId: string;
  /** `HostName=…;DeviceId=…;SharedAccessKey=…` for a device SDK (with the `ca` option). */
  connectionString: string;
  primaryKey: string;
  secondaryKey: string;
}

export interface EmulatorTime {
  now: string;
  nowMs: number;
  scale: number;
}

export interface TelemetryMessage {
  deviceId: string;
  topic: string;
  time: string;
  body: unknown;
}

/** A running hub. */
export interface Emulator {
  /** `HostName=<host:port>;SharedAccessKeyName=iothubowner;SharedAccessKey=…` */
  readonly connectionString: string;
  /**
   * The built-in Event Hubs-compatible endpoint's:
   * `Endpoint=sb://<host:eventsPort>/;SharedAccessKeyName=iothubowner;SharedAccessKey=…;EntityPath=<name>;UseDevelopmentEmulator=true`
   * (the events endpoint's plain AMQP port, which `@azure/event-hubs` 6 and Python's
   * `azure-eventhub` 5 both dial as given), or with `--standard-ports` as the portal shows it,
   * `Endpoint=sb://<host>/;…;EntityPath=<name>` (TLS on 5671).
   */
  readonly eventHubConnectionString: string;
  /** The linked storage account's connection string (`--storage azurite`: Azurite's
   * `devstoreaccount1` on HTTPS with the hub's CA), `null` without one. */
  readonly storageConnectionString: string | null;
  /** `host:port`, what connection strings carry. */
  readonly hostName: string;
  readonly host: string;
  readonly port: number;
  /** The CA certificate (PEM) to trust: a client's `ca` option. */
  readonly ca: string;
  /** The same CA as a file (`NODE_EXTRA_CA_CERTS`, `IOTHUB_CA_FILE`). */
  readonly caPath: string;
  /** The emulator process's id. */
  readonly pid: number;
  /** The ready line as the emulator printed it (every field, including the ones added later). */
  readonly ready: Readonly<Record<string, unknown>>;
  /** Registers a device (keys generated unless given) and returns its connection string. */
  createDevice(deviceId: string, options?: { primaryKey?: string; secondaryKey?: string; status?: 'enabled' | 'disabled' }): Promise<CreatedDevice>;
  /** A device connection string on this hub for a key. */
  deviceConnectionString(deviceId: string, key: string): string;
  /** Empties the hub (devices, jobs, sessions) without a restart. */
  reset(): Promise<unknown>;
  /** `GET /_emulator/health`: status, device, connection and job counts, time. */
  health(): Promise<{ status: string; hostName: string; devices: number; connectedDevices: number; jobs: number; time: EmulatorTime }>;
  /** Replaces the hub's fault spec (same syntax as `faults`). */
  setFaults(spec: string): Promise<unknown>;
  clearFaults(): Promise<unknown>;
  /** A simulated device's method behaviour; `'*'` for every device. */
  setDeviceMethod(deviceId: string, behaviour: MethodBehaviour): Promise<{ updated: number }>;
  /** Faults of one device's MQTT session. */
  setDeviceFaults(deviceId: string, faults: DeviceFaults): Promise<Required<DeviceFaults>>;
  /** Drops the device's MQTT connection. */
  dropConnection(deviceId: string): Promise<{ dropped: boolean }>;
  /** Adds simulated devices from a seed object (or replaces all with `replace: true`). */
  addDevices(seed: SeedFile, options?: { replace?: boolean }): Promise<{ loaded: number; devices: number }>;
  /** Moves the emulator's clock forward (scheduled jobs start, timeouts expire). */
  advanceTime(seconds: number): Promise<EmulatorTime>;
  /** Runs the emulator's clock at `scale` × real time (0 stops it). */
  setTimeScale(scale: number): Promise<EmulatorTime>;
  /** The last 1,000 telemetry messages devices sent. */
  telemetry(options?: { clear?: boolean }): Promise<TelemetryMessage[]>;
  /** The REST requests the hub recorded. */
  requests(options?: { clear?: boolean }): Promise<{ requests: Array<{ method: string; path: string; status: number } & Record<string, unknown>>; dropped: number }>;
  /** Jobs with their create counters. */
  jobs(): Promise<unknown>;
  /** The routing in force (`GET /_emulator/routing`). */
  routing(): Promise<Routing>;
  /** Replaces the routing (`PUT /_emulator/routing`); rejects with the one-line reason the
   * service would give (a custom endpoint, a bad condition or source, …). */
  setRouting(routing: Routing): Promise<Routing>;
  /** Any control endpoint: `control('GET', 'devices')` calls `GET /_emulator/devices`. */
  control(method: string, path: string, body?: unknown): Promise<any>;
  /** The tail of the emulator's log when `stderr` is `'pipe'`. */
  stderr(): string;
  /** Settles with the exit code (or signal) when the emulator has exited. */
  readonly exited: Promise<number | string | null>;
  /** Sends the emulator a signal, SIGKILL by default: what a crash does (e.g. to test that a
   * `dataDir` keeps every answered write); `stop()` then resolves with the signal. */
  kill(signal?: 'SIGKILL' | 'SIGTERM' | 'SIGINT'): boolean;
  /** Stops the hub; resolves with its exit code (0) once it has exited. Idempotent. */
  stop(): Promise<number | string | null>;
  /** `await using hub = await startEmulator()` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<unknown>;
}

/** Starts a hub on a free port and resolves when it is ready. */
export function startEmulator(options?: EmulatorOptions): Promise<Emulator>;

/** The binary `startEmulator` runs: `$IOTHUB_EMULATOR`, else the installed platform package's.
 * Throws an `EmulatorNotFoundError` saying what to do when none fits. */
export function binaryPath(): string;

export class EmulatorNotFoundError extends Error {
  readonly code: 'IOTHUB_EMULATOR_NOT_FOUND';
}
