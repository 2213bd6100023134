"""Which iothub-emulator binary to run: $IOTHUB_EMULATOR, else the one this wheel carries
(iothub_emulator/bin/). When none fits, one line saying what to do."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

EXE = "iothub-emulator.exe" if sys.platform == "win32" else "iothub-emulator"
BUNDLED = Path(__file__).resolve().parent / "bin" / EXE


class EmulatorNotFoundError(RuntimeError):
    """No iothub-emulator binary fits this machine (the message says what to do)."""

    code = "IOTHUB_EMULATOR_NOT_FOUND"


def binary_path(env: os._Environ[str] | dict[str, str] | None = None) -> str:
    """The path of the binary to run; raises EmulatorNotFoundError (one line) when there is none."""
    env = os.environ if env is None else env
    override = env.get("IOTHUB_EMULATOR")
    if override:
        if not os.path.isfile(override):
            raise EmulatorNotFoundError(f"IOTHUB_EMULATOR names no file: {override}")
        return override
    if not BUNDLED.is_file():
        raise EmulatorNotFoundError(
            f"iothub-emulator: this installation has no binary ({BUNDLED} is missing): install the wheel "
            "built for this platform (pip picks it by its tags), or build one with "
            "`cargo build --release -p iothub-emulator` from the iothub-jobs repository and set IOTHUB_EMULATOR to it"
        )
    _make_executable(BUNDLED)
    return str(BUNDLED)


def _make_executable(file: Path) -> None:
    # An installer that drops the executable bit (a zip tool, a copy) must not break the hub.
    if sys.platform == "win32" or os.access(file, os.X_OK):
        return
    try:
        file.chmod(file.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError:
        pass  # a read-only site-packages: starting it reports the permission error with the path
