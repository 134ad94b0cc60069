"""Checking ``lock_timeout``; importable without SQLAlchemy, for the command line's option parser."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final

#: Seconds each statement of a revision may wait for a table lock, by default: the longest a
#: host's own queries on that table can queue behind it.
DEFAULT_DDL_LOCK_TIMEOUT: Final = 3.0
#: How many times, by default, a revision that timed out waiting for a table lock is tried again.
DEFAULT_DDL_RETRIES: Final = 5


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


def check_ddl_retries(retries: int) -> int:
    """Return ``retries`` when it is a whole number, zero or more; refuse anything else."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"ddl_retries must be a whole number, zero or more, not {retries!r}")
    return retries


def check_statement_timeout(statement_timeout: float | None) -> float | None:
    """Return ``statement_timeout`` as seconds (``None``: the session's own); refuse zero and less."""
    if statement_timeout is None:
        return None
    try:
        value = float(statement_timeout)
    except (TypeError, ValueError):
        raise ValueError(
            f"statement_timeout must be a number of seconds, not {statement_timeout!r}"
        ) from None
    if math.isnan(value) or value <= 0:
        raise ValueError(
            f"statement_timeout must be more than 0 seconds (math.inf for none), not {statement_timeout!r}"
        )
    return value


@dataclass(frozen=True)
class DDLLimits:
    """How long each statement of a revision may wait for a table lock (and run), and how often to retry."""

    lock_timeout: float = DEFAULT_DDL_LOCK_TIMEOUT
    retries: int = DEFAULT_DDL_RETRIES
    statement_timeout: float | None = None

    @classmethod
    def checked(cls, lock_timeout: float, retries: int, statement_timeout: float | None) -> DDLLimits:
        """The limits, each refused with a :exc:`ValueError` that says what it takes."""
        try:
            lock = check_lock_timeout(lock_timeout)
        except ValueError as exc:
            raise ValueError(str(exc).replace("lock_timeout", "ddl_lock_timeout", 1)) from None
        return cls(lock, check_ddl_retries(retries), check_statement_timeout(statement_timeout))

    def at_least(self, lock_timeout: float | None, statement_timeout: float | None) -> DDLLimits:
        """These limits, raised to what a revision declares it needs (``None``: it declares nothing).

        A call without a ``statement_timeout`` bounds no statement's run, and so stays without one.
        """
        lock = self.lock_timeout if lock_timeout is None else max(self.lock_timeout, lock_timeout)
        statement = self.statement_timeout
        if statement is not None and statement_timeout is not None:
            statement = max(statement, statement_timeout)
        return replace(self, lock_timeout=lock, statement_timeout=statement)


#: The limits a call has when it names none.
DEFAULT_LIMITS: Final = DDLLimits()
