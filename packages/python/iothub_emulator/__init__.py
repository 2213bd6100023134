"""iothub-emulator: a local Azure IoT Hub for tests.

    from iothub_emulator import start_emulator

    with start_emulator(devices=20) as hub:
        hub.connection_string  # HostName=127.0.0.1:40123;SharedAccessKeyName=iothubowner;…
        hub.ca_path            # the hub's CA certificate (PEM) to trust

The pytest plugin (`iothub` fixture, `--iothub-*` options, `@pytest.mark.iothub(...)`) is
registered through the `pytest11` entry point; see iothub_emulator.pytest_plugin.
"""

from ._binary import EmulatorNotFoundError, binary_path
from ._emulator import ControlError, Device, Emulator, EmulatorStartError, start_emulator, start_emulator_async

try:  # the installed distribution's version (pyproject.toml's, checked against the npm package's)
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("iothub-emulator")
except PackageNotFoundError:  # run from a source checkout
    __version__ = "0+unknown"

__all__ = [
    "ControlError",
    "Device",
    "Emulator",
    "EmulatorNotFoundError",
    "EmulatorStartError",
    "binary_path",
    "start_emulator",
    "start_emulator_async",
    "__version__",
]
