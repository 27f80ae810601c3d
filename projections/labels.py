"""The label projection: the label map of every secret at every position of the log.

Tables (all written by :class:`LabelsProjection`, read by :class:`LabelQueries`):

``projection_secrets``
    one row per secret, keyed by ``secret_key`` (the log position of its
    ``Secret.Created``): ARN, name, time of creation, position and time of deletion.
``projection_secret_names``
    one row per interval during which a secret held a name (from ``SecretName.Claimed``
    to ``SecretName.Released``), used to resolve a name *as of* a position or a time:
    names are re-used by new secrets (with new ARNs) after a forced delete or a purge.
``projection_versions``, ``projection_version_removals``
    one row per version created (or staged by a rotation without a value, RO-3), and
    one per version that retention removed, or that
    was destroyed (``VersionDestroyed``: on request, or by a forced delete or purge).
    A destroyed version has had its labels taken off first, by explicit
    ``LabelMoved`` events (reason ``detached-by-destroy`` on request, R-6;
    ``detached-by-deletion`` before a deletion's ``VersionDestroyed`` events, D-1).
``projection_label_moves``
    the label history, append-only: one row per move of a label (the version it moved
    to, or none when it was taken off), with the event time and the principal,
    request id and operation that moved it, and why (the event's ``reason``,
    docs/events.md R-1 to R-8). Deleting a secret (forced, or purged after its
    recovery window) takes every label off: the log says so with one ``LabelMoved``
    per label (D-1); for a v1 ``Deleted``, which left them attached, the projection
    takes off the labels still attached at the deletion's position (D-2), reason
    ``detached-by-deletion``. A deleted secret has no labels, as DescribeSecret
    (not found) has none.
``projection_label_intervals`` (a view)
    the same history as intervals: one row per interval during which a label sat on
    a version, ``[from_position, to_position)``, with the times, principals and
    request ids that moved the label in and out.
``projection_secret_labels``
    the labels each secret ever used (the as-of query seeks each one).
``projection_secret_times``
    per secret, each distinct event time with the first and last position carrying
    it; maps "as of time T" to "at position N" for that secret.

Semantics (checked against a replay of the log by the property tests):

* **at position N**: all events with a notification id <= N;
* **as of time T**: all events of the secret whose timestamp is <= T. Event times
  never go backwards within a secret (the domain clamps them), so this is a prefix
  of the secret's events; several events can share a time (a put's events all do),
  and "as of T" includes all of them.
* **SECRET** is a full ARN, a partial ARN (no random suffix) or a name. A name (or
  partial ARN) resolves to the secret that held the name at the cut, or, if none did
  then, to the last secret that held it before the cut (so that asking about a
  deleted secret answers "deleted", not "never existed"). Name-holding times come
  from the ``SecretName`` stream, whose times are monotonic per name. Without a cut
  ("now"), the cut is the projection's position.

The as-of query is index seeks only, never a replay: one seek in
``projection_secret_times``, then one ``max(from_position)`` seek per label the
secret ever used, then one index lookup per labelled version (for creation order):
O(L log n) for L distinct labels (a handful in practice). Listing deprecated
versions too (``include_deprecated``) reads every version the secret ever had.

Time and clocks: per secret (and per name) event times never go backwards, so "as of
T" is exact. Across secrets, times come from the writers' clocks; a name re-used
within the same instant resolves to the later holder (ties break by position).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final

from ledger.arn import parse_secret_arn
from ledger.domain import DETACHED_BY_DELETION, Secret, SecretName
from projections.base import (
    Projection,
    SecretKeys,
    format_instant,
    from_microseconds,
    to_microseconds,
)
from projections.log import Entry
from projections.store import ViewCursor, ViewStore

LABELS_PROJECTION_NAME: Final = "labels"
MOVE_KEYS_PER_POSITION: Final = 64
KNOWN_LABELS_MAX: Final = 1_000_000
# --------------------------------------------------------------------------------------
# The projection
# --------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """One batch's writes: UPDATEs touch rows of earlier batches only and run first;
    rows created in this batch are completed in memory before their INSERT."""

    secrets: dict[int, list[Any]] = field(default_factory=dict)
    secret_deletions: list[tuple[Any, ...]] = field(default_factory=list)
    names: dict[str, list[Any]] = field(default_factory=dict)
    name_releases: list[tuple[Any, ...]] = field(default_factory=list)
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    version_removals: list[tuple[Any, ...]] = field(default_factory=list)
    moves: list[tuple[Any, ...]] = field(default_factory=list)
    labels: dict[tuple[int, str], None] = field(default_factory=dict)
    times: dict[tuple[int, int], list[int]] = field(default_factory=dict)


# Column positions in rows built in memory (see the INSERT statements in _write).
_SECRET_DELETED_POSITION = 5
_NAME_TO_POSITION = 3


class LabelsProjection(Projection):
    """Label map and label history (see the module docstring).

    Storage is laid out for cheap rebuilds: secrets are keyed by ``secret_key`` (the
    position of their ``Secret.Created``); the big tables (label moves, versions) are
    keyed by the position of the event that created the row, so new rows append and
    only small integer indexes take random writes. Label moves are never updated:
    an interval ends where the label's next move begins (the view
    ``projection_label_intervals`` pairs them up, one row per interval).
    """

    name: ClassVar[str] = LABELS_PROJECTION_NAME
    version: ClassVar[int] = 6
    tables: ClassVar[tuple[str, ...]] = (
        "projection_secrets",
        "projection_secret_names",
        "projection_versions",
        "projection_version_removals",
        "projection_label_moves",
        "projection_secret_labels",
        "projection_secret_times",
    )
    views: ClassVar[tuple[str, ...]] = ("projection_label_intervals",)

    def __init__(self) -> None:
        self.secret_keys = SecretKeys("projection_secrets")
        # (secret key, label) pairs known to be in projection_secret_labels: own rows,
        # dropped by forget(); bounded (a miss only costs an INSERT ... DO NOTHING).
        self._known_labels: set[tuple[int, str]] = set()

    def forget(self) -> None:
        self._known_labels.clear()

    def create_statements(self, store: ViewStore) -> list[str]:
        keyed = store.table_options()
        key = store.integer_key_type()
        return [
            "CREATE TABLE IF NOT EXISTS projection_secrets ("
            f"secret_key {key} PRIMARY KEY, secret_id TEXT NOT NULL UNIQUE, "
            "arn TEXT NOT NULL UNIQUE, name TEXT NOT NULL, created_time BIGINT NOT NULL, "
            "deleted_position BIGINT, deleted_time BIGINT)",
            "CREATE TABLE IF NOT EXISTS projection_secret_names ("
            "name TEXT NOT NULL, from_position BIGINT NOT NULL, from_time BIGINT NOT NULL, "
            "to_position BIGINT, to_time BIGINT, secret_id TEXT NOT NULL, "
            f"PRIMARY KEY (name, from_position)){keyed}",
            "CREATE INDEX IF NOT EXISTS projection_secret_names_by_secret "
            "ON projection_secret_names (secret_id)",
            "CREATE TABLE IF NOT EXISTS projection_versions ("
            f"created_position {key} PRIMARY KEY, secret_key BIGINT NOT NULL, "
            "version_id TEXT NOT NULL, created_time BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS projection_version_removals ("
            f"removed_position {key} PRIMARY KEY, secret_key BIGINT NOT NULL, "
            "version_id TEXT NOT NULL, removed_time BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS projection_label_moves ("
            f"move_key {key} PRIMARY KEY, secret_key BIGINT NOT NULL, label TEXT NOT NULL, "
            "version_id TEXT, event_time BIGINT NOT NULL, principal_arn TEXT NOT NULL, "
            "request_id TEXT NOT NULL, operation TEXT NOT NULL, reason TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS projection_label_moves_by_label "
            "ON projection_label_moves (secret_key, label, move_key)",
            "CREATE TABLE IF NOT EXISTS projection_secret_labels ("
            "secret_key BIGINT NOT NULL, label TEXT NOT NULL, "
            f"PRIMARY KEY (secret_key, label)){keyed}",
            "CREATE TABLE IF NOT EXISTS projection_secret_times ("
            "secret_key BIGINT NOT NULL, event_time BIGINT NOT NULL, "
            "first_position BIGINT NOT NULL, last_position BIGINT NOT NULL, "
            f"PRIMARY KEY (secret_key, event_time)){keyed}",
            intervals_view(store),
        ]

    def deferred_statements(self, store: ViewStore) -> list[str]:
        return [
            "CREATE UNIQUE INDEX IF NOT EXISTS projection_versions_by_id "
            "ON projection_versions (secret_key, version_id)",
            "CREATE UNIQUE INDEX IF NOT EXISTS projection_version_removals_by_id "
            "ON projection_version_removals (secret_key, version_id)",
            "CREATE INDEX IF NOT EXISTS projection_secret_names_by_time "
            "ON projection_secret_names (name, from_time, from_position)",
            "CREATE INDEX IF NOT EXISTS projection_secret_times_by_position "
            "ON projection_secret_times (secret_key, first_position)",
        ]

    def process(self, cursor: ViewCursor, entries: Sequence[Entry]) -> None:
        pending = _Pending()
        self.dispatch(cursor, pending, entries)
        self._write(cursor, pending)

    # Handlers: one per event type; every Secret event also indexes its time.

    def _secret_time(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Any
    ) -> tuple[int, int]:
        secret_key = self.secret_keys.key(cursor, event.originator_id)
        event_time = to_microseconds(event.timestamp)
        span = pending.times.get((secret_key, event_time))
        if span is None:
            pending.times[(secret_key, event_time)] = [position, position]
        else:
            span[1] = position
        return secret_key, event_time

    def _on_created(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.Created
    ) -> None:
        self.secret_keys.remember(event.originator_id, position)
        _, event_time = self._secret_time(cursor, pending, position, event)
        pending.secrets[position] = [
            position,
            event.originator_id.hex,
            event.arn,
            event.name,
            event_time,
            None,
            None,
        ]

    def _on_version_created(
        self,
        cursor: ViewCursor,
        pending: _Pending,
        position: int,
        event: Secret.VersionCreated | Secret.PendingVersionStaged,
    ) -> None:
        """A version begins: with its value, or staged by a rotation (filled later)."""
        secret_key, event_time = self._secret_time(cursor, pending, position, event)
        pending.versions.append((position, secret_key, event.version_id, event_time))

    def _on_version_removed(
        self,
        cursor: ViewCursor,
        pending: _Pending,
        position: int,
        event: Secret.VersionRemoved | Secret.VersionDestroyed,
    ) -> None:
        """The version leaves the secret's versions (retention, or destruction)."""
        secret_key, event_time = self._secret_time(cursor, pending, position, event)
        pending.version_removals.append((position, secret_key, event.version_id, event_time))

    def _on_label_moved(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.LabelMoved
    ) -> None:
        secret_key, event_time = self._secret_time(cursor, pending, position, event)
        request = event.request
        pending.moves.append(
            (
                position * MOVE_KEYS_PER_POSITION,
                secret_key,
                event.label,
                event.to_version_id,
                event_time,
                request["principal_arn"],
                request["request_id"],
                request["operation"],
                event.reason,
            )
        )
        key = (secret_key, event.label)
        if key not in self._known_labels:
            if len(self._known_labels) >= KNOWN_LABELS_MAX:
                self._known_labels.clear()
            self._known_labels.add(key)
            pending.labels[key] = None

    def _on_other(self, cursor: ViewCursor, pending: _Pending, position: int, event: Any) -> None:
        self._secret_time(cursor, pending, position, event)

    def _on_deleted(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.Deleted
    ) -> None:
        """The secret is gone. Its labels came off in the events before (D-1), except
        in a v1 log (D-2: see :meth:`_detach_legacy`)."""
        secret_key, event_time = self._secret_time(cursor, pending, position, event)
        row = pending.secrets.get(secret_key)
        if row is not None:
            row[_SECRET_DELETED_POSITION:] = (position, event_time)
        else:
            pending.secret_deletions.append((position, event_time, secret_key))
        if not event.labels_detached:
            self._detach_legacy(cursor, pending, position, event, secret_key, event_time)

    def _detach_legacy(
        self,
        cursor: ViewCursor,
        pending: _Pending,
        position: int,
        event: Secret.Deleted,
        secret_key: int,
        event_time: int,
    ) -> None:
        """D-2, for a ``Deleted`` written by v1 (upcast with ``labels_detached`` False):
        every label still attached leaves its version (one move per label, in label
        order, all at the deletion's position), reason detached-by-deletion."""
        holders = dict(cursor.execute(LATEST_LABELS, (secret_key,)).fetchall())
        for move in pending.moves:
            if move[1] == secret_key:
                holders[move[2]] = move[3]
        attached = sorted(label for label, version_id in holders.items() if version_id)
        assert len(attached) < MOVE_KEYS_PER_POSITION, "labels per secret are bounded"
        request = event.request
        for ordinal, label in enumerate(attached):
            pending.moves.append(
                (
                    position * MOVE_KEYS_PER_POSITION + ordinal,
                    secret_key,
                    label,
                    None,
                    event_time,
                    request["principal_arn"],
                    request["request_id"],
                    request["operation"],
                    DETACHED_BY_DELETION,
                )
            )

    def _on_name_claimed(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: SecretName.Claimed
    ) -> None:
        secret_id = event.secret_id.hex
        pending.names[secret_id] = [
            event.name,
            position,
            to_microseconds(event.timestamp),
            None,
            None,
            secret_id,
        ]

    def _on_name_released(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: SecretName.Released
    ) -> None:
        secret_id = event.secret_id.hex
        event_time = to_microseconds(event.timestamp)
        row = pending.names.get(secret_id)
        if row is not None:
            row[_NAME_TO_POSITION : _NAME_TO_POSITION + 2] = (position, event_time)
        else:
            pending.name_releases.append((position, event_time, secret_id))

    _handlers: ClassVar[dict[type, Any]] = {
        Secret.Created: _on_created,
        Secret.VersionCreated: _on_version_created,
        Secret.VersionRemoved: _on_version_removed,
        Secret.VersionDestroyed: _on_version_removed,
        Secret.LabelMoved: _on_label_moved,
        Secret.PendingVersionStaged: _on_version_created,
        Secret.MetadataUpdated: _on_other,
        Secret.VersionFilled: _on_other,
        Secret.RotationConfigured: _on_other,
        Secret.RotationDisabled: _on_other,
        Secret.RotationScheduled: _on_other,
        Secret.RotationStarted: _on_other,
        Secret.RotationFailed: _on_other,
        Secret.RotationSucceeded: _on_other,
        Secret.DeletionScheduled: _on_other,
        Secret.Restored: _on_other,
        Secret.Deleted: _on_deleted,
        Secret.Tagged: _on_other,
        Secret.Untagged: _on_other,
        Secret.ResourcePolicyPut: _on_other,
        Secret.ResourcePolicyDeleted: _on_other,
        SecretName.Claimed: _on_name_claimed,
        SecretName.Released: _on_name_released,
    }

    def _write(self, cursor: ViewCursor, pending: _Pending) -> None:
        cursor.executemany(
            "UPDATE projection_secrets SET deleted_position = ?, deleted_time = ? "
            "WHERE secret_key = ?",
            pending.secret_deletions,
        )
        cursor.executemany(
            "UPDATE projection_secret_names SET to_position = ?, to_time = ? "
            "WHERE secret_id = ? AND to_position IS NULL",
            pending.name_releases,
        )
        cursor.executemany(
            "INSERT INTO projection_secrets VALUES (?, ?, ?, ?, ?, ?, ?)",
            list(pending.secrets.values()),
        )
        cursor.executemany(
            "INSERT INTO projection_secret_names VALUES (?, ?, ?, ?, ?, ?)",
            list(pending.names.values()),
        )
        cursor.executemany("INSERT INTO projection_versions VALUES (?, ?, ?, ?)", pending.versions)
        cursor.executemany(
            "INSERT INTO projection_version_removals VALUES (?, ?, ?, ?)", pending.version_removals
        )
        cursor.executemany(
            "INSERT INTO projection_label_moves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", pending.moves
        )
        cursor.executemany(
            "INSERT INTO projection_secret_labels VALUES (?, ?) ON CONFLICT DO NOTHING",
            list(pending.labels),
        )
        cursor.executemany(
            "INSERT INTO projection_secret_times VALUES (?, ?, ?, ?) "
            "ON CONFLICT (secret_key, event_time) DO UPDATE "
            "SET last_position = excluded.last_position",
            [
                (secret_key, event_time, first, last)
                for (secret_key, event_time), (first, last) in pending.times.items()
            ],
        )


