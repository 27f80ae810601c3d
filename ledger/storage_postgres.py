"""PostgreSQL persistence with the data-key table (needs the ``postgres`` extra).

Kept apart from :mod:`ledger.storage` so that the package imports without psycopg;
eventsourcing resolves ``PERSISTENCE_MODULE=ledger.storage_postgres:LedgerPostgresFactory``
only when a ``postgresql://`` database is chosen.

The data-key table is ``<application name>_data_keys`` in the application's schema
(``ledger_data_keys`` for the ``Ledger`` application), next to ``ledger_events``.

Crypto-shredding caveat: ``DELETE`` (and ``UPDATE``) leave the old tuple in the heap
until VACUUM and later writes reuse its space, and in WAL archives and backups.
Until those are gone, recovering a destroyed data key still needs the
key-encryption key that wrapped it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.storage import (
    DATA_KEYS_ARGUMENT,
    DESTROYED_DATA_KEYS_ARGUMENT,
    DataKeyNotFoundError,
    DataKeyPair,
    DataKeyRecord,
    validated_data_keys,
    validated_defer_erasure,
    validated_destroyed_data_keys,
)

EVENTS_TABLE_SUFFIX: Final = "_events"
DATA_KEYS_TABLE_SUFFIX: Final = "_data_keys"
RETRY_ATTEMPTS_MAX: Final = 10
RETRY_WAIT_SECONDS: Final = 0.2
SCHEMA_LOCK_KEY: Final = 0x5EC2E71ED6E1  # advisory lock held while the tables are created

P = ParamSpec("P")
R = TypeVar("R")


def retried_on_connection_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Retries on dropped connections and lock timeouts, like the library's recorders."""
    retried: Callable[P, R] = retry(
        (InterfaceError, OperationalError),
        max_attempts=RETRY_ATTEMPTS_MAX,
        wait=RETRY_WAIT_SECONDS,
    )(function)
    return retried


class PostgresTablesCreatedInTurn(PostgresAggregateRecorder):
    """Creates its tables one process at a time. Concurrent ``CREATE TABLE IF NOT
    EXISTS`` of one table can fail ("tuple concurrently updated", or a duplicate key
    in ``pg_type``): seen when several processes opened a new database at once.
    Also the recorder of snapshots."""

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        curs.execute(SQL("SELECT pg_advisory_xact_lock(%s)"), (SCHEMA_LOCK_KEY,), prepare=False)
        super()._create_table(curs)


class PostgresDataKeyRecorder(PostgresTablesCreatedInTurn, PostgresApplicationRecorder):
    """PostgreSQL application recorder with the ``<app>_data_keys`` table.

    Data keys are inserted and destroyed in the ``_insert_events`` hook, i.e. inside
    the same transaction (and pipeline) as the events: a conflict on either table
    rolls back both.
    """

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        if self.datastore.enable_db_functions:
            msg = "POSTGRES_ENABLE_DB_FUNCTIONS bypasses the data-key table; turn it off"
            raise ProgrammingError(msg)
        self.data_keys_table_name = (
            events_table_name.removesuffix(EVENTS_TABLE_SUFFIX) + DATA_KEYS_TABLE_SUFFIX
        )
        self.check_identifier_length(self.data_keys_table_name)
        table = Identifier(self.datastore.schema, self.data_keys_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {table} ("
                "secret_id uuid NOT NULL, "
                "version_id text NOT NULL, "
                "key_id text NOT NULL, "
                "wrapped_key bytea NOT NULL, "
                "PRIMARY KEY (secret_id, version_id))"
            ).format(table=table)
        )
        self.insert_data_keys_statement = SQL(
            "INSERT INTO {table} (secret_id, version_id, key_id, wrapped_key) "
            "SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bytea[]) "
            "ON CONFLICT DO NOTHING RETURNING secret_id"
        ).format(table=table)
        self.select_data_key_statement = SQL(
            "SELECT key_id, wrapped_key FROM {table} WHERE secret_id = %s AND version_id = %s"
        ).format(table=table)
        self.delete_data_keys_statement = SQL(
            "DELETE FROM {table} WHERE (secret_id, version_id) IN "
            "(SELECT * FROM unnest(%s::uuid[], %s::text[]))"
        ).format(table=table)
        self.update_data_key_statement = SQL(
            "UPDATE {table} SET key_id = %s, wrapped_key = %s "
            "WHERE secret_id = %s AND version_id = %s RETURNING secret_id"
        ).format(table=table)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        kwargs[DATA_KEYS_ARGUMENT] = validated_data_keys(stored_events, kwargs)
        kwargs[DESTROYED_DATA_KEYS_ARGUMENT] = validated_destroyed_data_keys(stored_events, kwargs)
        validated_defer_erasure(kwargs)  # nothing to defer: a deleted row leaves no file
        notification_ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
        return notification_ids

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """Inserts and destroys data keys right after the events, in their transaction."""
        super()._insert_events(curs, stored_events, **kwargs)
        self._insert_data_keys(curs, kwargs[DATA_KEYS_ARGUMENT])
        self._destroy_data_keys(curs, kwargs[DESTROYED_DATA_KEYS_ARGUMENT])

    def _insert_data_keys(self, curs: Cursor[DictRow], records: tuple[DataKeyRecord, ...]) -> None:
        """The statement runs in psycopg's pipeline mode, where a server-side error
        would surface later as "pipeline aborted" (an ``OperationalError``, which the
        library retries). So a conflict must not raise on the server: rows that
        already exist are skipped, counted, and reported as ``IntegrityError`` here,
        which rolls back the whole transaction. The fetch syncs the pipeline.
        """
        if not records:
            return
        curs.execute(
            self.insert_data_keys_statement,
            (
                [record.secret_id for record in records],
                [record.version_id for record in records],
                [record.key_id for record in records],
                [record.wrapped_key for record in records],
            ),
        )
        inserted_count = len(curs.fetchall())
        if inserted_count != len(records):
            msg = (
                f"Data key already recorded: {len(records) - inserted_count} of "
                f"{len(records)} (secret_id, version_id) pairs exist"
            )
            raise IntegrityError(msg)

    def _destroy_data_keys(self, curs: Cursor[DictRow], pairs: tuple[DataKeyPair, ...]) -> None:
        """Crypto-shredding in the events' transaction (and pipeline). A missing row is
        not an error, and a DELETE of well-typed values raises nothing on the server,
        so nothing needs fetching here: the commit syncs the pipeline. The old tuple
        stays on disk until VACUUM (see the module docstring)."""
        if not pairs:
            return
        curs.execute(
            self.delete_data_keys_statement,
            (
                [secret_id for secret_id, _ in pairs],
                [version_id for _, version_id in pairs],
            ),
        )

    @retried_on_connection_errors
    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(self.select_data_key_statement, (secret_id, version_id), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        return DataKeyRecord(
            secret_id=secret_id,
            version_id=version_id,
            key_id=row["key_id"],
            wrapped_key=bytes(row["wrapped_key"]),
        )

    @retried_on_connection_errors
    def replace_data_key(self, record: DataKeyRecord) -> None:
        assert isinstance(record, DataKeyRecord)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self.update_data_key_statement,
                (record.key_id, record.wrapped_key, record.secret_id, record.version_id),
            )
            if curs.fetchone() is None:
                raise DataKeyNotFoundError(record.secret_id, record.version_id)


class LedgerPostgresFactory(PostgresFactory):
    """PostgreSQL persistence with the data-key table."""

    aggregate_recorder_class = PostgresTablesCreatedInTurn
    application_recorder_class = PostgresDataKeyRecorder
