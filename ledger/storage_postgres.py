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

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, ParamSpec, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    InternalError,
    Notification,
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
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.merkle import GENESIS_CHAIN_HASH, HASH_SIZE_BYTES, LEAF_FORMAT, LEAF_PREFIX
from ledger.storage import (
    ADOPTION_PAGE_SIZE,
    DataKeyNotFoundError,
    DataKeyRecord,
    EventHash,
    EvidenceLogError,
    MerkleNodeKey,
    StoredCheckpoint,
    WaitRefused,
    adopted_event_hashes,
    check_checkpoint,
    check_data_key_page,
    check_event_hash_page,
    check_notification_id,
    check_tree_size,
    checked_merkle_nodes,
    checkpoint_from_row,
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
CHECKPOINTS_BY_SIZE_SUFFIX: Final = "_by_size"  # the index prove --consistency looks up
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


APPEND_FUNCTION_SUFFIX: Final = "_append_events"
LEAF_FUNCTION_SUFFIX: Final = "_leaf_bytes"


class PostgresTablesCreatedInTurn(PostgresAggregateRecorder):
    """Creates its tables one process at a time. Concurrent ``CREATE TABLE IF NOT
    EXISTS`` of one table can fail ("tuple concurrently updated", or a duplicate key
    in ``pg_type``): seen when several processes opened a new database at once.
    Also the recorder of snapshots.

    It can be told a thread that must not wait for the database (`refuse_waits_on`:
    the server's event loop); asked there for anything a call may read or write, it
    raises `WaitRefused` before sending a byte."""

    waits_refused_on: int | None = None

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # First of the statements the library runs in one transaction to create the
        # tables (`create_table`), so the lock is held until they are all created.
        self.sql_create_statements.insert(
            0, SQL("SELECT pg_advisory_xact_lock({key})").format(key=Literal(SCHEMA_LOCK_KEY))
        )

    def refuse_waits_on(self, thread_ident: int | None) -> None:
        """Refuse round trips on the thread ``thread_ident`` (None: on none)."""
        self.waits_refused_on = thread_ident

    def may_wait(self) -> None:
        """`WaitRefused` on the thread that must not wait."""
        if self.waits_refused_on is not None and threading.get_ident() == self.waits_refused_on:
            raise WaitRefused

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        self.may_wait()
        events: Sequence[StoredEvent] = super().select_events(
            originator_id, gt=gt, lte=lte, desc=desc, limit=limit
        )
        return events


class PostgresDataKeyRecorder(PostgresTablesCreatedInTurn, PostgresApplicationRecorder):
    """PostgreSQL application recorder with the ``<app>_data_keys`` table and the
    evidence tables ``<app>_event_hashes``, ``<app>_checkpoints`` and
    ``<app>_merkle_nodes``.

    Every save is one call of the PL/pgSQL function ``<app>_append_events``: one
    statement, one round trip, one transaction (see :meth:`insert_events`). Under
    ``LOCK TABLE <app>_events IN EXCLUSIVE MODE`` it reads the chain's head and the
    newest notification id, gives the new events the ids after it, computes their
    hash rows from the records exactly as stored (``<app>_leaf_bytes``, the
    leaf format of :func:`ledger.merkle.leaf_bytes`, and the chain step of
    :func:`ledger.merkle.chain_hash`, with PostgreSQL's ``sha256``), destroys and
    inserts data keys, inserts the events and their hash rows, and notifies
    listeners. So any number of writers append in one round trip each, however
    they interleave. ``tests/test_evidence_storage.py`` checks the SQL leaves
    against the Python ones.
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
        self.select_data_key_statement = SQL(
            "SELECT key_id, wrapped_key FROM {table} WHERE secret_id = %s AND version_id = %s"
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
        self._prepare_evidence_statements(events_table_name)
        self._prepare_adoption_statements(events_table_name)
        self._prepare_append_function(events_table_name)

    @retried_on_connection_errors
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        """Appends ``stored_events`` (with the data keys they record or destroy) in one
        call of ``<app>_append_events``; returns their notification ids. A conflict
        (an event's version or a data key taken already) raises ``IntegrityError``;
        a head that the new events would not follow (the log was edited) raises
        `EvidenceLogError`. Either way the call wrote nothing."""
        self.may_wait()
        data_keys = validated_data_keys(stored_events, kwargs)
        destroyed = validated_destroyed_data_keys(stored_events, kwargs)
        validated_defer_erasure(kwargs)  # nothing to defer: a deleted row leaves no file
        parameters = (
            [event.originator_id for event in stored_events],
            [event.originator_version for event in stored_events],
            [event.topic for event in stored_events],
            [event.state for event in stored_events],
            [record.secret_id for record in data_keys],
            [record.version_id for record in data_keys],
            [record.key_id for record in data_keys],
            [record.wrapped_key for record in data_keys],
            [secret_id for secret_id, _ in destroyed],
            [version_id for _, version_id in destroyed],
        )
        try:
            with self.datastore.get_connection() as connection, connection.cursor() as curs:
                curs.execute(self.append_events_statement, parameters, prepare=True)
                row = curs.fetchone()
        except InternalError as error:
            if isinstance(error.__cause__, psycopg.errors.DataCorrupted):
                msg = f"{error}: the log was edited; run `secretledger verify`"
                raise EvidenceLogError(msg) from error
            raise
        assert row is not None, "the function answers one row"
        first_id = int(row["first_notification_id"])
        return list(range(first_id, first_id + len(stored_events)))

    def _prepare_append_function(self, events_table_name: str) -> None:
        """``<app>_leaf_bytes`` and ``<app>_append_events`` (see the class docstring).
        Both are replaced (``CREATE OR REPLACE``) whenever the tables are created, so
        a database written by older code gets them on first open."""
        prefix = events_table_name.removesuffix(EVENTS_TABLE_SUFFIX)
        for name in (prefix + LEAF_FUNCTION_SUFFIX, prefix + APPEND_FUNCTION_SUFFIX):
            self.check_identifier_length(name)
        leaf = Identifier(self.datastore.schema, prefix + LEAF_FUNCTION_SUFFIX)
        function = Identifier(self.datastore.schema, prefix + APPEND_FUNCTION_SUFFIX)
        events = Identifier(self.datastore.schema, events_table_name)
        id_type = Identifier(self.datastore.originator_id_type)
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {leaf}(notification_id bigint, "
                "originator_id {id_type}, originator_version bigint, topic text, state bytea) "
                "RETURNS bytea LANGUAGE sql IMMUTABLE STRICT AS $BODY$ "
                "SELECT {leaf_format} || int8send(notification_id) "
                "|| uuid_send(originator_id::uuid) || int8send(originator_version) "
                "|| int4send(octet_length(convert_to(topic, 'UTF8'))) "
                "|| convert_to(topic, 'UTF8') || int4send(octet_length(state)) || state "
                "$BODY$"
            ).format(leaf=leaf, id_type=id_type, leaf_format=Literal(LEAF_FORMAT))
        )
        # Run by the test that holds the SQL leaf to ledger.merkle.leaf_bytes.
        self.leaf_bytes_statement = SQL("SELECT {leaf}(%s, %s, %s, %s, %s) AS leaf").format(
            leaf=leaf
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {function}("
                "originator_ids {id_type}[], originator_versions bigint[], topics text[], "
                "states bytea[], key_secret_ids uuid[], key_version_ids text[], "
                "key_ids text[], wrapped_keys bytea[], destroyed_secret_ids uuid[], "
                "destroyed_version_ids text[]) "
                "RETURNS TABLE (first_notification_id bigint) "
                "LANGUAGE plpgsql AS $BODY$ "
                "DECLARE head record; last_id bigint; inserted_count bigint; "
                "event_count integer := coalesce(cardinality(originator_ids), 0); "
                "next_leaf bytea; next_chain bytea; next_leaf_index bigint; "
                "leaf_hashes bytea[] := '{{}}'; chain_hashes bytea[] := '{{}}'; "
                "BEGIN "
                "SET LOCAL lock_timeout = {lock_timeout}; "
                "LOCK TABLE {events} IN EXCLUSIVE MODE; "
                "SELECT h.leaf_index, h.notification_id, h.chain_hash INTO head "
                "FROM {hashes} AS h ORDER BY h.leaf_index DESC LIMIT 1; "
                "SELECT coalesce(max(e.notification_id), 0) INTO last_id FROM {events} AS e; "
                "IF event_count > 0 AND head.notification_id > last_id THEN "
                "RAISE EXCEPTION 'event % would follow leaf % of event %', last_id + 1, "
                "head.leaf_index, head.notification_id USING ERRCODE = 'data_corrupted'; "
                "END IF; "
                "next_chain := coalesce(head.chain_hash, {genesis}); "
                "next_leaf_index := coalesce(head.leaf_index, -1); "
                "FOR i IN 1..event_count LOOP "
                "next_leaf := {leaf}(last_id + i, originator_ids[i], originator_versions[i], "
                "topics[i], states[i]); "
                "next_leaf_index := next_leaf_index + 1; "
                "next_chain := sha256(next_chain || int8send(next_leaf_index) || next_leaf); "
                "leaf_hashes := leaf_hashes || sha256({leaf_prefix} || next_leaf); "
                "chain_hashes := chain_hashes || next_chain; "
                "END LOOP; "
                # Skipping statements on empty arrays saves a quarter of the call.
                "IF cardinality(destroyed_secret_ids) > 0 THEN "
                "DELETE FROM {keys} AS k USING unnest(destroyed_secret_ids, "
                "destroyed_version_ids) AS d(secret_id, version_id) "
                "WHERE k.secret_id = d.secret_id AND k.version_id = d.version_id; "
                "END IF; "
                "IF cardinality(key_secret_ids) > 0 THEN "
                "INSERT INTO {keys} (secret_id, version_id, key_id, wrapped_key) "
                "SELECT * FROM unnest(key_secret_ids, key_version_ids, key_ids, wrapped_keys); "
                "END IF; "
                "IF event_count > 0 THEN "
                "INSERT INTO {events} "
                "(notification_id, originator_id, originator_version, topic, state) "
                "SELECT last_id + u.n, u.originator_id, u.originator_version, u.topic, u.state "
                "FROM unnest(originator_ids, originator_versions, topics, states) "
                "WITH ORDINALITY AS u(originator_id, originator_version, topic, state, n); "
                "INSERT INTO {hashes} (leaf_index, notification_id, leaf_hash, chain_hash) "
                "SELECT coalesce(head.leaf_index, -1) + u.n, last_id + u.n, u.leaf_hash, "
                "u.chain_hash FROM unnest(leaf_hashes, chain_hashes) "
                "WITH ORDINALITY AS u(leaf_hash, chain_hash, n) ON CONFLICT DO NOTHING; "
                "GET DIAGNOSTICS inserted_count = ROW_COUNT; "
                "IF inserted_count <> event_count THEN "
                "RAISE EXCEPTION 'hash rows after leaf % exist already', "
                "coalesce(head.leaf_index, -1) USING ERRCODE = 'data_corrupted'; "
                "END IF; "
                "PERFORM setval(pg_get_serial_sequence({events_name}, 'notification_id'), "
                "last_id + event_count); "
                "END IF; "
                "NOTIFY {channel}; "
                "RETURN QUERY SELECT last_id + 1; "
                "END $BODY$"
            ).format(
                function=function,
                leaf=leaf,
                id_type=id_type,
                lock_timeout=Literal(f"{self.datastore.lock_timeout}s"),
                events=events,
                events_name=Literal(events.as_string()),
                hashes=Identifier(self.datastore.schema, self.event_hashes_table_name),
                keys=Identifier(self.datastore.schema, self.data_keys_table_name),
                genesis=Literal(GENESIS_CHAIN_HASH),
                leaf_prefix=Literal(LEAF_PREFIX),
                channel=Identifier(self.channel_name),
            )
        )
        self.append_events_statement = SQL(
            "SELECT * FROM {function}(%b::{id_type}[], %b::bigint[], %b::text[], %b::bytea[], "
            "%b::uuid[], %b::text[], %b::text[], %b::bytea[], %b::uuid[], %b::text[])"
        ).format(function=function, id_type=id_type)

    def max_notification_id(self) -> int | None:
        self.may_wait()
        maximum: int | None = super().max_notification_id()
        return maximum

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        self.may_wait()
        notifications: Sequence[Notification] = super().select_notifications(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )
        return notifications

    @retried_on_connection_errors
    def select_last_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        self.may_wait()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.select_last_versions_statement, (list(originator_ids),), prepare=True)
            return {row["originator_id"]: int(row["version"]) for row in curs.fetchall()}

    @retried_on_connection_errors
    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        self.may_wait()
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
        for name in [*names, names[1] + CHECKPOINTS_BY_SIZE_SUFFIX]:
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
                SQL("CREATE INDEX IF NOT EXISTS {index} ON {table} (tree_size, sequence)").format(
                    index=Identifier(self.checkpoints_table_name + CHECKPOINTS_BY_SIZE_SUFFIX),
                    table=checkpoints,
                ),
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
        checkpoint_rows = SQL("SELECT sequence, tree_size, line FROM {table} ").format(
            table=checkpoints
        )
        self.select_checkpoints_statement = checkpoint_rows + SQL(
            "WHERE sequence >= %s ORDER BY sequence"
        )
        self.select_latest_checkpoint_statement = checkpoint_rows + SQL(
            "ORDER BY sequence DESC LIMIT 1"
        )
        self.select_checkpoint_of_size_statement = checkpoint_rows + SQL(
            "WHERE tree_size = %s ORDER BY sequence DESC LIMIT 1"
        )
        self.select_checkpoint_sizes_beside_statement = SQL(
            "SELECT (SELECT MAX(tree_size) FROM {table} WHERE tree_size < %s) AS below, "
            "(SELECT MIN(tree_size) FROM {table} WHERE tree_size > %s) AS above"
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

    def create_table(self) -> None:
        """Refuses a database whose transactions are not READ COMMITTED (there, the
        chain's head read after the table lock might come from an older snapshot),
        then creates the tables."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SHOW transaction_isolation"), prepare=False)
            row = curs.fetchone()
        assert row is not None
        if row["transaction_isolation"] != ISOLATION_LEVEL_REQUIRED:
            msg = (
                f"the ledger needs {ISOLATION_LEVEL_REQUIRED!r} transactions, "
                f"not {row['transaction_isolation']!r} (default_transaction_isolation)"
            )
            raise ProgrammingError(msg)
        super().create_table()

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
    def select_checkpoints(self, start: int = 0) -> list[StoredCheckpoint]:
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(self.select_checkpoints_statement, (start,))
            return [checkpoint_from_row(row) for row in curs.fetchall()]

    def select_latest_checkpoint(self) -> StoredCheckpoint | None:
        return self._select_checkpoint(self.select_latest_checkpoint_statement, ())

    def select_checkpoint_of_size(self, tree_size: int) -> StoredCheckpoint | None:
        check_tree_size(tree_size)
        return self._select_checkpoint(self.select_checkpoint_of_size_statement, (tree_size,))

    @retried_on_connection_errors
    def _select_checkpoint(
        self, statement: Composed, parameters: tuple[int, ...]
    ) -> StoredCheckpoint | None:
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(statement, parameters)
            row = curs.fetchone()
        return None if row is None else checkpoint_from_row(row)

    @retried_on_connection_errors
    def select_checkpoint_sizes_beside(self, tree_size: int) -> tuple[int | None, int | None]:
        check_tree_size(tree_size)
        with self.datastore.get_connection() as connection, connection.cursor() as curs:
            curs.execute(self.select_checkpoint_sizes_beside_statement, (tree_size, tree_size))
            row = curs.fetchone()
        assert row is not None, "one row of two sizes"
        return row["below"], row["above"]

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


class LedgerPostgresFactory(PostgresFactory):
    """PostgreSQL persistence with the data-key table."""

    aggregate_recorder_class = PostgresTablesCreatedInTurn
    application_recorder_class = PostgresDataKeyRecorder
