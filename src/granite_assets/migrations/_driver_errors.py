"""Reading what a database driver's error means: by its code where the driver gives one, else by its words.

Each backend (:mod:`granite_assets.migrations._backends`) says how its server signals each
failure granite-assets tells apart; this module reads one driver error against that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signature:
    """How one failure shows in a driver's error.

    Attributes:
        sqlstates: The SQLSTATEs that mean it (PostgreSQL's drivers give them).
        codes: The server's own error numbers that mean it (MySQL's drivers give them first).
        phrasings: The ways the server words it when the driver gives no code, each a tuple of
            words that must all appear (psycopg2 has no SQLSTATE for a failure before the
            session starts; SQLite has no codes granite-assets can read).
    """

    sqlstates: frozenset[str] = frozenset()
    codes: frozenset[int] = frozenset()
    phrasings: tuple[tuple[str, ...], ...] = ()

    def matches(self, orig: BaseException | None, text: str | None = None) -> bool | None:
        """Tell whether a driver's error ``orig`` is this failure; ``None`` when nothing says either way.

        A code, where the driver gives one, decides. Otherwise the words decide when one of the
        phrasings is in ``text`` (by default the error's own words); ``None`` means the error
        could be anything.
        """
        code = mysql_error_number(orig)
        if code is not None:  # MySQL's own error number says more than its SQLSTATE
            return code in self.codes
        state = sqlstate(orig)
        if state is not None:
            return state in self.sqlstates
        said = str(orig) if text is None else text
        if any(all(word in said for word in words) for words in self.phrasings):
            return True
        return None


def mysql_error_number(orig: BaseException | None) -> int | None:
    """The MySQL error number of a driver's error (pymysql, mysqlclient), else ``None``."""
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def sqlstate(orig: BaseException | None) -> str | None:
    """The SQLSTATE of a PostgreSQL driver's error: psycopg 2 and 3 name it, pg8000's dict has it as C."""
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict):
        code = args[0].get("C")
    else:
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None
