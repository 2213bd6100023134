"""start_emulator(): runs the iothub-emulator binary as a child process on a free port, waits for
its one JSON ready line and returns the hub's coordinates, a control-API client and stop().

Lifecycle (the same rule as the npm package's launcher): the child gets `--exit-on-stdin-eof` and
a stdin pipe that only this process holds (close_fds), so it stops when we close the pipe (stop())
and also when this process ends in any way, SIGKILL included: the OS closes the pipe.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import queue
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Type, Union

from ._binary import binary_path

READY_TIMEOUT_MS = 30_000
STOP_TIMEOUT_S = 5.0
API_VERSION = "2021-04-12"
STDERR_TAIL = 16_384

# Options of the Python API only; every other option is a flag: `foo_bar=v` → `--foo-bar v`,
# `True` → `--foo-bar`, a list → the flag once per item.
PYTHON_ONLY = {"args", "env", "stderr", "binary", "ready_timeout_ms", "seed"}
FLAG_NAMES = {"bearer_tokens": "bearer-token"}

Json = Any
Seed = Union[str, "os.PathLike[str]", Mapping[str, Any]]


class EmulatorStartError(RuntimeError):
    """The hub did not print its ready line (the message ends with its last log line)."""


class ControlError(RuntimeError):
    """A request to the hub answered with a non-2xx status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Device:
    """A device identity registered by create_device()."""

    device_id: str
    primary_key: str
    secondary_key: str
    connection_string: str


def _flags(options: Mapping[str, Any]) -> List[str]:
    argv = ["--exit-on-stdin-eof"]
    # A free port unless one is given (as an option or in `args`), or `--standard-ports` chooses
    # the ports itself (and refuses --port).
    args = options.get("args") or []
    port_chosen = any(a == "--port" or a.startswith("--port=") or a == "--standard-ports" for a in args)
    if options.get("port") is None and not options.get("standard_ports") and not port_chosen:
        argv += ["--port", "0"]
    for key, value in options.items():
        if key in PYTHON_ONLY or value is None or value is False:
            continue
        flag = "--" + FLAG_NAMES.get(key, key.replace("_", "-"))
        if value is True:
            argv.append(flag)
        else:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                argv += [flag, str(item)]
    return argv


