"""PostgreSQL: transactional DDL, advisory locks, SQLSTATEs.

- The migration lock is a session advisory lock, polled with ``pg_try_advisory_lock`` on the
  connection granite-assets opens to migrate (a transaction-level one,
  ``pg_try_advisory_xact_lock``, on a caller's connection). Being session-level, it outlives the
  per-revision commits.
- Reads run in AUTOCOMMIT: there every transaction costs a BEGIN and a ROLLBACK of its own.
- A failed statement aborts its transaction, so reads in a caller's transaction look first.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Final

from sqlalchemy import Connection, Index, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from granite_assets.migrations._backends.base import Backend, DatabaseView, ExistingIndex, ServerLock, whose
from granite_assets.migrations._driver_errors import Signature
from granite_assets.migrations._errors import InsufficientPrivilegeError
from granite_assets.migrations._messages import advice, first_line, grants_command
from granite_assets.migrations._names import TABLE_PREFIX, VERSION_TABLE
from granite_assets.migrations._privileges import (
    BOOKKEEPING_TABLES,
    Layout,
    comment,
    privileges,
    statement,
    what_it_does,
)

#: The key of granite-assets' own advisory lock: "gran" in ASCII, below 2**31 so that
#: ``pg_locks.objid`` shows it as it is.
LOCK_KEY: Final = 0x6772616E
#: The first key of the two-key advisory locks named by hosts ("host"); a single-key lock such as
#: granite-assets' own never equals a two-key one, so the two cannot collide.
HOST_NAMESPACE: Final = 0x686F7374
_SNAPSHOT_LEVELS = frozenset({"REPEATABLE READ", "SERIALIZABLE"})
#: The settings that bound a statement's waits and run time.
_LIMITS = ("lock_timeout", "statement_timeout")
#: The largest ``lock_timeout`` and ``statement_timeout``, in milliseconds (the largest int4).
_LONGEST_MILLISECONDS: Final = 2**31 - 1


@dataclass(frozen=True)
class AdvisoryLock(ServerLock):
    """A PostgreSQL advisory lock: granite-assets' own (one key), or a host's named one (two keys).

    Attributes:
        transactional: Take the transaction-level lock, which ends with the transaction.
        name: ``None`` for granite-assets' own lock; a host's name for a lock of the host's own.
    """

    transactional: bool = False
    name: str | None = None

    @property
    def keys(self) -> str:
        """The argument list of the advisory-lock functions for this lock."""
        if self.name is None:
            return str(LOCK_KEY)
        return f"{HOST_NAMESPACE}, {_int4(zlib.crc32(self.name.encode()))}"

    @property
    def title(self) -> str:
        """What the lock is, for messages."""
        return f"{whose(self.name)} (PostgreSQL advisory lock {self.keys.replace(', ', ',')})"

    def holder_hint(self) -> str:
        """How to find the session that holds the lock."""
        if self.name is None:
            match = f"classid = 0 AND objid = {LOCK_KEY} AND objsubid = 1"
        else:
            classid, objid = (int(key) for key in self.keys.split(", "))
            match = f"classid = {classid} AND objid = {_uint4(objid)} AND objsubid = 2"
        return (
            "find its holder with SELECT pid, application_name, client_addr FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid IN (SELECT pid FROM pg_locks WHERE "
            f"locktype = 'advisory' AND {match} AND granted)"
        )

    def try_acquire(self, connection: Connection, wait: float) -> bool:
        """Try once to take the lock; PostgreSQL's try functions never wait."""
        # The keys are constants: plain driver SQL skips SQLAlchemy's statement compilation.
        fn = "pg_try_advisory_xact_lock" if self.transactional else "pg_try_advisory_lock"
        return bool(connection.exec_driver_sql(f"SELECT {fn}({self.keys})").scalar())

    def release(self, connection: Connection) -> None:
        """Release the lock; a transaction-level lock goes with the caller's transaction."""
        if not self.transactional:
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({self.keys})")


def _milliseconds(seconds: float) -> str:
    """``seconds`` as a PostgreSQL duration; 0 there means no limit, so it stands for infinity only.

    PostgreSQL refuses a duration past its largest, about 24.8 days: a longer one waits that long.
    """
    if math.isinf(seconds):
        return "0"
    return f"{min(_LONGEST_MILLISECONDS, max(1, round(seconds * 1000)))}ms"


