"""The `iothub-emulator` command, as the npm package's bin:

    iothub-emulator [FLAGS...]                     runs the hub in the foreground (the binary's
                                                   flags, help and exit code; signals passed on)
    iothub-emulator exec [FLAGS...] -- CMD [ARG...] starts a hub, runs CMD with
                                                   IOTHUB_CONNECTION_STRING, IOTHUB_CA_FILE and
                                                   NODE_EXTRA_CA_CERTS (the hub's CA added) set,
                                                   stops the hub, exits with CMD's code
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Callable, List, NoReturn, Optional, Sequence, Tuple

from ._binary import EmulatorNotFoundError, binary_path
from ._emulator import Emulator, EmulatorStartError, start_emulator

FORWARDED = ["SIGINT", "SIGTERM"] if sys.platform == "win32" else ["SIGINT", "SIGTERM", "SIGHUP"]

EXEC_HELP = """
Or: iothub-emulator exec [FLAGS...] -- COMMAND [ARG...]
  starts a hub with FLAGS, runs COMMAND with IOTHUB_CONNECTION_STRING, IOTHUB_CA_FILE and
  NODE_EXTRA_CA_CERTS (the hub's CA added) set, stops the hub and exits with COMMAND's exit code
"""


def _fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"{message if message.startswith('iothub-emulator') else f'iothub-emulator: {message}'}\n")
    sys.exit(code)


def _forward_signals(child: subprocess.Popen[bytes]) -> None:
    def forward(signum: int, _frame: object) -> None:
        if sys.platform != "win32":
            child.send_signal(signum)
        elif signum == signal.SIGTERM:
            child.terminate()
        # Windows: Ctrl-C reaches every process of the console, the child included

    for name in FORWARDED:
        signal.signal(getattr(signal, name), forward)


def _exit_like(returncode: int) -> NoReturn:
    """Ends this process as the child ended: same exit code, or killed by the same signal."""
    if returncode < 0 and sys.platform != "win32":
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode if returncode >= 0 else 1)


def run(argv: Sequence[str]) -> NoReturn:
    try:
        binary = binary_path()
    except EmulatorNotFoundError as e:
        _fail(str(e))
    try:
        # A stdin pipe with --exit-on-stdin-eof: the hub stops with this launcher, however it ends.
        child = subprocess.Popen([binary, "--exit-on-stdin-eof", *argv], stdin=subprocess.PIPE)
    except OSError as e:
        _fail(f"cannot run {binary}: {e.strerror or e}")
    _forward_signals(child)
    code = child.wait()
    if code == 0 and ("--help" in argv or "-h" in argv):
        sys.stdout.write(EXEC_HELP)
        sys.stdout.flush()
    _exit_like(code)


def _extra_ca_file(hub: Emulator) -> Tuple[str, Callable[[], None]]:
    """Node reads one extra CA file, at start: the hub's CA, or when the caller already names a
    file, that file's certificates followed by the hub's CA (in a temporary file removed afterwards)."""
    theirs = os.environ.get("NODE_EXTRA_CA_CERTS")
    if not theirs:
        return hub.ca_path, lambda: None
    try:
        with open(theirs, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        text = ""  # Node would ignore an unreadable file too (with a warning); the hub's CA still counts
    directory = tempfile.mkdtemp(prefix="iothub-emulator-exec-")
    path = os.path.join(directory, "extra-ca.pem")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{text.rstrip()}\n{hub.ca}")
    return path, lambda: shutil.rmtree(directory, ignore_errors=True)


def exec_(argv: List[str]) -> NoReturn:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        _fail("usage: iothub-emulator exec [FLAGS...] -- COMMAND [ARG...]", 2)
    dashes = argv.index("--")
    command = argv[dashes + 1 :]
    try:
        hub = start_emulator(args=argv[:dashes])
    except (EmulatorNotFoundError, EmulatorStartError) as e:
        _fail(str(e))
    extra_ca, remove_extra_ca = _extra_ca_file(hub)
    env = {**os.environ, "IOTHUB_CONNECTION_STRING": hub.connection_string, "IOTHUB_CA_FILE": hub.ca_path, "NODE_EXTRA_CA_CERTS": extra_ca}
    code: Optional[int]
    try:
        # Windows finds npm.cmd, npx.cmd ... only through a shell.
        child = subprocess.Popen(subprocess.list2cmdline(command) if sys.platform == "win32" else command, env=env, shell=sys.platform == "win32")
    except OSError as e:
        sys.stderr.write(f"iothub-emulator exec: cannot run {command[0]}: {e.strerror or e}\n")
        code = 127
    else:
        _forward_signals(child)
        code = child.wait()
    remove_extra_ca()
    hub.stop()
    sys.exit(128 - code if code < 0 else code)


def main() -> NoReturn:
    argv = sys.argv[1:]
    if argv[:1] == ["exec"]:
        exec_(argv[1:])
    run(argv)


if __name__ == "__main__":
    main()
