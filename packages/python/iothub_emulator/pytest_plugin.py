"""The pytest plugin (registered through the `pytest11` entry point): an `iothub` fixture that
hands a test a running hub.

- `iothub`: one hub for the whole session (default), or one per test with
  `--iothub-scope=function` (or `iothub_scope = function` in the ini file). A test marked
  `@pytest.mark.iothub(...)` always gets a hub of its own, started with the marker's options:
  keyword arguments are start_emulator()'s (`devices=3`, `seed={...}`, `faults="429:0.1"`,
  `standard_ports=True, host="127.0.0.2"`, …), positional ones more flags as they are.
- `iothub_session`: the session's hub, for session-scoped fixtures of your own.
- `--iothub-devices N`, `--iothub-seed FILE`, `--iothub-faults SPEC`, `--iothub-binary PATH`,
  `--iothub-arg FLAG` (repeatable, e.g. `--iothub-arg=--tier=S1`): options of every hub started.

Every hub is stopped when its scope ends, and never outlives the pytest process (killed included).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest

from ._emulator import Emulator, start_emulator


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("iothub", "iothub-emulator (a local Azure IoT Hub)")
    group.addoption("--iothub-scope", choices=["session", "function"], default=None, help="one hub per session (default) or per test")
    group.addoption("--iothub-devices", type=int, default=None, metavar="N", help="simulated devices device-0000 … answering every direct method")
    group.addoption("--iothub-seed", default=None, metavar="FILE", help="a seed file (devices, modules, twins …)")
    group.addoption("--iothub-faults", default=None, metavar="SPEC", help="fault injection, e.g. 429:0.1,latency:1-20ms")
    group.addoption("--iothub-binary", default=None, metavar="PATH", help="the emulator binary to run (default: $IOTHUB_EMULATOR, else the wheel's)")
    group.addoption("--iothub-arg", action="append", default=[], metavar="FLAG", help="one more flag of the emulator, as it is (repeatable)")
    parser.addini("iothub_scope", "one hub per session (default) or per test", default="session")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "iothub(*flags, **options): this test gets a hub of its own, started with start_emulator(**options) "
        "(e.g. seed={...}, faults='429:0.1', standard_ports=True) and the flags",
    )


def _options(config: pytest.Config) -> Dict[str, Any]:
    """The hub options the command line asks for (None values: the emulator's defaults)."""
    return {
        "devices": config.getoption("iothub_devices"),
        "seed": config.getoption("iothub_seed"),
        "faults": config.getoption("iothub_faults"),
        "binary": config.getoption("iothub_binary"),
        "args": list(config.getoption("iothub_arg")),
    }


def _scope(config: pytest.Config) -> str:
    scope = str(config.getoption("iothub_scope") or config.getini("iothub_scope"))
    if scope not in ("session", "function"):
        raise pytest.UsageError(f"iothub_scope must be session or function, not {scope!r}")
    return scope


@pytest.fixture(scope="session")
def iothub_session(pytestconfig: pytest.Config) -> Iterator[Emulator]:
    """One hub for the whole session."""
    with start_emulator(**_options(pytestconfig)) as hub:
        yield hub


@pytest.fixture
def iothub(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running hub: the session's, or this test's own (per-test scope, or an `iothub` marker)."""
    marker = request.node.get_closest_marker("iothub")
    if marker is None and _scope(request.config) == "session":
        yield request.getfixturevalue("iothub_session")
        return
    options = _options(request.config)
    if marker is not None:
        options.update(marker.kwargs)
        options["args"] = [*options["args"], *marker.kwargs.get("args", ()), *map(str, marker.args)]
    with start_emulator(**options) as hub:
        yield hub
