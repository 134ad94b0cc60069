"""Running ``granite-assets`` commands as new processes, without paying Python's start-up for each.

Most of a command's time was the interpreter starting and importing SQLAlchemy, Alembic and the
drivers, a third of a second of CPU, hundreds of times a run. :class:`CommandLine` starts
``cli_zygote.py`` once per test process, which imports all of that, and forks a new process for
each command: it still has its own standard streams, environment, working folder and exit
code. The tests of the interpreter's own start (the console script, a fresh process's logging,
the missing ``db`` extra) start a real interpreter instead.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ZYGOTE = Path(__file__).with_name("cli_zygote.py")


class CommandLine:
    """The zygote process of this test process, and a way to run a command through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def run(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        code: str | None = None,
        timeout: float = 300,
    ) -> tuple[int, str, str]:
        """Run ``python -m granite_assets ARGV[1:]`` (or ``-c CODE``): its exit code, stdout, stderr."""
        request = json.dumps({"argv": argv, "env": env, "cwd": str(cwd), "code": code}).encode()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        reply, their_reply = socket.socketpair()
        # One request at a time on the control socket; the commands themselves run at once.
        with Path(os.devnull).open("rb") as stdin, self._lock:
            socket.send_fds(
                self._zygote(), [request], [stdin.fileno(), out_write, err_write, their_reply.fileno()]
            )
        for fd in (out_write, err_write):
            os.close(fd)
        their_reply.close()
        out, err = _read_both(out_read, err_read, timeout)
        reply.settimeout(timeout)
        with reply:
            exit_code = b"".join(iter(lambda: reply.recv(64), b""))
        return int(exit_code), out, err

    def _zygote(self) -> socket.socket:
        if self._control is None or self._process is None or self._process.poll() is not None:
            ours, theirs = socket.socketpair()
            self._process = subprocess.Popen(
                [sys.executable, str(ZYGOTE), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
            theirs.close()
            self._control = ours
            atexit.register(self.close)
        return self._control

    def close(self) -> None:
        """End the zygote (its commands have all ended: each test waits for its own)."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            self._process.wait(timeout=30)
            self._process = None


def _read_both(out_fd: int, err_fd: int, timeout: float) -> tuple[str, str]:
    """Everything written to both pipes until both close, decoded as ``subprocess.run(text=True)`` does."""
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            ready = selector.select(max(deadline - time.monotonic(), 0))
            if not ready:
                raise subprocess.TimeoutExpired("granite-assets", timeout)
            for key, _events in ready:
                chunk = os.read(key.fd, 65536)
                if chunk:
                    chunks[key.fd].append(chunk)
                else:
                    selector.unregister(key.fd)
                    os.close(key.fd)
    return _text(chunks[out_fd]), _text(chunks[err_fd])


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode().replace("\r\n", "\n").replace("\r", "\n")


#: This test process's command line.
COMMAND_LINE = CommandLine()
