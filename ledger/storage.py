"""Persistence for the ledger: the msgpack transcoder, the data-key table and factories.

Three concerns live here, all below the application layer:

* :class:`MsgpackTranscoder` turns event state into bytes and back. Applications
  install it by overriding ``construct_transcoder()``.
* Wrapped data keys (envelope encryption) live in their own table, written **in the
  same transaction** as the events that reference them: ``app.save(aggregate,
  data_keys=[DataKeyRecord(...)])``. Destroying a row crypto-shreds that version,
  again in the transaction of the events that say so: ``app.save(aggregate,
  destroyed_data_keys=[(secret_id, version_id), ...])``. Replacing a row re-wraps
  the key under a rotated key-encryption key. Events stay immutable either way.
* Infrastructure factories (selected with ``PERSISTENCE_MODULE=<topic>``) that build
  the data-key-aware recorders, and :func:`environment_for_database` which maps the
  CLI ``--db`` value to eventsourcing environment variables.

The PostgreSQL recorder and factory live in :mod:`ledger.storage_postgres`, so that
this module imports without psycopg installed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import SplitResult, unquote, urlsplit
from uuid import UUID

import msgpack
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType

# --------------------------------------------------------------------------------------
# Transcoder
# --------------------------------------------------------------------------------------

# Extension type codes. These are part of the stored format: never renumber or reuse.
EXTENSION_CODE_UUID: Final = 1
EXTENSION_CODE_TUPLE: Final = 2
EXTENSION_CODE_FROZENSET: Final = 3
EXTENSION_CODE_DECIMAL: Final = 4

UUID_SIZE_BYTES: Final = 16


class MsgpackTranscoder(Transcoder):
    """Encodes event state with msgpack; ``bytes`` stay binary, tuples stay tuples.

    Natively supported: ``None``, ``bool``, ``int`` (64-bit; wider raises
    ``OverflowError``), ``float``, ``str``, ``bytes``, ``list``, ``dict`` (any
    hashable keys) and timezone-aware ``datetime`` (msgpack's Timestamp extension;
    it keeps only the instant, so every datetime decodes in UTC).

    Extension types with fixed codes: ``UUID`` (16 raw bytes), ``tuple`` (elements
    encoded recursively), ``frozenset`` (elements encoded recursively and sorted by
    their encoding, so equal sets give equal bytes) and ``Decimal`` (as text).

    Rejected: naive datetimes (``ValueError``) and every other type, including
    subclasses of the supported ones such as ``StrEnum`` or ``NamedTuple``
    (``TypeError``), so nothing is flattened silently. Error messages name the type,
    never the value, because values may be secret material.

    The transcoder holds no state, so one instance is safe to share between threads.
    """

    def encode(self, obj: Any) -> bytes:
        encoded = msgpack.packb(
            obj,
            use_bin_type=True,
            datetime=True,
            strict_types=True,
            default=self._encode_extension,
        )
        assert isinstance(encoded, bytes)
        return encoded

    def decode(self, data: bytes) -> Any:
        return msgpack.unpackb(
            data,
            raw=False,
            timestamp=3,
            strict_map_key=False,
            ext_hook=self._decode_extension,
        )

    def _encode_extension(self, value: object) -> msgpack.ExtType:
        value_type = type(value)
        if value_type is UUID:
            assert isinstance(value, UUID)
            return msgpack.ExtType(EXTENSION_CODE_UUID, value.bytes)
        if value_type is tuple:
            assert isinstance(value, tuple)
            return msgpack.ExtType(EXTENSION_CODE_TUPLE, self.encode(list(value)))
        if value_type is frozenset:
            assert isinstance(value, frozenset)
            return msgpack.ExtType(EXTENSION_CODE_FROZENSET, self._encode_set(value))
        if value_type is Decimal:
            assert isinstance(value, Decimal)
            return msgpack.ExtType(EXTENSION_CODE_DECIMAL, str(value).encode("ascii"))
        if value_type is datetime:
            msg = "cannot encode a naive datetime: every timestamp must be timezone-aware"
            raise ValueError(msg)
        msg = f"cannot encode a value of type {value_type.__qualname__!r}"
        raise TypeError(msg)

    def _encode_set(self, value: frozenset[object]) -> bytes:
        encoded_elements = sorted(self.encode(element) for element in value)
        array_header = msgpack.Packer().pack_array_header(len(encoded_elements))
        assert isinstance(array_header, bytes)
        return array_header + b"".join(encoded_elements)

    def _decode_extension(self, code: int, data: bytes) -> object:
        if code == EXTENSION_CODE_UUID:
            if len(data) != UUID_SIZE_BYTES:
                msg = f"UUID extension must hold {UUID_SIZE_BYTES} bytes, got {len(data)}"
                raise ValueError(msg)
            return UUID(bytes=data)
        if code == EXTENSION_CODE_TUPLE:
            return tuple(self._decode_array(data))
        if code == EXTENSION_CODE_FROZENSET:
            return frozenset(self._decode_array(data))
        if code == EXTENSION_CODE_DECIMAL:
            try:
                return Decimal(data.decode("ascii"))
            except (UnicodeDecodeError, InvalidOperation) as error:
                msg = "Decimal extension does not hold a decimal number"
                raise ValueError(msg) from error
        msg = f"unknown msgpack extension code {code}"
        raise ValueError(msg)

    def _decode_array(self, data: bytes) -> list[object]:
        decoded = self.decode(data)
        if not isinstance(decoded, list):
            msg = "tuple and frozenset extensions must hold an array"
            raise ValueError(msg)
        return decoded


# --------------------------------------------------------------------------------------
# Data keys
# --------------------------------------------------------------------------------------

VERSION_ID_LENGTH_MAX: Final = 64  # AWS VersionId / ClientRequestToken: 32-64 characters.
KEY_ID_LENGTH_MAX: Final = 256
WRAPPED_KEY_SIZE_BYTES_MAX: Final = 4096

SQLITE_DATA_KEYS_TABLE_NAME: Final = "secret_data_keys"


@dataclass(frozen=True)
class DataKeyRecord:
    """A data key of one secret version, wrapped by a key-encryption key.

    ``wrapped_key`` is ciphertext, but it is still kept out of ``repr``.
    """

    secret_id: UUID
    version_id: str
    key_id: str
    wrapped_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret_id, UUID):
            msg = "secret_id must be a UUID"
            raise TypeError(msg)
        _require_text("version_id", self.version_id, VERSION_ID_LENGTH_MAX)
        _require_text("key_id", self.key_id, KEY_ID_LENGTH_MAX)
        if not isinstance(self.wrapped_key, bytes):
            msg = "wrapped_key must be bytes"
            raise TypeError(msg)
        if not 0 < len(self.wrapped_key) <= WRAPPED_KEY_SIZE_BYTES_MAX:
            msg = f"wrapped_key must hold 1 to {WRAPPED_KEY_SIZE_BYTES_MAX} bytes"
            raise ValueError(msg)


def _require_text(name: str, value: object, length_max: int) -> None:
    if not isinstance(value, str):
        msg = f"{name} must be a str"
        raise TypeError(msg)
    if not 0 < len(value) <= length_max:
        msg = f"{name} must have 1 to {length_max} characters"
        raise ValueError(msg)


class DataKeyNotFoundError(LookupError):
    """Raised when replacing a data key that does not exist (or was destroyed)."""

    def __init__(self, secret_id: UUID, version_id: str) -> None:
        super().__init__(f"no data key for secret {secret_id} version {version_id!r}")
        self.secret_id = secret_id
        self.version_id = version_id


@runtime_checkable
class DataKeyStore(Protocol):
    """What every application recorder built by this module's factories offers.

    Data keys are inserted only through ``app.save(..., data_keys=[...])`` and
    destroyed only through ``app.save(..., destroyed_data_keys=[...])``, so that
    they commit or roll back together with the events that reference them or say
    that they are gone.
    """

    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        """Returns the data key of one secret version, or None if absent or destroyed."""

    def replace_data_key(self, record: DataKeyRecord) -> None:
        """Overwrites an existing data key, e.g. re-wrapped under a rotated
        key-encryption key. Raises :class:`DataKeyNotFoundError` if there is none.
        """


DATA_KEYS_ARGUMENT: Final = "data_keys"


def validated_data_keys(
    stored_events: Sequence[StoredEvent], arguments: dict[str, Any]
) -> tuple[DataKeyRecord, ...]:
    """Checks the ``data_keys`` argument of ``insert_events`` and returns it as a tuple.

    Invariants: every element is a :class:`DataKeyRecord`; every key belongs to an
    aggregate whose events are in the same batch; no (secret, version) pair repeats;
    there is at most one key per stored event. Violations are programming errors
    (``TypeError``/``ValueError``), not concurrency conflicts (``IntegrityError``).
    """
    data_keys = arguments.get(DATA_KEYS_ARGUMENT)
    if data_keys is None:
        return ()
    if not isinstance(data_keys, list | tuple):
        msg = f"{DATA_KEYS_ARGUMENT} must be a list or tuple of DataKeyRecord"
        raise TypeError(msg)
    if not all(isinstance(record, DataKeyRecord) for record in data_keys):
        msg = f"{DATA_KEYS_ARGUMENT} must contain only DataKeyRecord objects"
        raise TypeError(msg)
    if len(data_keys) > len(stored_events):
        msg = f"at most one data key per stored event ({len(stored_events)} events)"
        raise ValueError(msg)
    originator_ids = {stored_event.originator_id for stored_event in stored_events}
    if any(record.secret_id not in originator_ids for record in data_keys):
        msg = "every data key must belong to an aggregate saved in the same call"
        raise ValueError(msg)
    key_pairs = {(record.secret_id, record.version_id) for record in data_keys}
    if len(key_pairs) != len(data_keys):
        msg = "data keys in one save must have distinct (secret_id, version_id)"
        raise ValueError(msg)
    return tuple(data_keys)


DESTROYED_DATA_KEYS_ARGUMENT: Final = "destroyed_data_keys"

DataKeyPair = tuple[UUID, str]


def validated_destroyed_data_keys(
    stored_events: Sequence[StoredEvent], arguments: dict[str, Any]
) -> tuple[DataKeyPair, ...]:
    """Checks the ``destroyed_data_keys`` argument of ``insert_events``: (secret_id,
    version_id) pairs whose wrapped data keys are deleted in the events' transaction.

    Invariants: every element is a ``(UUID, str)`` pair with a valid version id; every
    pair belongs to an aggregate whose events are in the same batch (the shredding is
    itself an event); no pair repeats. A pair with no stored key is not an error (it
    was destroyed already). Violations are programming errors (``TypeError``/``ValueError``).
    """
    pairs = arguments.get(DESTROYED_DATA_KEYS_ARGUMENT)
    if pairs is None:
        return ()
    if not isinstance(pairs, list | tuple):
        msg = f"{DESTROYED_DATA_KEYS_ARGUMENT} must be a list or tuple of (UUID, str) pairs"
        raise TypeError(msg)
    for pair in pairs:
        _require_data_key_pair(pair)
    originator_ids = {stored_event.originator_id for stored_event in stored_events}
    if any(secret_id not in originator_ids for secret_id, _ in pairs):
        msg = "every destroyed data key must belong to an aggregate saved in the same call"
        raise ValueError(msg)
    if len(set(pairs)) != len(pairs):
        msg = "destroyed data keys in one save must be distinct (secret_id, version_id) pairs"
        raise ValueError(msg)
    return tuple(pairs)


DEFER_ERASURE_ARGUMENT: Final = "defer_erasure"


def validated_defer_erasure(arguments: dict[str, Any]) -> bool:
    """The ``defer_erasure`` argument of ``insert_events`` (default False): whether the
    destroyed keys' bytes may leave the database files later rather than right after
    the commit (SQLite only; see :class:`SQLiteDataKeyRecorder`)."""
    defer_erasure = arguments.get(DEFER_ERASURE_ARGUMENT, False)
    if not isinstance(defer_erasure, bool):
        msg = f"{DEFER_ERASURE_ARGUMENT} must be a bool"
        raise TypeError(msg)
    return defer_erasure


def _require_data_key_pair(pair: object) -> None:
    if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], UUID)):
        msg = f"{DESTROYED_DATA_KEYS_ARGUMENT} must contain (UUID, str) pairs"
        raise TypeError(msg)
    _require_text("version_id", pair[1], VERSION_ID_LENGTH_MAX)


# --------------------------------------------------------------------------------------
# In-memory (POPO) backend
# --------------------------------------------------------------------------------------


class POPODataKeyRecorder(POPOApplicationRecorder):
    """In-memory application recorder with a data-key table.

    Uniqueness of events *and* data keys is checked under the database lock before
    anything is written, so a conflicting save leaves no trace.
    """

    def __init__(self) -> None:
        super().__init__()
        self._data_keys: dict[tuple[UUID, str], DataKeyRecord] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        kwargs[DATA_KEYS_ARGUMENT] = validated_data_keys(stored_events, kwargs)
        kwargs[DESTROYED_DATA_KEYS_ARGUMENT] = validated_destroyed_data_keys(stored_events, kwargs)
        validated_defer_erasure(kwargs)  # nothing to erase: memory holds no old copies
        return super().insert_events(stored_events, **kwargs)

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        records: tuple[DataKeyRecord, ...] = kwargs[DATA_KEYS_ARGUMENT]
        for record in records:
            if (record.secret_id, record.version_id) in self._data_keys:
                msg = (
                    f"Data key already recorded: secret {record.secret_id} "
                    f"version {record.version_id!r}"
                )
                raise IntegrityError(msg)

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        records: tuple[DataKeyRecord, ...] = kwargs[DATA_KEYS_ARGUMENT]
        for record in records:
            self._data_keys[(record.secret_id, record.version_id)] = record
        self._destroy_data_keys(kwargs[DESTROYED_DATA_KEYS_ARGUMENT])
        return notification_ids

    def _destroy_data_keys(self, pairs: tuple[DataKeyPair, ...]) -> None:
        """Crypto-shredding, under the database lock of the events' insert."""
        for pair in pairs:
            self._data_keys.pop(pair, None)

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """Walk only the requested version range: the library scans every version of
        the aggregate, which makes a put's cost grow with the secret's history."""
        with self._database_lock:
            index = self._stored_events_index[str(originator_id)]
            if not index:
                return []
            low = next(iter(index)) if gt is None else gt + 1
            high = next(reversed(index)) if lte is None else lte
            versions = range(high, low - 1, -1) if desc else range(low, high + 1)
            results: list[StoredEvent] = []
            for version in versions:
                position = index.get(version)
                if position is None:
                    continue
                results.append(self._stored_events[position])
                if limit is not None and len(results) == limit:
                    break
            return results

    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        with self._database_lock:
            return self._data_keys.get((secret_id, version_id))

    def replace_data_key(self, record: DataKeyRecord) -> None:
        assert isinstance(record, DataKeyRecord)
        key_pair = (record.secret_id, record.version_id)
        with self._database_lock:
            if key_pair not in self._data_keys:
                raise DataKeyNotFoundError(record.secret_id, record.version_id)
            self._data_keys[key_pair] = record