def _service_token(connection_string: str) -> str:
    """A service SAS token for the connection string's policy, valid for an hour."""
    fields = dict(part.split("=", 1) for part in connection_string.split(";"))
    resource = urllib.parse.quote(fields["HostName"], safe="")
    expiry = int(time.time()) + 3600
    key = base64.b64decode(fields["SharedAccessKey"])
    digest = hmac.new(key, f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    signature = urllib.parse.quote(base64.b64encode(digest).decode(), safe="")
    policy = urllib.parse.quote(fields["SharedAccessKeyName"], safe="")
    return f"SharedAccessSignature sr={resource}&sig={signature}&se={expiry}&skn={policy}"


class _Output:
    """Reads the child's stdout (first line: the ready line; the rest drained) and keeps the tail
    of its stderr, on daemon threads, so that neither pipe ever fills."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.lines: queue.Queue[Optional[bytes]] = queue.Queue()
        self._tail = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._stdout, args=(child.stdout,), daemon=True).start()
        if child.stderr is not None:
            threading.Thread(target=self._stderr, args=(child.stderr,), daemon=True).start()

    def _stdout(self, pipe: IO[bytes]) -> None:
        with pipe:
            for line in pipe:
                self.lines.put(line)
        self.lines.put(None)  # end of output: the child exited (or closed stdout)

    def _stderr(self, pipe: IO[bytes]) -> None:
        with pipe:
            for chunk in iter(lambda: pipe.read1(4096), b""):  # type: ignore[attr-defined]
                with self._lock:
                    self._tail = (self._tail + chunk)[-STDERR_TAIL:]

    def tail(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", "replace")


def _ready_line(child: subprocess.Popen[bytes], output: _Output, timeout_ms: int) -> Dict[str, Any]:
    def fail(why: str) -> EmulatorStartError:
        child.kill()
        child.wait()
        time.sleep(0.05)  # the stderr thread's last read
        lines = output.tail().strip().splitlines()
        last = f": {lines[-1]}" if lines else ""
        return EmulatorStartError(f"iothub-emulator did not start ({why}){last}")

    try:
        line = output.lines.get(timeout=timeout_ms / 1000)
    except queue.Empty:
        raise fail(f"no ready line within {timeout_ms} ms") from None
    if line is None:
        code = child.wait()
        raise fail(f"it exited with {code}")
    try:
        ready = json.loads(line)
        if not isinstance(ready, dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise fail(f"its first line is not JSON ({e})") from None
    # Nothing else is printed, but never let the pipe fill.
    threading.Thread(target=lambda: [None for _ in iter(output.lines.get, None)], daemon=True).start()
    return ready


class Emulator:
    """A running hub. Made by start_emulator(); stop() (or `with`/`async with`) ends it."""

    def __init__(self, child: subprocess.Popen[bytes], output: _Output, ready: Dict[str, Any]) -> None:
        self._child = child
        self._output = output
        self._lock = threading.Lock()
        self._returncode: Optional[int] = None
        self.ready: Dict[str, Any] = ready
        self.pid: int = child.pid
        self.host: str = ready["host"]
        self.port: int = ready["port"]
        #: `host:port`, what connection strings carry.
        self.host_name: str = ready["hostName"]
        #: The hub's `iothubowner` connection string.
        self.connection_string: str = ready["connectionString"]
        #: The hub's CA certificate, as a PEM file and as its text.
        self.ca_path: str = ready["caPath"]
        with open(self.ca_path, encoding="utf-8") as f:
            self.ca: str = f.read()
        #: The built-in Event Hubs-compatible endpoint's connection string, once the hub serves one
        #: (read from the ready line; None while the emulator has no events endpoint).
        self.event_hub_connection_string: Optional[str] = ready.get("eventHubConnectionString")
        self._ssl = ssl.create_default_context(cadata=self.ca)

    # -- the service side --------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Json = None, headers: Optional[Dict[str, str]] = None) -> Json:
        payload = None if body is None else json.dumps(body).encode()
        all_headers = dict(headers or {})
        if payload is not None:
            all_headers["content-type"] = "application/json"
        connection = http.client.HTTPSConnection(self.host, self.port, context=self._ssl, timeout=30)
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        if not 200 <= response.status <= 299:
            raise ControlError(f"{method} {path}: {response.status} {text}", response.status)
        return json.loads(text) if text else None

    def control(self, method: str, path: str, body: Json = None) -> Json:
        """Any endpoint of the control API (`/_emulator/<path>`) with a JSON body; returns the parsed
        answer, raises ControlError on a non-2xx status."""
        return self._request(method, path if path.startswith("/") else f"/_emulator/{path}", body)

    def device_connection_string(self, device_id: str, key: str) -> str:
        return f"HostName={self.host_name};DeviceId={device_id};SharedAccessKey={key}"

    def create_device(
        self,
        device_id: str,
        *,
        primary_key: Optional[str] = None,
        secondary_key: Optional[str] = None,
        status: str = "enabled",
    ) -> Device:
        """Registers a SAS device (keys generated unless given)."""
        if not isinstance(device_id, str) or not device_id:
            raise TypeError("create_device: device_id must be a non-empty string")
        identity = {
            "deviceId": device_id,
            "status": status,
            "authentication": {"type": "sas", "symmetricKey": {"primaryKey": primary_key, "secondaryKey": secondary_key}},
        }
        created = self._request(
            "PUT",
            f"/devices/{_quote(device_id)}?api-version={API_VERSION}",
            identity,
            {"authorization": _service_token(self.connection_string)},
        )
        keys = created["authentication"]["symmetricKey"]
        return Device(device_id, keys["primaryKey"], keys["secondaryKey"], self.device_connection_string(device_id, keys["primaryKey"]))

    def reset(self) -> None:
        """Back to the start without a restart: jobs, sessions, counters, recorded requests and
        faults cleared, the initial devices recreated (twins reset), the clock real again."""
        self.control("POST", "reset")

    def health(self) -> Json:
        return self.control("GET", "health")

    def set_faults(self, spec: str) -> Json:
        return self.control("PUT", "faults", {"spec": spec})

    def clear_faults(self) -> Json:
        return self.control("DELETE", "faults")

    def set_device_method(self, device_id: str, behaviour: Mapping[str, Any]) -> Json:
        """How simulated devices (`'*'`: all) answer direct methods: status, payload, delayMs, offline."""
        return self.control("PATCH", f"devices/{_quote(device_id)}/method", dict(behaviour))

    def set_device_faults(self, device_id: str, faults: Mapping[str, Any]) -> Json:
        return self.control("PUT", f"devices/{_quote(device_id)}/faults", dict(faults))

    def drop_connection(self, device_id: str) -> Json:
        return self.control("DELETE", f"devices/{_quote(device_id)}/connection")

    def add_devices(self, seed: Mapping[str, Any], *, replace: bool = False) -> Json:
        return self.control("PUT" if replace else "POST", "devices", dict(seed))

    def advance_time(self, seconds: float) -> Json:
        return self.control("POST", "time/advance", {"seconds": seconds})

    def set_time_scale(self, scale: float) -> Json:
        return self.control("PUT", "time", {"scale": scale})

    def telemetry(self, *, clear: bool = False) -> List[Json]:
        messages: List[Json] = self.control("GET", "telemetry?clear=true" if clear else "telemetry")["messages"]
        return messages

    def requests(self, *, clear: bool = False) -> Json:
        return self.control("GET", "requests?clear=true" if clear else "requests")

    def jobs(self) -> Json:
        return self.control("GET", "jobs")

    def stderr(self) -> str:
        """The tail of the hub's log (with the default `stderr="pipe"`)."""
        return self._output.tail()

    # -- the process -------------------------------------------------------------------------

    def kill(self) -> None:
        """What a crash does (nothing more written); stop() then returns the signal's negative number."""
        self._child.kill()

    def stop(self) -> int:
        """Stops the hub (a graceful stop: its stdin closed) and returns its exit code (0) once it
        has exited; killed after 5 s. Calling it again returns the same code."""
        with self._lock:
            if self._returncode is None:
                try:
                    self._child.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass  # already gone
                try:
                    self._returncode = self._child.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self._child.kill()
                    self._returncode = self._child.wait()
            return self._returncode

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.stop()

    async def __aenter__(self) -> "Emulator":
        return self

    async def __aexit__(self, kind: Optional[Type[BaseException]], value: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def __repr__(self) -> str:  # never the connection string: it holds the hub's key
        return f"<Emulator {self.host_name} pid={self.pid}>"


def _quote(device_id: str) -> str:
    return urllib.parse.quote(device_id, safe="")


class _SeedFile:
    """A seed mapping goes through a temporary file (the flag takes a file); a path is that file."""

    def __init__(self, seed: Optional[Seed]) -> None:
        self.dir: Optional[str] = None
        self.args: List[str] = []
        if seed is None:
            return
        if isinstance(seed, Mapping):
            self.dir = tempfile.mkdtemp(prefix="iothub-emulator-seed-")
            path = os.path.join(self.dir, "seed.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(seed, f)
            self.args = ["--seed", path]
        else:
            self.args = ["--seed", os.fspath(seed)]

    def remove(self) -> None:
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def start_emulator(
    *,
    args: Sequence[str] = (),
    env: Optional[Mapping[str, str]] = None,
    stderr: str = "pipe",
    binary: Optional[str] = None,
    ready_timeout_ms: int = READY_TIMEOUT_MS,
    seed: Optional[Seed] = None,
    **flags: Any,
) -> Emulator:
    """Starts a hub and returns it once it is ready. Options are the binary's flags in snake_case
    (`devices=20`, `faults="429:0.1"`, `tier="S1"`, `host=`, `port=`, `standard_ports=True`,
    `unknown_job=`, `bearer_tokens=[...]`, `data_dir=`, `ca_cert=`, `ca_key=`…), plus `seed` (a
    file's path or the seed mapping), `args` (more flags as they are), `env` (on top of this
    process's), `stderr` ("pipe": its tail in stderr() and in start-up errors, "inherit",
    "ignore"), `binary` (default: $IOTHUB_EMULATOR, else the wheel's) and `ready_timeout_ms`."""
    streams = {"pipe": subprocess.PIPE, "inherit": None, "ignore": subprocess.DEVNULL}
    if stderr not in streams:
        raise ValueError(f"start_emulator: stderr must be 'pipe', 'inherit' or 'ignore', not {stderr!r}")
    options = {**flags, "args": list(args)}
    seed_file = _SeedFile(seed)
    executable = binary or binary_path()
    try:
        try:
            child = subprocess.Popen(
                [executable, *_flags(options), *seed_file.args, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=streams[stderr],
                env={**os.environ, **(env or {})},
                close_fds=True,  # only this process holds the stdin pipe: the hub ends with it
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0,
            )
        except OSError as e:
            raise EmulatorStartError(f"iothub-emulator did not start (cannot run {executable}: {e.strerror or e})") from None
        output = _Output(child)
        ready = _ready_line(child, output, ready_timeout_ms)
    finally:
        seed_file.remove()
    return Emulator(child, output, ready)


async def start_emulator_async(**options: Any) -> Emulator:
    """start_emulator() without blocking the event loop while the hub starts."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: start_emulator(**options))
