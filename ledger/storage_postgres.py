"""PostgreSQL persistence with the data-key table (needs the ``postgres`` extra).

Kept apart from :mod:`ledger.storage` so that the package imports without psycopg;
eventsourcing resolves ``PERSISTENCE_MODULE=ledger.storage_postgres:LedgerPostgresFactory``
only when a ``postgresql://`` database is chosen.

The data-key table is ``<application name>_data_keys`` in the application's schema
(``ledger_data_keys`` for the ``Ledger`` application), next to ``ledger_events``; the
evidence tables are ``ledger_event_hashes``, ``ledger_checkpoints`` and
``ledger_merkle_nodes`` (see ``docs/evidence.md``, "Storage").

Crypto-shredding caveat: ``DELETE`` (and ``UPDATE``) leave the old tuple in the heap
until VACUUM and later writes reuse its space, and in WAL archives and backups.
Until those are gone, recovering a destroyed data key still needs the
key-encryption key that wrapped it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, ParamSpec, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
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
from psycopg.types.numeric import Int8

from ledger.merkle import HASH_SIZE_BYTES
from ledger.storage import (
    ADOPTION_PAGE_SIZE,
    DATA_KEYS_ARGUMENT,
    DESTROYED_DATA_KEYS_ARGUMENT,
    DataKeyNotFoundError,
    DataKeyPair,
    DataKeyRecord,
    EventHash,
    EvidenceLogError,
    MerkleNodeKey,
    StoredCheckpoint,
    adopted_event_hashes,
    chained_event_hashes,
    check_checkpoint,
    check_data_key_page,
    check_event_hash_page,
    check_notification_id,
    checked_merkle_nodes,
    event_hash_from_row,
    merkle_node_key_batches,
    unchained_log_refused,
    validated_data_key_batch,
    validated_data_keys,
    validated_defer_erasure,
    validated_destroyed_data_keys,
)

EVENTS_TABLE_SUFFIX: Final = "_events"
DATA_KEYS_TABLE_SUFFIX: Final = "_data_keys"
EVENT_HASHES_TABLE_SUFFIX: Final = "_event_hashes"
CHECKPOINTS_TABLE_SUFFIX: Final = "_checkpoints"
MERKLE_NODES_TABLE_SUFFIX: Final = "_merkle_nodes"
ISOLATION_LEVEL_REQUIRED: Final = "read committed"
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


PENDING_READS_ARGUMENT: Final = "pending_reads"


class PendingReads:
    """Statements of one events transaction whose results are read after the
    library's sync: the data-key INSERT and the chain's head."""

    def __init__(self) -> None:
        self.data_keys: Cursor[DictRow] | None = None
        self.data_key_count = 0
        self.head: Cursor[DictRow] | None = None

    def close(self) -> None:
        for cursor in (self.data_keys, self.head):
            if cursor is not None:
                cursor.close()
        self.data_keys = None
        self.data_key_count = 0
        self.head = None


class AbortEventsTransaction(BaseException):
    """Carries an error of the chain step out of the library's ``insert_events``.

    The library runs ``_insert_stored_events`` and ``_fetch_ids_after_insert_events``
    inside ``try: ... except Exception as e: exc = e`` *within* the transaction
    block, and re-raises only after the block has exited: an ``Exception`` raised
    there by Python code (not by the server) lets the transaction COMMIT, i.e. the
    events without their hash rows. A ``BaseException`` passes that ``except``, so
    the transaction block sees it and rolls back; ``insert_events`` then re-raises
    the original error.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class PostgresTablesCreatedInTurn(PostgresAggregateRecorder):
    """Creates its tables one process at a time. Concurrent ``CREATE TABLE IF NOT
    EXISTS`` of one table can fail ("tuple concurrently updated", or a duplicate key
    in ``pg_type``): seen when several processes opened a new database at once.
    Also the recorder of snapshots."""

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        curs.execute(SQL("SELECT pg_advisory_xact_lock(%s)"), (SCHEMA_LOCK_KEY,), prepare=False)
        super()._create_table(curs)