class LedgerPOPOFactory(POPOFactory):
    """In-memory persistence (``--db memory:``) with the data-key table."""

    def application_recorder(self) -> ApplicationRecorder:
        return POPODataKeyRecorder()


# --------------------------------------------------------------------------------------
# SQLite backend
# --------------------------------------------------------------------------------------


class DurableSQLiteConnectionPool(SQLiteConnectionPool):
    """Connections that survive power loss, and that really erase deleted rows.

    The library already switches file databases to WAL. On top of that, every
    connection sets ``synchronous=FULL`` (the WAL is synced on every commit, so a
    committed save survives an OS crash or power loss, not only a process crash) and
    ``secure_delete=ON`` (deleted and overwritten content is zeroed, so a destroyed
    data key does not linger in free pages).
    """

    CONNECTION_PRAGMAS: Final = ("PRAGMA synchronous=FULL", "PRAGMA secure_delete=ON")

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        try:
            with connection.cursor() as cursor:
                for pragma in self.CONNECTION_PRAGMAS:
                    cursor.execute(pragma)
        except sqlite3.Error:
            connection.close()
            raise
        return connection


ERASURE_DELAY_SECONDS_MAX: Final = 60.0


class SQLiteDataKeyRecorder(SQLiteApplicationRecorder):
    """SQLite application recorder with the ``secret_data_keys`` table.

    Destroyed data keys are deleted in the events' transaction; ``secure_delete``
    zeroes their bytes in the new page images. The old images stay in the database
    file and in older frames of the -wal file until a checkpoint, so after the commit
    the recorder checkpoints the WAL with TRUNCATE (about as costly as the commit
    itself). A save with ``defer_erasure=True`` (routine shredding, such as retention)
    leaves that checkpoint to the first commit at least ``ERASURE_DELAY_SECONDS_MAX``
    later, or to an earlier save that erases at once; when the last connection
    closes, SQLite checkpoints and deletes the -wal file itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Monotonic time by which deferred erasures are due, None if none is pending.
        # Commits are serialized by SQLite; a race here only moves one checkpoint.
        self._erasure_due_monotonic: float | None = None
        table = SQLITE_DATA_KEYS_TABLE_NAME
        self.insert_data_key_statement = f"INSERT INTO {table} VALUES (?,?,?,?)"
        self.select_data_key_statement = (
            f"SELECT key_id, wrapped_key FROM {table} WHERE secret_id=? AND version_id=?"
        )
        self.delete_data_key_statement = f"DELETE FROM {table} WHERE secret_id=? AND version_id=?"
        self.update_data_key_statement = (
            f"UPDATE {table} SET key_id=?, wrapped_key=? "
            "WHERE secret_id=? AND version_id=? RETURNING secret_id"
        )

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {SQLITE_DATA_KEYS_TABLE_NAME} ("
            "secret_id TEXT NOT NULL, "
            "version_id TEXT NOT NULL, "
            "key_id TEXT NOT NULL, "
            "wrapped_key BLOB NOT NULL, "
            "PRIMARY KEY (secret_id, version_id)) "
            "WITHOUT ROWID"
        )
        return statements

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        kwargs[DATA_KEYS_ARGUMENT] = validated_data_keys(stored_events, kwargs)
        destroyed = validated_destroyed_data_keys(stored_events, kwargs)
        kwargs[DESTROYED_DATA_KEYS_ARGUMENT] = destroyed
        defer_erasure = validated_defer_erasure(kwargs)
        notification_ids = super().insert_events(stored_events, **kwargs)
        self._erase_after_commit(is_destroying=bool(destroyed), defer_erasure=defer_erasure)
        return notification_ids

    def _erase_after_commit(self, *, is_destroying: bool, defer_erasure: bool) -> None:
        """Checkpoints the WAL now if this commit destroyed keys without deferring,
        or if deferred erasures are due; otherwise remembers when they will be."""
        now_monotonic = time.monotonic()
        if is_destroying and defer_erasure and self._erasure_due_monotonic is None:
            self._erasure_due_monotonic = now_monotonic + ERASURE_DELAY_SECONDS_MAX
        due = self._erasure_due_monotonic
        if (is_destroying and not defer_erasure) or (due is not None and now_monotonic >= due):
            self._checkpoint_write_ahead_log()
            self._erasure_due_monotonic = None

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._insert_events(c, stored_events, **kwargs)
        records: tuple[DataKeyRecord, ...] = kwargs[DATA_KEYS_ARGUMENT]
        if records:
            c.executemany(
                self.insert_data_key_statement,
                [
                    (record.secret_id.hex, record.version_id, record.key_id, record.wrapped_key)
                    for record in records
                ],
            )
        self._destroy_data_keys(c, kwargs[DESTROYED_DATA_KEYS_ARGUMENT])
        return notification_ids

    def _destroy_data_keys(self, c: SQLiteCursor, pairs: tuple[DataKeyPair, ...]) -> None:
        """Crypto-shredding in the events' transaction: ``secure_delete`` zeroes the
        rows' bytes in the pages; the WAL is checkpointed after the commit."""
        if pairs:
            c.executemany(
                self.delete_data_key_statement,
                [(secret_id.hex, version_id) for secret_id, version_id in pairs],
            )

    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_data_key_statement, (secret_id.hex, version_id))
            row = c.fetchone()
        if row is None:
            return None
        return DataKeyRecord(
            secret_id=secret_id,
            version_id=version_id,
            key_id=row["key_id"],
            wrapped_key=bytes(row["wrapped_key"]),
        )

    def replace_data_key(self, record: DataKeyRecord) -> None:
        assert isinstance(record, DataKeyRecord)
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self.update_data_key_statement,
                (record.key_id, record.wrapped_key, record.secret_id.hex, record.version_id),
            )
            if c.fetchone() is None:
                raise DataKeyNotFoundError(record.secret_id, record.version_id)
        self._checkpoint_write_ahead_log()

    def _checkpoint_write_ahead_log(self) -> None:
        """Copies the zeroed pages into the database file and truncates the WAL.

        Best effort: with concurrent readers the checkpoint may stop early; the old
        frames are then overwritten by a later checkpoint instead.
        """
        if self.datastore.pool.is_sqlite_memory_mode:
            return
        with (
            self.datastore.get_connection(commit=True) as connection,
            connection.cursor() as cursor,
            contextlib.suppress(sqlite3.OperationalError),
        ):
            # The change is committed already; a busy database only delays the erasure.
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class LedgerSQLiteFactory(SQLiteFactory):
    """SQLite persistence with durable connections and the data-key table."""

    application_recorder_class = SQLiteDataKeyRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        default_pool = self.datastore.pool
        self.datastore.pool = DurableSQLiteConnectionPool(
            db_name=default_pool.db_name,
            lock_timeout=default_pool.lock_timeout,
            pool_size=default_pool.pool_size,
            max_overflow=default_pool.max_overflow,
            pool_timeout=default_pool.pool_timeout,
            max_age=default_pool.max_age,
            pre_ping=default_pool.pre_ping,
        )
        default_pool.close()


