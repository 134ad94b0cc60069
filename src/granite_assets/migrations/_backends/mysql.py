"""MariaDB and MySQL: DDL that commits itself, ``GET_LOCK``, the server's error numbers.

- The migration lock is ``GET_LOCK`` with its result checked, then ``RELEASE_LOCK``. Its names
  are server-wide, so each names the database it protects.
- Every DDL statement commits on its own, a caller's transaction with it: a caller's transaction
  with revisions pending is refused, and a failed revision may leave part of itself behind.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Final

from sqlalchemy import Connection, text
from sqlalchemy.dialects import mysql

from granite_assets.migrations._backends.base import Backend, DatabaseView, ServerLock, migrating_under, whose
from granite_assets.migrations._driver_errors import Signature
from granite_assets.migrations._errors import UnsupportedConnectionError
from granite_assets.migrations._messages import first_line
from granite_assets.migrations._names import TABLE_PREFIX, logger
from granite_assets.migrations._privileges import (
    BOOKKEEPING_TABLES,
    Layout,
    comment,
    privileges,
    statement,
    what_it_does,
)
from granite_assets.migrations._urls import display_url

_LOCK_PREFIX: Final = "granite_assets_migrations."
_HOST_LOCK_PREFIX: Final = "granite_assets_host."
_LOCK_NAME_MAX: Final = 64
#: MariaDB's and MySQL's largest lock_wait_timeout (a year), their "no limit".
_LONGEST_LOCK_WAIT: Final = 31_536_000
#: MySQL's largest ``wait_timeout`` (a year, in seconds); it has no "never".
_LONGEST_WAIT_TIMEOUT: Final = 31_536_000


# The named paramstyle's preparer leaves % alone: these statements are printed, never executed.
_PREPARER: Final = mysql.dialect(paramstyle="named").identifier_preparer


def _quote(name: str) -> str:
    """``name`` in backticks, which MariaDB and MySQL take for user and host names as for tables."""
    return str(_PREPARER.quote_identifier(name))


def _unquoted(part: str) -> str:
    """A user or host name as typed in quotes (``'app'``, ```%```), without them."""
    if len(part) > 1 and part[0] == part[-1] and part[0] in "'\"`":
        return part[1:-1]
    return part


def _whole_seconds(seconds: float) -> int:
    """``seconds`` as ``lock_wait_timeout`` takes them: whole, from 1 to a year."""
    return _LONGEST_LOCK_WAIT if seconds >= _LONGEST_LOCK_WAIT else max(1, math.ceil(seconds))


@dataclass(frozen=True)
class NamedLock(ServerLock):
    """A ``GET_LOCK`` lock: granite-assets' own, or a host's named one, for one database.

    Attributes:
        database: The name of the database the lock protects.
        name: ``None`` for granite-assets' own lock; a host's name for a lock of the host's own.
    """

    database: str
    name: str | None = None

    pauses: ClassVar[bool] = False  # GET_LOCK waits on the server

    @property
    def server_name(self) -> str:
        """``GET_LOCK`` names are server-wide, so the database name is part of it (64 chars max)."""
        if self.name is None:
            prefix, full = _LOCK_PREFIX, _LOCK_PREFIX + self.database
        else:
            prefix = _HOST_LOCK_PREFIX
            full = f"{prefix}{self.name}.{self.database}"
        if len(full) > _LOCK_NAME_MAX:
            full = prefix + hashlib.sha256(full.encode()).hexdigest()[:32]
        return full

    @property
    def title(self) -> str:
        """What the lock is, for messages."""
        return f"{whose(self.name)} (MySQL named lock {self.server_name!r})"

    def holder_hint(self) -> str:
        """How to find the session that holds the lock."""
        return f"find its holder with SELECT IS_USED_LOCK('{self.server_name}') and SHOW PROCESSLIST"

    def try_acquire(self, connection: Connection, wait: float) -> bool:
        """Try to take the lock, waiting on the server; 1 means held, 0 timed out, NULL an error."""
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": self.server_name, "wait": math.ceil(wait)}
        )
        return got.scalar() == 1

    def release(self, connection: Connection) -> None:
        """Release the lock."""
        connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.server_name})


@dataclass(frozen=True)
class MySQLBackend(Backend):
    """MariaDB and MySQL, through pymysql, mysqlclient, aiomysql, asyncmy or their own connectors."""

    ddl_commits_itself: ClassVar[bool] = True
    connect_timeout_arguments: ClassVar[dict[str, str]] = {
        "pymysql": "connect_timeout",
        "mysqldb": "connect_timeout",
        "aiomysql": "connect_timeout",
        "asyncmy": "connect_timeout",
        "mariadbconnector": "connect_timeout",
        "mysqlconnector": "connection_timeout",
    }

    # The server's error numbers, which its drivers give; the SQLSTATEs for drivers that do not.
    no_such_table: ClassVar[Signature] = Signature(frozenset({"42S02"}), frozenset({1146}))
    no_such_column: ClassVar[Signature] = Signature(frozenset({"42S22"}), frozenset({1054}))
    no_database_selected: ClassVar[Signature] = Signature(codes=frozenset({1046}))
    aborted_transaction: ClassVar[Signature] = Signature()
    lock_wait_timed_out: ClassVar[Signature] = Signature(codes=frozenset({1205}))  # ER_LOCK_WAIT_TIMEOUT
    changed_since_snapshot: ClassVar[Signature] = Signature(codes=frozenset({1412}))  # ER_TABLE_DEF_CHANGED
    no_database: ClassVar[Signature] = Signature(codes=frozenset({1049}))
    bad_login: ClassVar[Signature] = Signature(codes=frozenset({1045}))
    no_access: ClassVar[Signature] = Signature(codes=frozenset({1044}))
    # ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR,
    # ER_SPECIFIC_ACCESS_DENIED_ERROR
    insufficient_privilege: ClassVar[Signature] = Signature(codes=frozenset({1044, 1142, 1143, 1227}))
    refuses_unseen_tables: ClassVar[bool] = True
    migrator_privileges: ClassVar[str] = "CREATE, ALTER, DROP, INDEX and REFERENCES on the database"

    @property
    def title(self) -> str:
        """The database's name in messages."""
        return "MySQL and MariaDB"

    def migration_lock(
        self, connection: Connection, *, transactional: bool, name: str | None = None
    ) -> NamedLock:
        """A named lock for the database the session is in.

        The URL may not name it (connect_args, a creator), so the session is asked: every
        migrator of one database then shares one lock.
        """
        database = connection.exec_driver_sql("SELECT DATABASE()").scalar()
        if database is None:  # a lock for no database would be server-wide
            raise self.no_database_named(display_url(connection.engine.url))
        return NamedLock(str(database), name)

    @contextmanager
    def own_migration(self, connection: Connection, db: DatabaseView, timeout: float) -> Iterator[None]:
        """Hold the lock as every server does, saying so when the session is not in the URL's database."""
        lock = self.migration_lock(connection, transactional=False)
        if lock.database != db.url.database:
            logger.warning(  # a USE left on a pooled connection, say: the tables go where the session is
                "The connection to %s is in the database %s, not the URL's: granite-assets migrates %s.",
                db.where,
                lock.database,
                lock.database,
            )
        with migrating_under(lock, connection, db, timeout):
            yield

    def login_name(self, connection: Connection) -> str | None:
        """``CURRENT_USER()``, the account whose privileges count (``app@%``), not the one typed in."""
        name = connection.exec_driver_sql("SELECT CURRENT_USER()").scalar()
        return None if name is None else str(name)

    # -- Grants for a runtime login -------------------------------------------------------------

    def grantee(self, role: str) -> str:
        """The account as a GRANT names it: ```app``` (any host, or a role), or ```app`@`10.0.%``."""
        user, at, host = role.rpartition("@") if "@" in role else (role, "", "")
        user, host = _unquoted(user), _unquoted(host)
        if not user:
            raise ValueError(f"{role!r} names no user before its @: name it as NAME or NAME@HOST")
        return _quote(user) + (f"@{_quote(host)}" if at else "")

    def runtime_layout(self, connection: Connection, db: DatabaseView, owner: str | None) -> Layout:
        """granite-assets' tables in the session's database, as far as the URL's login may see them."""
        database = connection.exec_driver_sql("SELECT DATABASE()").scalar()
        if database is None:
            raise self.no_database_named(db.where)
        tables = connection.execute(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name LIKE :prefix ORDER BY table_name"
            ),
            {"prefix": TABLE_PREFIX.replace("_", "\\_") + "%"},
        ).scalars()
        return Layout(where=db.where, schema=str(database), tables=tuple(str(t) for t in tables))

    def runtime_grants(self, role: str, layout: Layout, *, read_only: bool) -> list[str]:
        """A GRANT per table: MariaDB and MySQL have no default privileges, nor grants on missing tables."""
        grantee, rights, database = self.grantee(role), privileges(read_only=read_only), layout.schema
        place = (
            f"in {layout.where}"
            if layout.where
            else "in the database you run them in (USE it first; given a database URL, granite-assets reads "
            "the tables from it)"
        )
        lines = comment(
            f"What the runtime user {role} needs on granite-assets' tables {place}: it "
            f"{what_it_does(read_only=read_only)}, and creates and alters nothing. Run these as an "
            "administrator, or as a user with the GRANT OPTION on these tables."
        )
        whole = f"{_quote(database)}.*" if database else "<database>.*"
        lines += comment(
            f"{self.title} have no default privileges: run `granite-assets db grants` again after every "
            f"upgrade that adds a table. Or grant on the whole database instead (GRANT {rights} ON {whole} "
            f"TO {grantee}), which covers your own tables too and lets {role} write granite-assets' records."
        )
        if layout.where and not layout.tables:
            lines += comment(
                f"granite-assets has no tables in {database} yet, or none that the login of the URL may see: "
                "run `granite-assets db upgrade` as the migration user first, then this command again."
            )
            return lines
        if not layout.where:
            lines += comment(
                "The tables of this release, once `granite-assets db upgrade` has created them: "
                f"{self.title} grant nothing on a table that does not exist."
            )
        for table in layout.tables:
            name = f"{_quote(database)}.{_quote(table)}" if database else _quote(table)
            granted = "SELECT" if table in BOOKKEEPING_TABLES else rights
            lines += statement(f"GRANT {granted} ON {name}", f"TO {grantee};")
        return lines

    def session_address(self, connection: Connection) -> tuple[str | None, int | None, str | None]:
        """The server's ``@@hostname`` and ``@@port``, and ``DATABASE()``."""
        host, port, database = connection.exec_driver_sql("SELECT @@hostname, @@port, DATABASE()").one()
        return host, port, database

    def refuse_callers_transaction(self, connection: Connection, db: DatabaseView) -> None:
        """Refuse every caller's transaction: DDL would commit it, and end the lock before its commit."""
        raise UnsupportedConnectionError(
            f"granite-assets has revisions to apply to {db.where}, but not inside your transaction: "
            "MariaDB and MySQL commit every DDL statement on their own, taking your transaction's "
            "work with them, and the migration lock would end before your commit. Nothing was "
            "changed. Call it before your transaction begins, or pass the Engine instead "
            "(upgrade_to_head(connection.engine)): granite-assets then commits each revision."
        )

    @contextmanager
    def ddl_limits(
        self,
        connection: Connection,
        lock_timeout: float,
        statement_timeout: float | None,
        *,
        in_transaction: bool,
    ) -> Iterator[None]:
        """Set ``lock_wait_timeout`` (whole seconds, at least 1) and, on MariaDB, ``max_statement_time``."""
        wanted = {"lock_wait_timeout": str(_whole_seconds(lock_timeout))}
        if statement_timeout is not None and getattr(connection.dialect, "is_mariadb", False):
            wanted["max_statement_time"] = (
                "0" if math.isinf(statement_timeout) else f"{statement_timeout:.6f}"
            )
        saved = {name: connection.exec_driver_sql(f"SELECT @@session.{name}").scalar() for name in wanted}
        for name, value in wanted.items():
            connection.exec_driver_sql(f"SET SESSION {name} = {value}")
        try:
            yield
        finally:
            if not connection.invalidated:
                for name, old in saved.items():
                    connection.execute(text(f"SET SESSION {name} = :value"), {"value": old})

    def lock_wait_bound(self, seconds: float) -> float:
        """``lock_wait_timeout`` counts whole seconds."""
        return float(_whole_seconds(seconds))

    def blockers(self, connection: Connection) -> tuple[str, ...]:
        """The other sessions in this database with a transaction open or a statement running.

        MariaDB does not say which session holds a table's metadata lock without a plugin; a
        session with a transaction open that read the table holds it until the transaction ends.
        Sessions that are themselves waiting for a metadata lock are the queue, not its cause.
        """
        rows = connection.execute(
            text(
                "SELECT p.ID, p.COMMAND, p.TIME, p.INFO, "
                "TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) "
                "FROM information_schema.PROCESSLIST p "
                "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
                "WHERE p.ID <> CONNECTION_ID() AND p.DB = DATABASE() "
                "AND (t.trx_id IS NOT NULL OR p.INFO IS NOT NULL) "
                "AND COALESCE(p.STATE, '') NOT LIKE :waiting "
                "ORDER BY t.trx_started"
            ),
            {"waiting": "Waiting for%metadata lock"},
        )
        described = []
        for session, command, seconds_in_state, query, transaction_age in rows:
            what = (
                f"transaction open for {transaction_age} s"
                if transaction_age is not None
                else f"{command} for {seconds_in_state} s"
            )
            described.append(f"id {session} ({what}; its query: {first_line(query) or 'none running'})")
        return tuple(described)

    def end_session_hint(self, blockers: tuple[str, ...]) -> str:
        """``KILL``, for each blocker."""
        ids = [b.split()[1] for b in blockers if b.startswith("id ")]
        if not ids:
            return "end those sessions or wait for them to finish"
        return "wait for those sessions to finish, or end them: " + "; ".join(f"KILL {i}" for i in ids)

    @contextmanager
    def idling_allowed(self, connection: Connection) -> Iterator[None]:
        """Raise the session's ``wait_timeout`` to its longest for the block."""
        saved = connection.exec_driver_sql("SELECT @@session.wait_timeout").scalar()
        connection.exec_driver_sql(f"SET SESSION wait_timeout = {_LONGEST_WAIT_TIMEOUT}")
        try:
            yield
        finally:
            if not connection.invalidated:
                connection.execute(text("SET SESSION wait_timeout = :value"), {"value": saved})
