"""Waiting for a lock: a loop of short tries, never one long blocking call.

Each backend's locks (:mod:`granite_assets.migrations._backends`) and the process's own Alembic
lock wait here. Every wait is a loop of short tries, so that Ctrl-C interrupts it at once, an async caller's
event loop keeps running (see :func:`with_sleep`), and the log says once that it waits and then
only now and again how long it has waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from granite_assets.migrations._names import logger

#: Seconds between two "still waiting" log lines while a lock is held elsewhere.
LOG_EVERY = 30.0
# Tries back off from the first pause to the longest; MySQL's GET_LOCK and SQLite's busy handler
# wait on their side for at most a slice, so that the loop still runs at least once a second.
_PAUSE_FIRST, _PAUSE_MOST = 0.05, 1.0
_SERVER_SLICE = 1.0

# How to wait between polls: time.sleep, or a sleep that yields to the event loop when the
# upgrade runs inside an async caller (see granite_assets.migrations._async).
_sleep: ContextVar[Callable[[float], None]] = ContextVar("granite_assets_sleep", default=time.sleep)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def with_sleep(
    sleep: Callable[[float], None], fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
) -> _R:
    """Call ``fn`` with ``sleep`` as the way to wait between lock polls."""
    token = _sleep.set(sleep)
    try:
        return fn(*args, **kwargs)
    finally:
        _sleep.reset(token)


def waits_cooperatively() -> bool:
    """Tell whether waits must yield to an event loop rather than block the thread."""
    return _sleep.get() is not time.sleep


def pause(seconds: float) -> None:
    """Wait ``seconds`` the way the caller waits: blocking a thread, or yielding to its event loop."""
    _sleep.get()(seconds)


def wait_for(
    try_once: Callable[[float], bool],
    *,
    timeout: float,
    waiting_for: str,
    hint: str,
    pauses: bool = True,
) -> bool:
    """Call ``try_once`` until it succeeds or ``timeout`` seconds have passed; tell whether it did.

    ``try_once(budget)`` may itself wait up to ``budget`` seconds on the server's side. With
    ``pauses``, the loop sleeps between tries, backing off up to a second. The first failed try
    is logged once; later ones only every :data:`LOG_EVERY` seconds, with the time waited.
    """
    started = time.monotonic()
    deadline = started + timeout
    pause_for = _PAUSE_FIRST
    logged_at: float | None = None
    budget = 0.0  # the first try does not wait, so that a wait is logged as soon as it begins
    while True:
        if try_once(budget):
            return True
        budget = max(0.0, min(deadline - time.monotonic(), _SERVER_SLICE))
        now = time.monotonic()
        if now >= deadline:
            return False
        if logged_at is None:
            logger.info("Waiting for %s (%s).", waiting_for, hint)
            logged_at = now
        elif now - logged_at >= LOG_EVERY:
            logger.info(
                "Still waiting for %s after %.0f of %s seconds (%s).",
                waiting_for,
                now - started,
                f"{timeout:g}",
                hint,
            )
            logged_at = now
        if pauses:
            pause(min(pause_for, deadline - now))
            pause_for = min(pause_for * 2, _PAUSE_MOST)
        else:
            pause(0)  # lets an async caller's event loop run between tries