# --------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------


class SecretNotFoundError(LookupError):
    """No secret matches the reference at the requested cut of the log."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SecretRecord:
    """A secret as the label projection knows it (``secret_key``: the position of its
    ``Secret.Created``, so also its creation position)."""

    secret_key: int
    secret_id: str
    arn: str
    name: str
    created_time: datetime
    deleted_position: int | None
    deleted_time: datetime | None


@dataclass(frozen=True)
class VersionCreation:
    """Where a version was created: its secret (``secret_id``: 32 hex digits, as the
    projection stores it), and the log position (notification id) of its
    ``VersionCreated`` event."""

    secret_id: str
    arn: str
    version_id: str
    position: int


@dataclass(frozen=True)
class LabelMap:
    """The labels of one secret at a cut of the log.

    ``labels`` maps each attached label to its version; ``versions`` maps version ids
    (in creation order) to their labels, sorted; deprecated versions (no label) are
    included only when asked for. ``position`` is the cut (for an as-of-time query:
    the position of the secret's last event at or before ``as_of``). ``as_of`` is the
    requested time, or the time of the secret's last event at or before the cut.
    """

    arn: str
    name: str
    position: int
    as_of: datetime
    labels: dict[str, str]
    versions: dict[str, tuple[str, ...]]
    deleted: bool

    def version_ids_to_stages(self) -> dict[str, list[str]]:
        """As DescribeSecret shows it: labelled versions only, in creation order."""
        return {version_id: list(labels) for version_id, labels in self.versions.items() if labels}

    def deprecated_version_ids(self) -> list[str]:
        return [version_id for version_id, labels in self.versions.items() if not labels]

    def to_json(self, *, include_deprecated: bool = False) -> dict[str, Any]:
        shaped: dict[str, Any] = {
            "ARN": self.arn,
            "Name": self.name,
            "AsOf": format_instant(self.as_of),
            "Position": self.position,
            "VersionIdsToStages": self.version_ids_to_stages(),
        }
        if include_deprecated:
            shaped["DeprecatedVersionIds"] = self.deprecated_version_ids()
        if self.deleted:
            shaped["Deleted"] = True
        return shaped


@dataclass(frozen=True)
class LabelInterval:
    """One row of the label history: ``label`` sat on ``version_id`` during
    ``[from_position, to_position)`` (``to_position`` None: still there)."""

    secret_arn: str
    label: str
    version_id: str
    from_position: int
    from_time: datetime
    from_principal: str
    from_request_id: str
    from_operation: str
    to_position: int | None
    to_time: datetime | None
    to_principal: str | None
    to_request_id: str | None
    to_operation: str | None


@dataclass(frozen=True)
class LabelMove:
    """A label attached (``from_version_id`` None), moved, or detached
    (``to_version_id`` None) by one request, and why (docs/events.md R-1 to R-8)."""

    position: int
    event_time: datetime
    label: str
    from_version_id: str | None
    to_version_id: str | None
    principal_arn: str
    request_id: str
    operation: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "Position": self.position,
            "Time": format_instant(self.event_time),
            "Label": self.label,
            "FromVersionId": self.from_version_id,
            "ToVersionId": self.to_version_id,
            "Principal": self.principal_arn,
            "RequestId": self.request_id,
            "Operation": self.operation,
            "Reason": self.reason,
        }


@dataclass(frozen=True)
class LabelChange:
    """A label whose version differs between two instants (None: not attached)."""

    label: str
    before_version_id: str | None
    after_version_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "Label": self.label,
            "Before": self.before_version_id,
            "After": self.after_version_id,
        }


@dataclass(frozen=True)
class Cut:
    """Where to look: at a log position, or as of a time (exactly one)."""

    position: int | None = None
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        assert (self.position is None) != (self.as_of is None), "one of position or as_of"
        assert self.position is None or self.position >= 0, "positions are not negative"
        assert self.as_of is None or self.as_of.tzinfo is not None, "times are timezone-aware"

    def describe(self) -> str:
        if self.as_of is not None:
            return f"as of {format_instant(self.as_of)}"
        return f"at position {self.position}"


SECRET_COLUMNS: Final = (
    "secret_key, secret_id, arn, name, created_time, deleted_position, deleted_time"
)


# The as-of statements: each is an index seek (tests/test_projections_labels.py checks
# SQLite's plans for them).
NAME_HOLDER_AS_OF: Final = (
    "SELECT secret_id FROM projection_secret_names WHERE name = ? AND from_time <= ? "
    "ORDER BY from_time DESC, from_position DESC LIMIT 1"
)
NAME_HOLDER_AT: Final = (
    "SELECT secret_id FROM projection_secret_names "
    "WHERE name = ? AND from_position <= ? ORDER BY from_position DESC LIMIT 1"
)
SECRET_POSITION_AS_OF: Final = (
    "SELECT last_position FROM projection_secret_times "
    "WHERE secret_key = ? AND event_time <= ? ORDER BY event_time DESC LIMIT 1"
)
SECRET_TIME_AT: Final = (
    "SELECT event_time FROM projection_secret_times "
    "WHERE secret_key = ? AND first_position <= ? ORDER BY first_position DESC LIMIT 1"
)
LABELS_BEFORE: Final = (
    "SELECT m.label, m.version_id "
    "FROM projection_secret_labels l JOIN projection_label_moves m ON m.move_key = "
    "(SELECT max(j.move_key) FROM projection_label_moves j "
    "WHERE j.secret_key = l.secret_key AND j.label = l.label AND j.move_key < ?) "
    "WHERE l.secret_key = ?"
)
LATEST_LABELS: Final = (
    "SELECT m.label, m.version_id "
    "FROM projection_secret_labels l JOIN projection_label_moves m ON m.move_key = "
    "(SELECT max(j.move_key) FROM projection_label_moves j "
    "WHERE j.secret_key = l.secret_key AND j.label = l.label) "
    "WHERE l.secret_key = ?"
)
VERSIONS_AT: Final = (
    "SELECT v.version_id, v.created_position FROM projection_versions v "
    "WHERE v.secret_key = ? AND v.created_position <= ? AND NOT EXISTS "
    "(SELECT 1 FROM projection_version_removals r WHERE r.secret_key = v.secret_key "
    "AND r.version_id = v.version_id AND r.removed_position <= ?)"
)
VERSION_CREATED_AT: Final = (
    "SELECT created_position FROM projection_versions WHERE secret_key = ? AND version_id = ?"
)


def _secret_record(row: tuple[Any, ...]) -> SecretRecord:
    return SecretRecord(
        secret_key=row[0],
        secret_id=row[1],
        arn=row[2],
        name=row[3],
        created_time=from_microseconds(row[4]),
        deleted_position=row[5],
        deleted_time=None if row[6] is None else from_microseconds(row[6]),
    )


class LabelQueries:
    """Questions to the label projection. Each opens one read transaction; callers
    bring the projection up to date first (:meth:`ReadModel.catch_up`)."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store

    def label_map(
        self,
        secret: str,
        *,
        as_of: datetime | None = None,
        position: int | None = None,
        include_deprecated: bool = False,
    ) -> LabelMap:
        """The labels of ``secret`` as of a time, at a position, or now (neither)."""
        with self.store.read() as cursor:
            cut = self._cut(cursor, as_of, position)
            record = self._resolve(cursor, secret, cut)
            return self._label_map(cursor, record, cut, include_deprecated)

    def intervals(self, secret: str, *, label: str | None = None) -> list[LabelInterval]:
        """The raw label history of a secret (resolved now), by label then position."""
        with self.store.read() as cursor:
            record = self._resolve(cursor, secret, self._cut(cursor, None, None))
            return list(self._intervals(cursor, record, label))

    def history(
        self,
        secret: str,
        *,
        label: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LabelMove]:
        """Every label move of a secret, in log order, optionally for one label and a
        time range (inclusive). A name resolves as of ``until`` (or now). Deletion
        shows as every label leaving its version, by the deleting request."""
        with self.store.read() as cursor:
            record = self._resolve(cursor, secret, self._cut(cursor, until, None))
            moves = sorted(
                self._moves(cursor, record, label), key=lambda move: (move.position, move.label)
            )
        return [
            move
            for move in moves
            if (since is None or move.event_time >= since)
            and (until is None or move.event_time <= until)
        ]

    def diff(self, secret: str, first: datetime, second: datetime) -> list[LabelChange]:
        """Labels whose version differs between two instants, by label. A name
        resolves as of ``second`` (else as of ``first``)."""
        with self.store.read() as cursor:
            try:
                record = self._resolve(cursor, secret, Cut(as_of=second))
            except SecretNotFoundError:
                record = self._resolve(cursor, secret, Cut(as_of=first))
            before = self._labels_or_none(cursor, record, Cut(as_of=first))
            after = self._labels_or_none(cursor, record, Cut(as_of=second))
        return [
            LabelChange(label, before.get(label), after.get(label))
            for label in sorted(set(before) | set(after))
            if before.get(label) != after.get(label)
        ]

    def version_creation(self, secret: str, version_id: str) -> VersionCreation:
        """The position of the ``VersionCreated`` of ``version_id`` of ``secret``
        (resolved now): one index seek. Removed and deleted secrets' versions too."""
        with self.store.read() as cursor:
            record = self._resolve(cursor, secret, self._cut(cursor, None, None))
            row = cursor.execute(VERSION_CREATED_AT, (record.secret_key, version_id)).fetchone()
        if row is None:
            raise SecretNotFoundError(
                f"Secrets Manager can't find the specified secret value for VersionId: {version_id}"
            )
        return VersionCreation(record.secret_id, record.arn, version_id, row[0])

    # Internals (all inside one read transaction)

    def _tracked_position(self, cursor: ViewCursor) -> int:
        row = cursor.execute(
            "SELECT position FROM projection_tracking WHERE name = ?", (LABELS_PROJECTION_NAME,)
        ).fetchone()
        if row is None:
            msg = "the label projection has not been built: run `secretledger replay`"
            raise RuntimeError(msg)
        tracked: int = row[0]
        return tracked

    def _cut(self, cursor: ViewCursor, as_of: datetime | None, position: int | None) -> Cut:
        if as_of is not None and position is not None:
            msg = "ask as of a time or at a position, not both"
            raise ValueError(msg)
        tracked = self._tracked_position(cursor)
        if as_of is not None:
            return Cut(as_of=as_of)
        if position is not None:
            return Cut(position=min(position, tracked))
        return Cut(position=tracked)

    def _resolve(self, cursor: ViewCursor, secret: str, cut: Cut) -> SecretRecord:
        name = secret
        prefix = ""
        if secret.startswith("arn:"):
            parsed = parse_secret_arn(secret)
            if parsed is None:
                raise SecretNotFoundError(f"{secret!r} is not a Secrets Manager secret ARN.")
            row = cursor.execute(
                f"SELECT {SECRET_COLUMNS} FROM projection_secrets WHERE arn = ?", (secret,)
            ).fetchone()
            if row is not None:
                return _secret_record(row)
            name = parsed.resource
            prefix = parsed.prefix
        if cut.as_of is not None:
            holder = cursor.execute(
                NAME_HOLDER_AS_OF, (name, to_microseconds(cut.as_of))
            ).fetchone()
        else:
            holder = cursor.execute(NAME_HOLDER_AT, (name, cut.position)).fetchone()
        row = None
        if holder is not None:
            row = cursor.execute(
                f"SELECT {SECRET_COLUMNS} FROM projection_secrets WHERE secret_id = ?", holder
            ).fetchone()
        if row is None or not row[2].startswith(prefix):
            raise SecretNotFoundError(f"No secret named {secret!r} existed {cut.describe()}.")
        return _secret_record(row)

    def _secret_cut(
        self, cursor: ViewCursor, record: SecretRecord, cut: Cut
    ) -> tuple[int, datetime]:
        """The position and time of the secret's state at the cut; raises if the secret
        did not exist yet."""
        if cut.as_of is not None:
            row = cursor.execute(
                SECRET_POSITION_AS_OF, (record.secret_key, to_microseconds(cut.as_of))
            ).fetchone()
            if row is None:
                raise SecretNotFoundError(f"Secret {record.arn} did not exist {cut.describe()}.")
            return row[0], cut.as_of
        assert cut.position is not None
        row = cursor.execute(SECRET_TIME_AT, (record.secret_key, cut.position)).fetchone()
        if row is None:
            raise SecretNotFoundError(f"Secret {record.arn} did not exist {cut.describe()}.")
        return cut.position, from_microseconds(row[0])

    def _labels_at(self, cursor: ViewCursor, secret_key: int, position: int) -> dict[str, str]:
        """Labels attached after the events up to ``position`` (its moves included)."""
        before = (position + 1) * MOVE_KEYS_PER_POSITION
        rows = cursor.execute(LABELS_BEFORE, (before, secret_key)).fetchall()
        return {label: version_id for label, version_id in rows if version_id is not None}

    def _labels_or_none(self, cursor: ViewCursor, record: SecretRecord, cut: Cut) -> dict[str, str]:
        try:
            position, _ = self._secret_cut(cursor, record, cut)
        except SecretNotFoundError:
            return {}
        return self._labels_at(cursor, record.secret_key, position)

    def _label_map(
        self, cursor: ViewCursor, record: SecretRecord, cut: Cut, include_deprecated: bool
    ) -> LabelMap:
        position, as_of = self._secret_cut(cursor, record, cut)
        deleted = record.deleted_position is not None and record.deleted_position <= position
        labels = {} if deleted else self._labels_at(cursor, record.secret_key, position)
        by_version: dict[str, list[str]] = defaultdict(list)
        for label, version_id in labels.items():
            by_version[version_id].append(label)
        if include_deprecated and not deleted:
            rows = cursor.execute(VERSIONS_AT, (record.secret_key, position, position)).fetchall()
            created = [(created_position, version_id) for version_id, created_position in rows]
        else:
            created = [
                (self._created_position(cursor, record.secret_key, version_id), version_id)
                for version_id in by_version
            ]
        versions = {
            version_id: tuple(sorted(by_version.get(version_id, ())))
            for _, version_id in sorted(created)
        }
        return LabelMap(
            arn=record.arn,
            name=record.name,
            position=position,
            as_of=as_of,
            labels=dict(sorted(labels.items())),
            versions=versions,
            deleted=deleted,
        )

    def _created_position(self, cursor: ViewCursor, secret_key: int, version_id: str) -> int:
        row = cursor.execute(VERSION_CREATED_AT, (secret_key, version_id)).fetchone()
        assert row is not None, "a label sits on a version the projection knows"
        created_position: int = row[0]
        return created_position

    def _moves(
        self, cursor: ViewCursor, record: SecretRecord, label: str | None
    ) -> list[LabelMove]:
        """The secret's label moves, by label then position, with where each came from."""
        statement = (
            "SELECT move_key, label, version_id, event_time, principal_arn, request_id, "
            "operation, reason FROM projection_label_moves WHERE secret_key = ?"
        )
        parameters: list[Any] = [record.secret_key]
        if label is not None:
            statement += " AND label = ?"
            parameters.append(label)
        statement += " ORDER BY label, move_key"
        moves: list[LabelMove] = []
        for row in cursor.execute(statement, parameters).fetchall():
            previous = moves[-1] if moves and moves[-1].label == row[1] else None
            moves.append(
                LabelMove(
                    position=row[0] // MOVE_KEYS_PER_POSITION,
                    event_time=from_microseconds(row[3]),
                    label=row[1],
                    from_version_id=None if previous is None else previous.to_version_id,
                    to_version_id=row[2],
                    principal_arn=row[4],
                    request_id=row[5],
                    operation=row[6],
                    reason=row[7],
                )
            )
        return moves

    def _intervals(
        self, cursor: ViewCursor, record: SecretRecord, label: str | None
    ) -> Iterator[LabelInterval]:
        moves = self._moves(cursor, record, label)
        for move, following in zip(moves, [*moves[1:], None], strict=True):
            if move.to_version_id is None:
                continue
            ends = following is not None and following.label == move.label
            yield LabelInterval(
                secret_arn=record.arn,
                label=move.label,
                version_id=move.to_version_id,
                from_position=move.position,
                from_time=move.event_time,
                from_principal=move.principal_arn,
                from_request_id=move.request_id,
                from_operation=move.operation,
                to_position=following.position if following and ends else None,
                to_time=following.event_time if following and ends else None,
                to_principal=following.principal_arn if following and ends else None,
                to_request_id=following.request_id if following and ends else None,
                to_operation=following.operation if following and ends else None,
            )


def intervals_view(store: ViewStore) -> str:
    """The label history as intervals, one row per interval during which a label sat
    on a version, ``[from_position, to_position)``: each move paired with the label's
    next move (none: still there)."""
    create = "CREATE VIEW IF NOT EXISTS" if store.dialect == "sqlite" else "CREATE OR REPLACE VIEW"
    follows = "OVER (PARTITION BY secret_key, label ORDER BY move_key)"
    return (
        f"{create} projection_label_intervals AS SELECT s.arn AS secret_arn, m.label, "
        "m.version_id, m.from_position, m.from_time, m.from_principal, m.from_request_id, "
        "m.to_position, m.to_time, m.to_principal, m.to_request_id FROM ("
        f"SELECT secret_key, label, version_id, move_key / {MOVE_KEYS_PER_POSITION} "
        "AS from_position, event_time AS from_time, principal_arn AS from_principal, "
        f"request_id AS from_request_id, LEAD(move_key) {follows} / "
        f"{MOVE_KEYS_PER_POSITION} AS to_position, LEAD(event_time) {follows} AS to_time, "
        f"LEAD(principal_arn) {follows} AS to_principal, "
        f"LEAD(request_id) {follows} AS to_request_id FROM projection_label_moves) m "
        "JOIN projection_secrets s ON s.secret_key = m.secret_key "
        "WHERE m.version_id IS NOT NULL"
    )