def _set(connection: Connection, name: str, value: str, *, local: bool) -> None:
    connection.execute(
        text("SELECT set_config(:name, :value, :local)"), {"name": name, "value": value, "local": local}
    )


def _set_for_session(connection: Connection, values: Mapping[str, str]) -> None:
    """Set ``values`` for the session, and commit them where they were set in a transaction.

    A session setting made in a transaction that is then rolled back is undone. A caller's
    connection outside a transaction is left at its isolation level, not in AUTOCOMMIT, so the
    set would begin a transaction of ours, which the run then rolls back: the limits would never
    bound a revision, and the caller's own settings, put back, would not come back. Any
    transaction open here is granite-assets' own, holding nothing but its reads and settings.
    """
    for name, value in values.items():
        _set(connection, name, value, local=False)
    if connection.in_transaction():
        connection.commit()


#: The longest name PostgreSQL keeps whole (NAMEDATALEN - 1), in bytes.
_NAME_BYTES: Final = 63
# The named paramstyle's preparer leaves % alone: these statements are printed, never executed.
_PREPARER: Final = postgresql.dialect(paramstyle="named").identifier_preparer  # type: ignore[no-untyped-call]


def _quote(name: str) -> str:
    """``name`` as an identifier, in double quotes where PostgreSQL needs them (capitals, a hyphen)."""
    return str(_PREPARER.quote(name))


def _int4(value: int) -> int:
    """An unsigned 32-bit value as the signed int4 PostgreSQL's advisory functions take."""
    return value - 2**32 if value >= 2**31 else value


def _uint4(value: int) -> int:
    """A signed int4 as the unsigned oid ``pg_locks`` shows it as."""
    return value + 2**32 if value < 0 else value


