"""Checking ``lock_timeout``; importable without SQLAlchemy, for the command line's option parser."""

from __future__ import annotations

import math


def check_lock_timeout(lock_timeout: float) -> float:
    """Return ``lock_timeout`` as a float; refuse NaN and negative values (infinity: no limit)."""
    try:
        value = float(lock_timeout)
    except (TypeError, ValueError):
        raise ValueError(f"lock_timeout must be a number of seconds, not {lock_timeout!r}") from None
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"lock_timeout must be zero or more seconds (math.inf waits without limit), not {lock_timeout!r}"
        )
    return value
