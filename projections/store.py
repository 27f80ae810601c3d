"""Where the views live: tables prefixed ``projection_`` in the ledger's own database.

* a SQLite ledger file keeps its views in the same file (WAL mode lets queries run
  while the ledger writes);
* a PostgreSQL ledger keeps them in the same database, schema ``public``;
* ``memory:`` keeps them in an in-memory SQLite database, so the in-memory backend
  used by tests runs exactly the same SQL as the SQLite file backend.

Projections write SQL with ``?`` placeholders and a small common dialect (``BIGINT``,
``TEXT``, ``ON CONFLICT``); the PostgreSQL store rewrites the placeholders. A store
has one connection for writing (the runner) and one for reading (queries), each
serialised by its own lock, so it may be shared between threads (``serve``).
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal

from ledger.storage import DatabaseKind, database_kind, make_sqlite_files_private

Dialect = Literal["sqlite", "postgres"]

SQLITE_BUSY_TIMEOUT_SECONDS: Final = 30
SQLITE_CACHE_KILOBYTES: Final = 65_536
SQLITE_CHECKPOINT_PAGES: Final = 16_384
POSTGRES_LOCK_TIMEOUT_SECONDS: Final = 30
POSTGRES_CONNECT_TIMEOUT_SECONDS: Final = 10
SCHEMA_LOCK_KEY: Final = 0x5EC2E71ED6E2  # advisory lock taken while creating or dropping views


class ExpectationFailed(RuntimeError):
    """What a transaction assumed about the rows no longer holds (another runner
    moved a projection): the transaction is rolled back."""


class ViewCursor:
    """A cursor over either driver, taking ``?`` placeholders everywhere."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def _statement(self, statement: str) -> str:
        if self._dialect == "postgres":
            assert "%" not in statement, "pass LIKE patterns as parameters"
            return statement.replace("?", "%s")
        return statement

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> ViewCursor:
        self._cursor.execute(self._statement(statement), tuple(parameters))
        return self

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._statement(statement), rows)

    def expect(
        self, statement: str, parameters: Sequence[Any], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Run a query and raise :class:`ExpectationFailed` unless it returns ``rows``."""
        found = self.execute(statement, parameters).fetchall()
        if found != [tuple(row) for row in rows]:
            msg = f"expected {list(rows)}, found {found}"
            raise ExpectationFailed(msg)

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cursor.fetchall()]


class ViewStore(ABC):
    """Transactions over the view tables."""

    dialect: Dialect
    # A pipelined store sends writes on without waiting for them (see
    # projections.writer): failures surface later, at the latest in ``settle``.
    pipelined: bool = False

    @abstractmethod
    @contextmanager
    def write(self) -> Iterator[ViewCursor]:
        """One write transaction, holding the store's write lock from its start
        (SQLite ``BEGIN IMMEDIATE``), committed on success, rolled back on error."""

    @abstractmethod
    @contextmanager
    def read(self) -> Iterator[ViewCursor]:
        """One read-only transaction: a consistent snapshot for a query."""

    @abstractmethod
    def lock_schema(self, cursor: ViewCursor) -> None:
        """Serialise table creation and dropping between processes."""

    @abstractmethod
    def lock_tracking(self, cursor: ViewCursor) -> None:
        """Serialise runners: called first in every write transaction that moves a position."""

    @abstractmethod
    def relation_kind(self, cursor: ViewCursor, name: str) -> str | None:
        """``"table"``, ``"view"``, or None when nothing has that name."""

    def drop(self, cursor: ViewCursor, name: str) -> None:
        """Drop a table or view by name, whichever it is (names move between the two
        across projection versions)."""
        kind = self.relation_kind(cursor, name)
        if kind is not None:
            cursor.execute(f"DROP {kind.upper()} {name}")

    def settle(self) -> None:  # noqa: B027 (a hook: only pipelined stores wait)
        """Wait until every write sent has been applied; raise the first failure."""

    @abstractmethod
    def close(self) -> None: ...

    def table_options(self) -> str:
        """Suffix for tables whose primary key is their only access path."""
        return ""

    def integer_key_type(self) -> str:
        """The type of an integer primary key that rows are appended in order of."""
        return "BIGINT"

    def blob_type(self) -> str:
        return "BYTEA"


class SQLiteViewStore(ViewStore):
    """Views in a SQLite file (the ledger's own), or in memory for ``memory:``."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.is_memory = path == ":memory:"
        self._writer = self._connect()
        self._writer_lock = threading.RLock()
        if self.is_memory:
            self._reader = self._writer
            self._reader_lock = self._writer_lock
        else:
            self._reader = self._connect()
            self._reader_lock = threading.RLock()

    def _connect(self) -> sqlite3.Connection:
        if not self.is_memory:
            make_sqlite_files_private(self.path)
        connection = sqlite3.connect(
            self.path,
            timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            if not self.is_memory:
                connection.execute("PRAGMA journal_mode=WAL")
                # Views are rebuildable and their position commits with their rows, so
                # a commit lost in a power cut only makes the runner redo that batch.
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KILOBYTES}")
                # Views hold no secret material (the ledger's own connections keep
                # secure_delete on for its data keys): no need to zero freed pages.
                connection.execute("PRAGMA secure_delete=OFF")
                # Checkpoint the write-ahead log less often than every 4 MB: a page
                # rewritten several times is copied into the database only once.
                connection.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    @contextmanager
    def write(self) -> Iterator[ViewCursor]:
        with self._writer_lock:
            cursor = self._writer.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield ViewCursor(cursor, self.dialect)
            except BaseException:
                self._writer.rollback()
                raise
            else:
                cursor.execute("COMMIT")
            finally:
                cursor.close()

    @contextmanager
    def read(self) -> Iterator[ViewCursor]:
        with self._reader_lock:
            cursor = self._reader.cursor()
            cursor.execute("BEGIN")
            try:
                yield ViewCursor(cursor, self.dialect)
            finally:
                self._reader.rollback()
                cursor.close()

    def lock_schema(self, cursor: ViewCursor) -> None:
        """``BEGIN IMMEDIATE`` already holds SQLite's single write lock."""

    def lock_tracking(self, cursor: ViewCursor) -> None:
        """``BEGIN IMMEDIATE`` already holds SQLite's single write lock."""

    def table_options(self) -> str:
        return " WITHOUT ROWID"

    def relation_kind(self, cursor: ViewCursor, name: str) -> str | None:
        row = cursor.execute(
            "SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')",
            (name,),
        ).fetchone()
        return None if row is None else str(row[0])

    def integer_key_type(self) -> str:
        return "INTEGER"  # exactly this spelling makes it SQLite's rowid

    def blob_type(self) -> str:
        return "BLOB"

    def close(self) -> None:
        with self._writer_lock, self._reader_lock:
            self._writer.close()
            if not self.is_memory:
                self._reader.close()


class PostgresViewStore(ViewStore):
    """Views in the ledger's PostgreSQL database, schema ``public``.

    A broken connection is replaced at the next transaction; the runner retries.
    """

    dialect: Dialect = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self._writer_lock = threading.RLock()
        self._reader_lock = threading.RLock()
        self._writer: Any = None
        self._reader: Any = None

    def _connect(self) -> Any:
        import psycopg

        connection = psycopg.connect(
            self.url, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS
        )
        connection.execute(f"SET lock_timeout = '{POSTGRES_LOCK_TIMEOUT_SECONDS}s'")
        return connection

    def _usable(self, connection: Any) -> Any:
        if connection is None or connection.closed or connection.broken:
            if connection is not None:
                connection.close()
            return self._connect()
        return connection

    @contextmanager
    def write(self) -> Iterator[ViewCursor]:
        with self._writer_lock:
            self._writer = self._usable(self._writer)
            with self._writer.transaction(), self._writer.cursor() as cursor:
                yield ViewCursor(cursor, self.dialect)

    @contextmanager
    def read(self) -> Iterator[ViewCursor]:
        with self._reader_lock:
            self._reader = self._usable(self._reader)
            with self._reader.transaction(), self._reader.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield ViewCursor(cursor, self.dialect)

    def lock_schema(self, cursor: ViewCursor) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))

    def relation_kind(self, cursor: ViewCursor, name: str) -> str | None:
        row = cursor.execute(
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        return "view" if row[0] == "VIEW" else "table"

    def lock_tracking(self, cursor: ViewCursor) -> None:
        cursor.execute("LOCK TABLE projection_tracking IN SHARE ROW EXCLUSIVE MODE")

    def close(self) -> None:
        with self._writer_lock, self._reader_lock:
            for connection in (self._writer, self._reader):
                if connection is not None:
                    connection.close()
            self._writer = self._reader = None


def open_view_store(database: str) -> ViewStore:
    """The view store for a ``--db`` value (see the module docstring)."""
    kind = database_kind(database)
    if kind is DatabaseKind.MEMORY:
        return SQLiteViewStore(":memory:")
    if kind is DatabaseKind.POSTGRES:
        return PostgresViewStore(database)
    return SQLiteViewStore(database)
