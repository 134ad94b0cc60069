"""A Python process that has imported granite-assets, and forks a new process for each command.

Usage: ``python cli_zygote.py FD``, FD being a Unix socket (see :mod:`command_line`). Each
request on it is one JSON message (``argv``, ``env``, ``cwd``, and ``code`` for ``python -c`` or
``script`` for ``python SCRIPT``; else ``python -m granite_assets``) with four descriptors: the
command's standard input, output and error, and a socket for its process id and exit code.

The command runs in a grandchild, a process of its own with its own standard streams,
environment, working folder and exit code; only the interpreter's start and the imports are done
once, here, rather than once per command (they were most of the suite's command-line and
replica time). The child between the two writes the command's process id, waits for it and
writes its exit code, so this loop never waits on a command and many run at once.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

# What every command imports, imported once: the command line, SQLAlchemy, Alembic and the drivers.
import alembic.command
import alembic.config
import psycopg
import psycopg2
import pymysql
import sqlalchemy

import granite_assets._cli
import granite_assets.migrations._runner

IMPORTED = (alembic.command, alembic.config, psycopg, psycopg2, pymysql, sqlalchemy, granite_assets._cli)
STREAMS = 3  # standard input, output and error


def run_command(request: dict[str, Any]) -> int:
    """Run one command as ``python -m granite_assets`` (or ``python -c CODE``) would; its exit code."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    code, script = request.get("code"), request.get("script")
    # What python puts first on sys.path for -c, a script and -m; then PYTHONPATH, read at start.
    sys.path[0] = "" if code is not None else str(Path(script).parent) if script else str(Path.cwd())
    sys.path[1:1] = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    try:
        if code is not None:
            exec(compile(str(code), "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
        elif script is not None:
            runpy.run_path(script, run_name="__main__")
        else:
            runpy.run_module("granite_assets", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - as the interpreter does: print it, exit 1
        traceback.print_exc()
        return 1
    return 0


def serve(control: socket.socket) -> None:
    """Fork a command for each request until the socket closes."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children in between are reaped as they end
    while True:
        message, fds, _flags, _address = socket.recv_fds(control, 1 << 20, STREAMS + 1)
        if not message:
            return
        request = json.loads(message)
        if os.fork() == 0:  # the child in between
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            reply = socket.socket(fileno=fds[STREAMS])
            command = os.fork()
            if command == 0:
                reply.close()
                for number, fd in enumerate(fds[:STREAMS]):
                    os.dup2(fd, number)
                    os.close(fd)
                code = run_command(request)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            for fd in fds[:STREAMS]:
                os.close(fd)
            reply.sendall(f"{command}\n".encode())
            _pid, status = os.waitpid(command, 0)
            reply.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            os._exit(0)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