@dataclass(frozen=True)
class PostgreSQLBackend(Backend):
    """PostgreSQL, through psycopg 2 or 3, pg8000 or asyncpg."""

    transactional_ddl: ClassVar[bool] = True
    reads_in_autocommit: ClassVar[bool] = True
    builds_indexes_concurrently: ClassVar[bool] = True
    failed_statement_aborts_transaction: ClassVar[bool] = True
    connect_timeout_arguments: ClassVar[dict[str, str]] = {
        "psycopg2": "connect_timeout",
        "psycopg": "connect_timeout",
        "psycopg_async": "connect_timeout",
        "asyncpg": "timeout",
        "pg8000": "timeout",
    }

    # SQLSTATEs, and what libpq says where psycopg2 has no SQLSTATE (before the session starts).
    no_such_table: ClassVar[Signature] = Signature(sqlstates=frozenset({"42P01"}))
    no_such_column: ClassVar[Signature] = Signature(sqlstates=frozenset({"42703"}))
    no_database_selected: ClassVar[Signature] = Signature()
    lock_wait_timed_out: ClassVar[Signature] = Signature(sqlstates=frozenset({"55P03"}))  # lock_not_available
    changed_since_snapshot: ClassVar[Signature] = Signature()
    no_database: ClassVar[Signature] = Signature(
        sqlstates=frozenset({"3D000"}), phrasings=(("database", "does not exist"),)
    )
    bad_login: ClassVar[Signature] = Signature(
        sqlstates=frozenset({"28P01", "28000"}),
        phrasings=(
            ("password authentication failed",),
            ("not permitted to log in",),
            ("role", "does not exist"),
        ),
    )
    no_access: ClassVar[Signature] = Signature(
        sqlstates=frozenset({"42501"}), phrasings=(("permission denied for database",),)
    )
    insufficient_privilege: ClassVar[Signature] = Signature(sqlstates=frozenset({"42501"}))
    migrator_privileges: ClassVar[str] = "CREATE on the schema, and the ownership of granite-assets' tables"

    @property
    def title(self) -> str:
        """The database's name in messages."""
        return "PostgreSQL"

    def migration_lock(
        self, connection: Connection, *, transactional: bool, name: str | None = None
    ) -> AdvisoryLock:
        """An advisory lock, which belongs to the connection's database already."""
        return AdvisoryLock(transactional, name)

    def session_address(self, connection: Connection) -> tuple[str | None, int | None, str | None]:
        """``inet_server_addr()`` (none over a Unix socket), its port, and ``current_database()``."""
        host, port, database = connection.exec_driver_sql(
            "SELECT host(inet_server_addr()), inet_server_port(), current_database()"
        ).one()
        return host, port, database

    def login_name(self, connection: Connection) -> str | None:
        """``current_user``: the role whose privileges count, after a ``SET ROLE`` too."""
        name = connection.exec_driver_sql("SELECT current_user").scalar()
        return None if name is None else str(name)

    def unusable_schema(self, connection: Connection, db: DatabaseView) -> InsufficientPrivilegeError | None:
        """The error for a login without USAGE on every schema of its ``search_path``.

        PostgreSQL leaves such schemas out of the search, so their tables look missing
        (``current_schema()`` is then NULL), and there is nowhere to create one either.
        """
        unusable, path, login = connection.exec_driver_sql(
            "SELECT current_schema() IS NULL, current_setting('search_path'), current_user"
        ).one()
        if not unusable:
            return None
        return InsufficientPrivilegeError(
            f"The login {login} may use no schema of its search_path ({path}) on {db.where}, so it can "
            "neither read granite-assets' tables there nor create them. Grant it USAGE on the schema that "
            f"holds them (`{grants_command(login)}` prints the statements), or give it a search_path "
            "that names a schema it may use.",
            login=str(login),
        )

    # -- Grants for a runtime login -------------------------------------------------------------

    default_privileges: ClassVar[bool] = True

    def grantee(self, role: str) -> str:
        """The role's name, quoted where PostgreSQL needs it; refused past PostgreSQL's 63 bytes."""
        if len(role.encode()) > _NAME_BYTES:
            raise ValueError(
                f"the role name {role!r} is longer than PostgreSQL's {_NAME_BYTES} bytes, and PostgreSQL "
                "would cut it to another name"
            )
        return _quote(role)

    def runtime_layout(self, connection: Connection, db: DatabaseView, owner: str | None) -> Layout:
        """granite-assets' tables and sequences in the schema the connection creates tables in.

        The migration user is ``owner`` if given, else the owner of the version table, else the
        URL's login (on a database granite-assets has not migrated yet).
        """
        refusal = self.unusable_schema(connection, db)
        if refusal is not None:
            raise refusal
        schema, login = connection.exec_driver_sql("SELECT current_schema(), current_user").one()
        rows = connection.execute(
            text(
                "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S') "
                "AND c.relname LIKE :prefix ORDER BY c.relname"
            ),
            {"prefix": TABLE_PREFIX.replace("_", "\\_") + "%"},
        ).all()
        owners = {str(name): str(who) for name, _kind, who in rows}
        return Layout(
            where=db.where,
            schema=str(schema),
            tables=tuple(str(name) for name, kind, _ in rows if kind != "S"),
            sequences=tuple(str(name) for name, kind, _ in rows if kind == "S"),
            owner=owner or owners.get(VERSION_TABLE) or str(login),
        )

    def runtime_grants(self, role: str, layout: Layout, *, read_only: bool) -> list[str]:
        """USAGE on the schema, default privileges for the migration user's next tables, then today's tables.

        granite-assets' own records are read-only to the runtime role: default privileges granted
        before they were created gave it more, which is taken back.
        """
        grantee, shown = self.grantee(role), layout.schema or "public"
        schema, rights, owner = _quote(shown), privileges(read_only=read_only), layout.owner
        place = (
            f"in {layout.where}, schema {shown}"
            if layout.where
            else f"in the schema {shown} (given a database URL, granite-assets reads the schema and the "
            "tables from it)"
        )
        runner = (
            f"Run these as a superuser, or as {owner}, the owner of the tables, if it may grant USAGE on "
            "the schema."
            if owner
            else "Run these as the migration user, who owns the tables (ALTER DEFAULT PRIVILEGES without "
            "FOR ROLE covers the tables of the role that runs it); or name the migration user as their "
            f"owner ({advice('owner=', '--owner')}), and run them as a superuser."
        )
        lines = comment(
            f"What the runtime role {role} needs on granite-assets' tables {place}: it "
            f"{what_it_does(read_only=read_only)}, and creates and alters nothing. {runner}"
        )
        lines += statement(f"GRANT USAGE ON SCHEMA {schema}", f"TO {grantee};")
        kinds = "table" if read_only else "table and sequence"
        lines += comment(
            f"The tables granite-assets creates from now on, as {owner or 'the migration user'}. PostgreSQL "
            f"cannot limit default privileges to the names that start with {TABLE_PREFIX}: these apply to "
            f"every {kinds} {owner or 'it'} creates in the schema {shown}."
        )
        for_role = f" FOR ROLE {_quote(owner)}" if owner else ""
        defaults = f"ALTER DEFAULT PRIVILEGES{for_role} IN SCHEMA {schema}"
        lines += statement(defaults, f"GRANT {rights} ON TABLES TO {grantee};")
        if not read_only:
            lines += statement(defaults, f"GRANT USAGE, SELECT ON SEQUENCES TO {grantee};")
        if layout.where and not layout.tables:
            lines += comment(
                f"granite-assets has no tables in the schema {shown} yet: the default privileges above cover "
                "those `granite-assets db upgrade` creates."
            )
            return lines
        now = (
            "The tables granite-assets has now"
            if layout.where
            else "The tables of this release, once `granite-assets db upgrade` has created them (until then "
            "the default privileges above cover them)"
        )
        lines += comment(f"{now}; its own records stay read-only to {role}.")
        for table in layout.tables:
            name = f"{schema}.{_quote(table)}"
            if table in BOOKKEEPING_TABLES:
                lines += statement(f"GRANT SELECT ON TABLE {name}", f"TO {grantee};")
                lines += statement(f"REVOKE INSERT, UPDATE, DELETE ON TABLE {name}", f"FROM {grantee};")
            else:
                lines += statement(f"GRANT {rights} ON TABLE {name}", f"TO {grantee};")
        for sequence in () if read_only else layout.sequences:
            name = f"{schema}.{_quote(sequence)}"
            lines += statement(f"GRANT USAGE, SELECT ON SEQUENCE {name}", f"TO {grantee};")
        return lines

    def sees_a_snapshot(self, connection: Connection) -> bool:
        """REPEATABLE READ and SERIALIZABLE transactions see the database as it was when they began."""
        return connection.get_isolation_level() in _SNAPSHOT_LEVELS

    @contextmanager
    def ddl_limits(
        self,
        connection: Connection,
        lock_timeout: float,
        statement_timeout: float | None,
        *,
        in_transaction: bool,
    ) -> Iterator[None]:
        """Set ``lock_timeout`` (and ``statement_timeout``) for the session, or the caller's transaction."""
        wanted = {"lock_timeout": lock_timeout}
        if statement_timeout is not None:
            wanted["statement_timeout"] = statement_timeout
        saved = {name: str(connection.exec_driver_sql(f"SHOW {name}").scalar()) for name in wanted}
        if in_transaction:
            for name, seconds in wanted.items():
                _set(connection, name, _milliseconds(seconds), local=True)
        else:
            _set_for_session(connection, {name: _milliseconds(seconds) for name, seconds in wanted.items()})
        try:
            yield
        finally:
            if not connection.invalidated:
                if not in_transaction:
                    _set_for_session(connection, saved)
                else:
                    try:
                        for name, value in saved.items():
                            _set(connection, name, value, local=True)
                    except DBAPIError:  # an aborted transaction of the caller's: the settings end with it
                        pass

    def lock_wait_bound(self, seconds: float) -> float:
        """``lock_timeout`` stops at about 24.8 days."""
        return seconds if math.isinf(seconds) else min(seconds, _LONGEST_MILLISECONDS / 1000)

    def limits_in_force(self, connection: Connection) -> dict[str, str]:
        """``lock_timeout`` and ``statement_timeout`` as they stand, ``SET LOCAL`` by a revision included."""
        return {name: str(connection.exec_driver_sql(f"SHOW {name}").scalar()) for name in _LIMITS}

    @contextmanager
    def limits_for_session(self, connection: Connection, limits: Mapping[str, str]) -> Iterator[None]:
        """Set ``limits`` for the session for the block, then put the session's own back.

        A revision's own limits are ``SET LOCAL`` in its transaction, which ends where a statement
        must run outside one (``CREATE INDEX CONCURRENTLY``): they are carried over this way.
        """
        saved = self.limits_in_force(connection)
        for name, value in limits.items():
            _set(connection, name, value, local=False)
        try:
            yield
        finally:
            if not connection.invalidated:
                for name, value in saved.items():
                    _set(connection, name, value, local=False)

    def index_named(self, connection: Connection, index: Index) -> ExistingIndex | None:
        """The relation with ``index``'s name in its table's schema, where PostgreSQL puts the index.

        The name is the one the DDL uses, which SQLAlchemy shortens past 63 characters (a naming
        convention's); the table is found as ``CREATE INDEX`` finds it, through the search path
        unless it names a schema. An index that an interrupted ``CREATE INDEX CONCURRENTLY`` left
        has ``pg_index.indisvalid`` false.
        """
        if index.table is None:  # an index of no table has nothing beside it
            return None
        quote = connection.dialect.identifier_preparer
        name = quote.format_index(index)
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        row = connection.execute(
            text(
                "SELECT r.oid::regclass::text, COALESCE(i.indrelid = t.oid, false), "
                "COALESCE(i.indisvalid, false) "
                "FROM pg_class t JOIN pg_class r ON r.relnamespace = t.relnamespace AND r.relname = :name "
                "LEFT JOIN pg_index i ON i.indexrelid = r.oid "
                "WHERE t.oid = to_regclass(:table)"
            ),
            {"name": name, "table": quote.format_table(index.table)},
        ).one_or_none()
        if row is None:
            return None
        written, on_table, valid = row
        return ExistingIndex(str(written), bool(on_table), bool(valid))

    def open_transactions(self, connection: Connection) -> tuple[str, ...]:
        """The other sessions of this database with a transaction open, oldest first (five at most).

        ``CREATE INDEX CONCURRENTLY`` waits for the transactions writing to its table, and then
        for every transaction of the database older than its own snapshot, whatever it reads.
        """
        rows = connection.execute(
            text(
                "SELECT pid, state, EXTRACT(EPOCH FROM now() - xact_start), query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                "AND backend_type = 'client backend' ORDER BY xact_start LIMIT 5"
            )
        )
        return tuple(
            f"pid {pid} (a transaction open for {float(age or 0):.0f} s, {state or 'unknown state'}; "
            f"its query: {first_line(query)})"
            for pid, state, age, query in rows
        )

    def blockers(self, connection: Connection) -> tuple[str, ...]:
        """The sessions of this database holding locks on granite-assets' tables, oldest first."""
        rows = connection.execute(
            text(
                "SELECT a.pid, a.state, EXTRACT(EPOCH FROM now() - COALESCE(a.xact_start, a.query_start)), "
                "a.query, string_agg(DISTINCT c.relname, ', ') "
                "FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.granted AND l.pid <> pg_backend_pid() AND c.relname LIKE :prefix "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "GROUP BY a.pid, a.state, a.xact_start, a.query_start, a.query "
                "ORDER BY COALESCE(a.xact_start, a.query_start)"
            ),
            {"prefix": TABLE_PREFIX.replace("_", "\\_") + "%"},
        )
        return tuple(
            f"pid {pid} ({state or 'unknown state'} for {float(age or 0):.0f} s, holding locks on {tables}; "
            f"its query: {first_line(query)})"
            for pid, state, age, query, tables in rows
        )

    def end_session_hint(self, blockers: tuple[str, ...]) -> str:
        """``pg_terminate_backend``, for each blocker."""
        pids = [b.split()[1] for b in blockers if b.startswith("pid ")]
        if not pids:
            return "end those sessions or wait for them to finish"
        return "wait for those sessions to finish, or end them: " + "; ".join(
            f"SELECT pg_terminate_backend({pid})" for pid in pids
        )

    @contextmanager
    def idling_allowed(self, connection: Connection) -> Iterator[None]:
        """Exempt the session from ``idle_session_timeout`` (PostgreSQL 14 and later) for the block."""
        if (connection.dialect.server_version_info or (0,)) < (14,):  # the setting came with 14
            yield
            return
        saved = connection.exec_driver_sql("SHOW idle_session_timeout").scalar()
        connection.exec_driver_sql("SET idle_session_timeout = 0")
        try:
            yield
        finally:
            if not connection.invalidated:
                connection.execute(
                    text("SELECT set_config('idle_session_timeout', :value, false)"), {"value": saved}
                )