# --------------------------------------------------------------------------------------
# Choosing a backend
# --------------------------------------------------------------------------------------

MEMORY_DATABASE: Final = "memory:"
POSTGRES_URL_SCHEMES: Final = ("postgresql", "postgres")
POSTGRES_PORT_DEFAULT: Final = 5432
SQLITE_LOCK_TIMEOUT_SECONDS: Final = 10
POSTGRES_LOCK_TIMEOUT_SECONDS: Final = 10

MEMORY_FACTORY_TOPIC: Final = "ledger.storage:LedgerPOPOFactory"
SQLITE_FACTORY_TOPIC: Final = "ledger.storage:LedgerSQLiteFactory"
POSTGRES_FACTORY_TOPIC: Final = "ledger.storage_postgres:LedgerPostgresFactory"


def environment_for_database(database: str) -> dict[str, str]:
    """Maps the CLI ``--db`` value to eventsourcing environment variables.

    * ``memory:`` selects the in-memory backend (tests);
    * ``postgresql://user[:password]@host[:port]/dbname`` (or ``postgres://``)
      selects PostgreSQL in schema ``public``; user, host and database are required,
      the port defaults to 5432, query strings and fragments are rejected;
    * anything else is a SQLite database file path.

    ``SQLITE_LOCK_TIMEOUT`` is always set, for SQLite stores used next to any backend
    (e.g. projection views). The keys are unprefixed, so ``LEDGER_…`` variables in
    ``os.environ`` still override them. Error messages never repeat the URL, which
    may hold a password.
    """
    if not isinstance(database, str) or not database.strip():
        msg = "database must be a non-empty string: a SQLite path, a postgresql:// URL or memory:"
        raise ValueError(msg)
    if database == MEMORY_DATABASE:
        return {
            "PERSISTENCE_MODULE": MEMORY_FACTORY_TOPIC,
            "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
        }
    scheme, separator, _ = database.partition("://")
    if separator and scheme.lower() in POSTGRES_URL_SCHEMES:
        return _postgres_environment(database)
    return {
        "PERSISTENCE_MODULE": SQLITE_FACTORY_TOPIC,
        "SQLITE_DBNAME": database,
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
    }


def _postgres_environment(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        msg = "PostgreSQL URL must not have a query string or fragment"
        raise ValueError(msg)
    user = unquote(parts.username or "")
    host = unquote(parts.hostname or "")
    database_name = unquote(parts.path.removeprefix("/"))
    if not user or not host:
        msg = "PostgreSQL URL needs a user and a host: postgresql://user:password@host:port/dbname"
        raise ValueError(msg)
    if not database_name or "/" in database_name:
        msg = "PostgreSQL URL needs exactly one path segment naming the database"
        raise ValueError(msg)
    return {
        "PERSISTENCE_MODULE": POSTGRES_FACTORY_TOPIC,
        "POSTGRES_DBNAME": database_name,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(_postgres_port(parts)),
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": "public",
        "POSTGRES_LOCK_TIMEOUT": str(POSTGRES_LOCK_TIMEOUT_SECONDS),
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
    }


def _postgres_port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError as error:
        msg = "PostgreSQL URL has an invalid port: expected an integer from 1 to 65535"
        raise ValueError(msg) from error
    if port is None:
        return POSTGRES_PORT_DEFAULT
    if port == 0:
        msg = "PostgreSQL URL has an invalid port: expected an integer from 1 to 65535"
        raise ValueError(msg)
    return port
