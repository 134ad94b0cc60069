"""Starting Python processes for the tests without paying Python's start-up for each.

Most of a command's time, and of a replica's, was the interpreter starting and importing
SQLAlchemy, Alembic and the drivers: a third of a second of CPU, hundreds of times a run.
:class:`CommandLine` starts ``cli_zygote.py`` once per test process, which imports all of that,
and forks a new process for each command or replica: it still has its own process id, standard
streams, environment, working folder and exit code, and can be signalled and killed. The tests
of the interpreter's own start (the console script, a fresh process's logging, the missing
``db`` extra) start a real interpreter instead.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

ZYGOTE = Path(__file__).with_name("cli_zygote.py")


class ForkedProcess:
    """A process the zygote forked, with what the tests use of :class:`subprocess.Popen`."""

    def __init__(
        self, pid: int, reply: socket.socket, stdin: IO[str], stdout: IO[str], stderr_fd: int | None
    ) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr_fd = stderr_fd  # a pipe's end, when standard error was not sent to a file
        self.returncode: int | None = None
        self._reply = reply
        self._said = b""
        self._reading = threading.Lock()  # a watchdog thread may poll while the test waits

    def poll(self) -> int | None:
        """The exit code, or ``None`` while the process runs."""
        return self._read_exit(block=False)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit code (``-N`` when signal N ended it)."""
        code = self._read_exit(block=True, timeout=timeout)
        if code is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        return code

    def send_signal(self, number: int) -> None:
        """Send signal ``number`` to the process, unless it has ended."""
        if self.returncode is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        """Kill the process."""
        self.send_signal(signal.SIGKILL)

    def _read_exit(self, *, block: bool, timeout: float | None = None) -> int | None:
        if not self._reading.acquire(blocking=block, timeout=-1 if timeout is None else timeout):
            return None
        try:
            return self._read_exit_locked(block=block, timeout=timeout)
        finally:
            self._reading.release()

    def _read_exit_locked(self, *, block: bool, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        self._reply.settimeout(timeout if block else 0.0)
        try:
            while not self._said.endswith(b"\n"):
                chunk = self._reply.recv(64)
                if not chunk:
                    raise RuntimeError(
                        f"the zygote's child for process {self.pid} ended without its exit code"
                    )
                self._said += chunk
        except (BlockingIOError, TimeoutError):
            return None
        self.returncode = int(self._said)
        self._reply.close()
        return self.returncode


class CommandLine:
    """The zygote process of this test process, and a way to start a process through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        code: str | None = None,
        script: Path | None = None,
        stderr: IO[Any] | None = None,
    ) -> ForkedProcess:
        """Start ``python -m granite_assets ARGV[1:]`` (``-c CODE``, or ``SCRIPT ARGV[1:]``).

        Its standard input and output are pipes (text, as ``Popen(text=True)`` gives them);
        its standard error goes to ``stderr`` if given, else to a pipe read with :meth:`run`.
        """
        request = {"argv": argv, "env": env, "cwd": str(cwd), "code": code, "script": script and str(script)}
        in_read, in_write = os.pipe()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe() if stderr is None else (None, os.dup(stderr.fileno()))
        reply, their_reply = socket.socketpair()
        with self._lock:  # one request at a time on the control socket; the processes run at once
            socket.send_fds(
                self._zygote(),
                [json.dumps(request).encode()],
                [in_read, out_write, err_write, their_reply.fileno()],
            )
        for fd in (in_read, out_write, err_write):
            os.close(fd)
        their_reply.close()
        pid = int(b"".join(iter(lambda: reply.recv(1), b"\n")))
        stdin = open(in_write, "w", encoding="utf-8")  # noqa: SIM115, PTH123 - the process's own pipes
        return ForkedProcess(pid, reply, stdin, open(out_read, encoding="utf-8"), err_read)  # noqa: PTH123

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
        process = self.start(argv, env=env, cwd=cwd, code=code)
        process.stdin.close()  # as with stdin=DEVNULL: nothing to read
        out_fd = os.dup(process.stdout.fileno())
        process.stdout.close()
        assert process.stderr_fd is not None
        out, err = _read_both(out_fd, process.stderr_fd, timeout)
        return process.wait(timeout), out, err

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
        """End the zygote (the processes it started end on their own: each test waits for its own)."""
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