class PostgresDataKeyRecorder(PostgresTablesCreatedInTurn, PostgresApplicationRecorder):
    """PostgreSQL application recorder with the ``<app>_data_keys`` table and the
    evidence tables ``<app>_event_hashes``, ``<app>_checkpoints`` and
    ``<app>_merkle_nodes``.

    Data keys are inserted and destroyed (crypto-shredding) in the ``_insert_events``
    hook, i.e. inside the same transaction (and pipeline) as the events, before the
    library locks the events table: a conflict on either table rolls back both. The
    hash chain is extended in ``_fetch_ids_after_insert_events``, which the library
    calls in that transaction after ``LOCK TABLE <app>_events IN EXCLUSIVE MODE``
    and the events' INSERT, once the pipeline is synced.
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
        data_key_columns = SQL(
            "SELECT secret_id, version_id, key_id, wrapped_key FROM {table} "
        ).format(table=table)
        self.select_data_keys_statement = data_key_columns + SQL(
            "ORDER BY secret_id, version_id LIMIT %s"
        )
        self.select_data_keys_after_statement = data_key_columns + SQL(
            "WHERE (secret_id, version_id) > (%s, %s) ORDER BY secret_id, version_id LIMIT %s"
        )
        self.count_data_keys_statement = SQL("SELECT COUNT(*) AS count FROM {table}").format(
            table=table
        )
        self.update_data_keys_statement = SQL(
            "UPDATE {table} AS t SET key_id = n.key_id, wrapped_key = n.wrapped_key "
            "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bytea[]) "
            "AS n(secret_id, version_id, key_id, wrapped_key) "
            "WHERE t.secret_id = n.secret_id AND t.version_id = n.version_id "
            "RETURNING t.secret_id, t.version_id"
        ).format(table=table)
        self.select_last_versions_statement = SQL(
            "SELECT originator_id, MAX(originator_version) AS version FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(events_table_name))
        self.insert_event_columns_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(events_table_name),
            id_type=Identifier(self.datastore.originator_id_type),
        )
        self._prepare_evidence_statements(events_table_name)
        self._prepare_adoption_statements(events_table_name)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        kwargs[DATA_KEYS_ARGUMENT] = validated_data_keys(stored_events, kwargs)
        kwargs[DESTROYED_DATA_KEYS_ARGUMENT] = validated_destroyed_data_keys(stored_events, kwargs)
        validated_defer_erasure(kwargs)  # nothing to defer: a deleted row leaves no file
        pending = PendingReads()
        kwargs[PENDING_READS_ARGUMENT] = pending
        try:
            notification_ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
        except AbortEventsTransaction as abort:
            raise persistence_error(abort.error) from abort.error
        finally:
            pending.close()
        return notification_ids

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """Inserts and destroys data keys, first thing in the events' transaction. It
        runs outside the library's ``except Exception`` (see ``AbortEventsTransaction``),
        so an error raised here rolls the transaction back as it is."""
        super()._insert_events(curs, stored_events, **kwargs)
        pending: PendingReads = kwargs[PENDING_READS_ARGUMENT]
        pending.close()  # a retried attempt starts afresh
        assert stored_events or not kwargs[DATA_KEYS_ARGUMENT], "keys come with their events"
        self._insert_data_keys(curs, kwargs[DATA_KEYS_ARGUMENT], pending)
        self._destroy_data_keys(curs, kwargs[DESTROYED_DATA_KEYS_ARGUMENT])

    def _insert_data_keys(
        self, curs: Cursor[DictRow], records: tuple[DataKeyRecord, ...], pending: PendingReads
    ) -> None:
        """The statement runs in psycopg's pipeline mode, where a server-side error
        would surface later as "pipeline aborted" (an ``OperationalError``, which the
        library retries). So a conflict must not raise on the server: rows that
        already exist are skipped. Its result is read on a cursor of its own after
        the library's sync, with the events' (`_require_data_keys_inserted`): one
        round trip for both."""
        if not records:
            return
        pending.data_keys = curs.connection.cursor()
        pending.data_key_count = len(records)
        pending.data_keys.execute(
            self.insert_data_keys_statement,
            (
                [record.secret_id for record in records],
                [record.version_id for record in records],
                [record.key_id for record in records],
                [record.wrapped_key for record in records],
            ),
        )

    @staticmethod
    def _require_data_keys_inserted(pending: PendingReads) -> None:
        """Rows that already existed were skipped and are counted here: reported as
        ``IntegrityError``, which rolls back the whole transaction."""
        if pending.data_keys is None:
            return
        inserted_count = len(pending.data_keys.fetchall())
        if inserted_count != pending.data_key_count:
            msg = (
                f"Data key already recorded: {pending.data_key_count - inserted_count} of "
                f"{pending.data_key_count} (secret_id, version_id) pairs exist"
            )
            raise IntegrityError(msg)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """The library's lock and NOTIFY, then the events' INSERT with one binary array
        per column (the library sends an array of a composite type, which psycopg
        writes out as text in Python, a regular expression per field: most of a
        put's CPU on PostgreSQL), then the chain's head, read under the lock and
        answered by the same sync as the INSERT."""
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_event_columns_statement,
            (
                [event.originator_id for event in stored_events],
                [Int8(event.originator_version) for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
            prepare=True,
        )
        pending: PendingReads = kwargs[PENDING_READS_ARGUMENT]
        pending.head = curs.connection.cursor()
        pending.head.execute(self.select_event_hash_head_statement, prepare=True)

    def _destroy_data_keys(self, curs: Cursor[DictRow], pairs: tuple[DataKeyPair, ...]) -> None:
        """Crypto-shredding in the events' transaction (and pipeline). A missing row is
        not an error, and a DELETE of well-typed values raises nothing on the server,
        so nothing needs fetching here: the library's sync after the events' INSERT
        covers it. The old tuple stays on disk until VACUUM (see the module
        docstring)."""
        if not pairs:
            return
        curs.execute(
            self.delete_data_keys_statement,
            (
                [secret_id for secret_id, _ in pairs],
                [version_id for _, version_id in pairs],
            ),
        )

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's hook after the events' INSERT (table locked, pipeline
        synced); it fetches the notification ids, then the chain is extended."""
        notification_ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        assert notification_ids is not None and len(notification_ids) == len(stored_events)
        pending: PendingReads = kwargs[PENDING_READS_ARGUMENT]
        try:
            self._require_data_keys_inserted(pending)
            assert pending.head is not None, "read with the events' INSERT"
            head_row = pending.head.fetchone()
            head = None if head_row is None else event_hash_from_row(head_row)
            self._insert_event_hashes(curs, stored_events, notification_ids, head)
        except Exception as error:
            raise AbortEventsTransaction(error) from error
        return notification_ids

    @retried_on_connection_errors
    def select_last_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_last_versions_statement, (list(originator_ids),), prepare=True)
            return {row["originator_id"]: int(row["version"]) for row in curs.fetchall()}

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
    def select_data_keys(self, after: tuple[UUID, str] | None, limit: int) -> list[DataKeyRecord]:
        check_data_key_page(after, limit)
        statement = self.select_data_keys_statement
        parameters: tuple[Any, ...] = (limit,)
        if after is not None:
            statement = self.select_data_keys_after_statement
            parameters = (after[0], after[1], limit)
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(statement, parameters, prepare=True)
            rows = curs.fetchall()
        return [
            DataKeyRecord(
                secret_id=row["secret_id"],
                version_id=row["version_id"],
                key_id=row["key_id"],
                wrapped_key=bytes(row["wrapped_key"]),
            )
            for row in rows
        ]

    @retried_on_connection_errors
    def data_key_count(self) -> int:
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(self.count_data_keys_statement)
            row = curs.fetchone()
        assert row is not None
        count: int = row["count"]
        return count

    @retried_on_connection_errors
    def replace_data_keys(self, records: Sequence[DataKeyRecord]) -> None:
        batch = validated_data_key_batch(records)
        if not batch:
            return
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self.update_data_keys_statement,
                (
                    [record.secret_id for record in batch],
                    [record.version_id for record in batch],
                    [record.key_id for record in batch],
                    [record.wrapped_key for record in batch],
                ),
            )
            replaced = {(row["secret_id"], row["version_id"]) for row in curs.fetchall()}
            for record in batch:
                if (record.secret_id, record.version_id) not in replaced:
                    raise DataKeyNotFoundError(record.secret_id, record.version_id)

    # Evidence

    def _prepare_evidence_statements(self, events_table_name: str) -> None:
        prefix = events_table_name.removesuffix(EVENTS_TABLE_SUFFIX)
        names = [
            prefix + suffix
            for suffix in (
                EVENT_HASHES_TABLE_SUFFIX,
                CHECKPOINTS_TABLE_SUFFIX,
                MERKLE_NODES_TABLE_SUFFIX,
            )
        ]
        for name in names:
            self.check_identifier_length(name)
        self.event_hashes_table_name, self.checkpoints_table_name, self.merkle_nodes_table_name = (
            names
        )
        hashes, checkpoints, nodes = (Identifier(self.datastore.schema, name) for name in names)
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {table} ("
                    "leaf_index bigint PRIMARY KEY CHECK (leaf_index >= 0), "
                    "notification_id bigint NOT NULL UNIQUE, "
                    "leaf_hash bytea NOT NULL CHECK (octet_length(leaf_hash) = {size}), "
                    "chain_hash bytea NOT NULL CHECK (octet_length(chain_hash) = {size}))"
                ).format(table=hashes, size=HASH_SIZE_BYTES),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {table} ("
                    "sequence bigint PRIMARY KEY CHECK (sequence >= 0), "
                    "tree_size bigint NOT NULL CHECK (tree_size >= 0), "
                    "line text NOT NULL)"
                ).format(table=checkpoints),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {table} ("
                    "level integer NOT NULL CHECK (level >= 1), "
                    "node_index bigint NOT NULL CHECK (node_index >= 0), "
                    "hash bytea NOT NULL CHECK (octet_length(hash) = {size}), "
                    "PRIMARY KEY (level, node_index))"
                ).format(table=nodes, size=HASH_SIZE_BYTES),
            ]
        )
        hash_columns = SQL("leaf_index, notification_id, leaf_hash, chain_hash")
        self.select_event_hash_head_statement = SQL(
            "SELECT {columns} FROM {table} ORDER BY leaf_index DESC LIMIT 1"
        ).format(columns=hash_columns, table=hashes)
        self.insert_event_hashes_statement = SQL(
            "INSERT INTO {table} ({columns}) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bytea[], %s::bytea[]) "
            "ON CONFLICT DO NOTHING RETURNING leaf_index"
        ).format(columns=hash_columns, table=hashes)
        self.select_event_hashes_statement = SQL(
            "SELECT {columns} FROM {table} WHERE leaf_index >= %s ORDER BY leaf_index LIMIT %s"
        ).format(columns=hash_columns, table=hashes)
        self.select_event_hash_by_notification_statement = SQL(
            "SELECT {columns} FROM {table} WHERE notification_id = %s"
        ).format(columns=hash_columns, table=hashes)
        self.select_event_hash_last_index_statement = SQL(
            "SELECT MAX(leaf_index) AS last_leaf_index FROM {table}"
        ).format(table=hashes)
        self.insert_checkpoint_statement = SQL(
            "INSERT INTO {table} (sequence, tree_size, line) VALUES (%s, %s, %s)"
        ).format(table=checkpoints)
        self.select_checkpoints_statement = SQL(
            "SELECT sequence, tree_size, line FROM {table} ORDER BY sequence"
        ).format(table=checkpoints)
        self.insert_merkle_nodes_statement = SQL(
            "INSERT INTO {table} (level, node_index, hash) "
            "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::bytea[]) "
            "ON CONFLICT DO NOTHING"
        ).format(table=nodes)
        self.select_merkle_nodes_statement = SQL(
            "SELECT level, node_index, hash FROM {table} "
            "JOIN unnest(%s::integer[], %s::bigint[]) AS k(level, node_index) "
            "USING (level, node_index)"
        ).format(table=nodes)

    def _prepare_adoption_statements(self, events_table_name: str) -> None:
        events = Identifier(self.datastore.schema, events_table_name)
        hashes = Identifier(self.datastore.schema, self.event_hashes_table_name)
        self.lock_events_statement = SQL("LOCK TABLE {table} IN EXCLUSIVE MODE").format(
            table=events
        )
        self.count_event_hashes_statement = SQL("SELECT COUNT(*) AS count FROM {table}").format(
            table=hashes
        )
        self.select_unchained_events_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM {table} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(table=events)

    def adopt_unchained_events(self) -> int:
        """Not retried: after a lost connection the adoption may have committed."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.lock_events_statement)
            curs.execute(self.count_event_hashes_statement)
            row = curs.fetchone()
            assert row is not None
            if row["count"]:
                raise unchained_log_refused(int(row["count"]))
            head: EventHash | None = None
            while True:
                after = 0 if head is None else head.notification_id
                curs.execute(self.select_unchained_events_statement, (after, ADOPTION_PAGE_SIZE))
                rows = curs.fetchall()
                if not rows:
                    break
                page = adopted_event_hashes(
                    head,
                    [
                        Notification(
                            id=row["notification_id"],
                            originator_id=row["originator_id"],
                            originator_version=row["originator_version"],
                            topic=row["topic"],
                            state=bytes(row["state"]),
                        )
                        for row in rows
                    ],
                )
                curs.execute(
                    self.insert_event_hashes_statement,
                    (
                        [event_hash.leaf_index for event_hash in page],
                        [event_hash.notification_id for event_hash in page],
                        [event_hash.leaf_hash for event_hash in page],
                        [event_hash.chain_hash for event_hash in page],
                    ),
                )
                head = page[-1]
        return 0 if head is None else head.leaf_index + 1

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        """Refuses a database whose transactions are not READ COMMITTED: there, the
        chain's head read after the table lock might come from an older snapshot."""
        curs.execute(SQL("SHOW transaction_isolation"), prepare=False)
        row = curs.fetchone()
        assert row is not None
        if row["transaction_isolation"] != ISOLATION_LEVEL_REQUIRED:
            msg = (
                f"the ledger needs {ISOLATION_LEVEL_REQUIRED!r} transactions, "
                f"not {row['transaction_isolation']!r} (default_transaction_isolation)"
            )
            raise ProgrammingError(msg)
        super()._create_table(curs)

    def _insert_event_hashes(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        notification_ids: Sequence[int],
        head: EventHash | None,
    ) -> None:
        """Extends the hash chain from ``head`` (read under the table lock) inside the
        events' transaction.

        Pipeline mode: the fetch below syncs before its result is used, and the
        INSERT cannot fail on the server (a taken key is skipped, counted, and
        reported here), so no error can surface later as "pipeline aborted".
        """
        if not stored_events:
            return
        hashes = chained_event_hashes(head, notification_ids, stored_events)
        curs.execute(
            self.insert_event_hashes_statement,
            (
                [event_hash.leaf_index for event_hash in hashes],
                [event_hash.notification_id for event_hash in hashes],
                [event_hash.leaf_hash for event_hash in hashes],
                [event_hash.chain_hash for event_hash in hashes],
            ),
            prepare=True,
        )
        inserted_count = len(curs.fetchall())
        if inserted_count != len(hashes):
            msg = (
                f"{len(hashes) - inserted_count} of {len(hashes)} hash rows after leaf "
                f"{head.leaf_index if head else None} exist already: the log was edited; "
                "run `secretledger verify`"
            )
            raise EvidenceLogError(msg)

    @retried_on_connection_errors
    def select_event_hashes(self, start: int, limit: int) -> list[EventHash]:
        check_event_hash_page(start, limit)
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(self.select_event_hashes_statement, (start, limit), prepare=True)
            return [event_hash_from_row(row) for row in curs.fetchall()]

    @retried_on_connection_errors
    def select_event_hash(self, notification_id: int) -> EventHash | None:
        check_notification_id(notification_id)
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(
                self.select_event_hash_by_notification_statement, (notification_id,), prepare=True
            )
            row = curs.fetchone()
        return None if row is None else event_hash_from_row(row)

    @retried_on_connection_errors
    def event_hash_count(self) -> int:
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(self.select_event_hash_last_index_statement)
            row = curs.fetchone()
        assert row is not None
        last_leaf_index = row["last_leaf_index"]
        return 0 if last_leaf_index is None else int(last_leaf_index) + 1

    def insert_checkpoint(self, sequence: int, tree_size: int, line: str) -> None:
        """Not retried: after a lost connection the insert may have committed."""
        check_checkpoint(sequence, tree_size, line)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.insert_checkpoint_statement, (sequence, tree_size, line))

    @retried_on_connection_errors
    def select_checkpoints(self) -> list[StoredCheckpoint]:
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(self.select_checkpoints_statement)
            return [
                StoredCheckpoint(row["sequence"], row["tree_size"], row["line"])
                for row in curs.fetchall()
            ]

    @retried_on_connection_errors
    def insert_merkle_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        checked = checked_merkle_nodes(nodes)
        if not checked:
            return
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self.insert_merkle_nodes_statement,
                (
                    [level for level, _, _ in checked],
                    [node_index for _, node_index, _ in checked],
                    [node_hash for _, _, node_hash in checked],
                ),
            )

    @retried_on_connection_errors
    def select_merkle_nodes(self, keys: Sequence[MerkleNodeKey]) -> dict[MerkleNodeKey, bytes]:
        found: dict[MerkleNodeKey, bytes] = {}
        batches = merkle_node_key_batches(keys)
        if not batches:
            return found
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            for batch in batches:
                curs.execute(
                    self.select_merkle_nodes_statement,
                    ([level for level, _ in batch], [node_index for _, node_index in batch]),
                    prepare=True,
                )
                for row in curs.fetchall():
                    found[(row["level"], row["node_index"])] = bytes(row["hash"])
        return found


def persistence_error(error: Exception) -> Exception:
    """A psycopg error as the library's get_connection() would have raised it (its
    connection errors are the ones callers retry); any other error as it is."""
    if isinstance(error, psycopg.InterfaceError):
        return InterfaceError(str(error))
    if isinstance(error, psycopg.OperationalError):
        return OperationalError(str(error))
    if isinstance(error, psycopg.Error):
        return PersistenceError(str(error))
    return error


class LedgerPostgresFactory(PostgresFactory):
    """PostgreSQL persistence with the data-key table."""

    aggregate_recorder_class = PostgresTablesCreatedInTurn
    application_recorder_class = PostgresDataKeyRecorder
