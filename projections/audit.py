"""The audit projection: one CloudTrail-style record per API call, plus service events.

Which events make which records (shapes: :mod:`projections.cloudtrail`):

* A successful mutation's events all carry its request context; the first event of
  the request on a ``Secret`` stream makes the one ``AwsApiCall`` record (eventTime:
  that event's time). ``SecretName`` events make no record.
* ``ApiCall.Recorded`` (reads, idempotent replays, no-op mutations, failures,
  denials) makes one ``AwsApiCall`` record each, with errorCode/errorMessage for
  failures.
* Service events (``AwsServiceEvent``), one per version, ordered by version creation:
  ``StartSecretVersionDelete`` when a deletion is scheduled, ``CancelSecretVersionDelete``
  when it is restored, ``EndSecretVersionDelete`` when versions really go (a forced
  delete, the service's purge after the recovery window, retention removing a
  deprecated version: ``VersionRemoved``, or a version destroyed on request:
  ``VersionDestroyed`` with reason ``requested``, whose ``DestroySecretVersion`` call
  makes its ``AwsApiCall`` record like any mutation, from the request's first event:
  the ``LabelMoved`` of a label the destruction took off, reason
  ``detached-by-destroy`` (R-6), or else the ``VersionDestroyed``). A deletion (D-1)
  writes its label detachments (``detached-by-deletion``), then one
  ``VersionDestroyed`` per live version (reason ``forced-deletion`` or ``purged``),
  then ``Deleted``: only ``Deleted`` makes records, the call's (with its deletion
  date) and the versions' ends (the versions the secret had when the request
  began). A put that takes AWSPENDING off the old current version (rule P6: a
  ``LabelMoved`` with reason ``pending-dropped``, R-4) makes a ``RotationAbandoned``
  for that version; so does a put that abandons a rotation in progress (RO-10).
  ``RotationStarted``, ``RotationSucceeded`` and ``RotationFailed`` (with
  ``errorMessage``) come from the events of those names (RO-7). The
  service's own purge (principal ``secretsmanager.amazonaws.com``) makes no
  ``AwsApiCall`` record.

Storage: a record is stored as its fields, one row of ``projection_audit_records``:
the ones searched by in columns (time, event name, principal, secret, error code,
account, region), the others (request id, allow-listed request parameters, user
agent, served version, …) in one msgpack blob; it is rendered into its CloudTrail
JSON when read or exported, by one deterministic function (:func:`render`), so that
rebuilding writes a fraction of the bytes. Rows are keyed by ``record_key = position * 65536 +
sequence``: the log position of the event that made the record, then 0 for the API
call record and 1, 2, … for service records; rebuilding therefore appends in key
order. The API call record of a request is made by its first event: a request's
events are contiguous in the log (one transaction), so the projection keeps the id of
the last request it recorded (``projection_audit_state``, written with the rows and
the position) and skips the request's later events.

Secrets are keyed by ``secret_key``, the position of their ``Secret.Created``; a call
that resolved no secret keeps the ``secretId``/``name`` the caller sent
(``secret_reference``), so that both can be searched.

What each request did, event by event (for ``secretledger forensics``, rules F-1 to
F-8 of docs/forensics.md): one row of ``projection_audit_events`` per ``Secret``
event, keyed by its position, with what the event states (the version it created,
removed or destroyed; the label it moved, from and to which version, and why) and
the request context it carries (principal, access key, source IP, user agent,
request id, operation). ``projection_audit_rotations`` adds, by the same position,
what a ``RotationConfigured`` (function ARN, rules), ``RotationScheduled`` (window
start, next rotation date) or ``PendingVersionStaged`` (runner) states, for the
report's rotation configuration (CR-15). A record is made by a ``Secret`` event
exactly when its position has such a row; the records of ``ApiCall.Recorded`` are all the others.

No secret value can reach a record: events carry values only as ciphertext in
``VersionCreated``, which this projection reads for the version id alone, and
request parameters are allow-listed on the write side.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Final, NamedTuple
from uuid import UUID

from ledger.arn import parse_secret_arn
from ledger.domain import (
    DESTROYED_BY_FORCED_DELETION,
    DESTROYED_BY_PURGE,
    DESTROYED_ON_REQUEST,
    DETACHED_BY_DELETION,
    PENDING_DROPPED,
    SERVICE_PRINCIPAL,
    ApiCall,
    Secret,
)
from ledger.storage import MsgpackTranscoder
from projections.base import Projection, from_microseconds, to_microseconds
from projections.cloudtrail import (
    API_CALL,
    RECORDS_PER_FILE_MAX,
    SERVICE_EVENT,
    LogFileGroup,
    LogFileWriter,
    api_call_record,
    format_event_time,
    record_text,
    service_event_record,
)
from projections.log import Entry, LogReader
from projections.store import ViewCursor, ViewStore

AUDIT_PROJECTION_NAME: Final = "audit"
MICROSECONDS_PER_HOUR: Final = 3_600_000_000
SECRET_CACHE_SIZE_MAX: Final = 100_000
SEQUENCES_PER_POSITION: Final = 1 << 16
RECORDED_REQUEST_STATE: Final = "recorded_request_id"
QUERY_PAGE_SIZE: Final = 1_000
TRANSCODER: Final = MsgpackTranscoder()
# Mutations whose answer is an empty body: their records have no responseElements.
EMPTY_ANSWER_OPERATIONS: Final = frozenset({"TagResource", "UntagResource"})
# Why a secret was deleted, as a SecretDeleted row of projection_audit_events says (F-2).


@dataclass(frozen=True)
class _KnownSecret:
    secret_key: int
    arn: str
    name: str


@dataclass
class _Pending:
    recorded_request_id: str
    records: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    rotations: list[tuple[Any, ...]] = field(default_factory=list)
    extra_resources: list[tuple[int, int]] = field(default_factory=list)
    secrets: dict[UUID, _KnownSecret] = field(default_factory=dict)


class AuditProjection(Projection):
    """CloudTrail-style records (see the module docstring)."""

    name: ClassVar[str] = AUDIT_PROJECTION_NAME
    version: ClassVar[int] = 9
    tables: ClassVar[tuple[str, ...]] = (
        "projection_audit_records",
        "projection_audit_events",
        "projection_audit_rotations",
        "projection_audit_resources",
        "projection_audit_secrets",
        "projection_audit_state",
    )
    retired: ClassVar[tuple[str, ...]] = ("projection_audit_versions",)

    def __init__(self, log: LogReader) -> None:
        self.log = log
        # Secret id (as an int) -> key, ARN and name; ARN -> key: facts of the log that
        # never change, so safe to keep across batches and rolled-back transactions.
        self._by_id: OrderedDict[int, _KnownSecret] = OrderedDict()
        self._by_arn: OrderedDict[str, int] = OrderedDict()
        # The request id in projection_audit_state (own rows: dropped by forget()).
        self._recorded_request_id: str | None = None

    def create_statements(self, store: ViewStore) -> list[str]:
        keyed = store.table_options()
        key = store.integer_key_type()
        return [
            "CREATE TABLE IF NOT EXISTS projection_audit_records ("
            f"record_key {key} PRIMARY KEY, event_time BIGINT NOT NULL, "
            "event_hour BIGINT NOT NULL, event_name TEXT NOT NULL, "
            "principal_arn TEXT NOT NULL, secret_key BIGINT, secret_reference TEXT, "
            "error_code TEXT, account_id TEXT NOT NULL, region TEXT NOT NULL, "
            f"details {store.blob_type()} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS projection_audit_events ("
            f"position {key} PRIMARY KEY, secret_key BIGINT NOT NULL, "
            "event_time BIGINT NOT NULL, event_name TEXT NOT NULL, version_id TEXT, "
            "label TEXT, from_version_id TEXT, to_version_id TEXT, reason TEXT, "
            "principal_arn TEXT NOT NULL, access_key_id TEXT NOT NULL, "
            "source_ip TEXT NOT NULL, user_agent TEXT NOT NULL, request_id TEXT NOT NULL, "
            "operation TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS projection_audit_rotations ("
            f"position {key} PRIMARY KEY, rotation_lambda_arn TEXT, rotation_rules TEXT, "
            "window_start BIGINT, next_rotation_date BIGINT, runner TEXT)",
            "CREATE TABLE IF NOT EXISTS projection_audit_resources ("
            "secret_key BIGINT NOT NULL, record_key BIGINT NOT NULL, "
            f"PRIMARY KEY (secret_key, record_key)){keyed}",
            "CREATE TABLE IF NOT EXISTS projection_audit_secrets ("
            f"secret_key {key} PRIMARY KEY, secret_id TEXT NOT NULL UNIQUE, "
            "arn TEXT NOT NULL UNIQUE, name TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS projection_audit_state ("
            f"name TEXT PRIMARY KEY, value TEXT NOT NULL){keyed}",
            # Kept as rows arrive: their entries append (record keys increase), so
            # they cost little; the indexes in deferred_statements take random writes.
            "CREATE INDEX IF NOT EXISTS projection_audit_records_by_reference "
            "ON projection_audit_records (secret_reference, record_key) "
            "WHERE secret_reference IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS projection_audit_records_by_principal "
            "ON projection_audit_records (principal_arn, record_key)",
            "CREATE INDEX IF NOT EXISTS projection_audit_records_by_hour "
            "ON projection_audit_records (event_hour, record_key)",
        ]

    def forget(self) -> None:
        """Secret keys and ARNs are facts of the log and stay; the recorded request id
        is read again."""
        self._recorded_request_id = None

    def deferred_statements(self, store: ViewStore) -> list[str]:
        return [
            "CREATE INDEX IF NOT EXISTS projection_audit_records_by_secret "
            "ON projection_audit_records (secret_key, record_key)",
            "CREATE INDEX IF NOT EXISTS projection_audit_secrets_by_name "
            "ON projection_audit_secrets (name)",
            "CREATE INDEX IF NOT EXISTS projection_audit_events_by_secret "
            "ON projection_audit_events (secret_key, position)",
            "CREATE INDEX IF NOT EXISTS projection_audit_events_by_principal "
            "ON projection_audit_events (principal_arn, position)",
        ]

    def process(self, cursor: ViewCursor, entries: Sequence[Entry]) -> None:
        if self._recorded_request_id is None:
            row = cursor.execute(
                "SELECT value FROM projection_audit_state WHERE name = ?",
                (RECORDED_REQUEST_STATE,),
            ).fetchone()
            self._recorded_request_id = row[0] if row is not None else ""
        pending = _Pending(recorded_request_id=self._recorded_request_id)
        self.dispatch(cursor, pending, entries)
        for position, event in entries:
            # F-1: an access (LA-2 of docs/api.md) is shown by the read's own call row.
            if isinstance(event, Secret.Event) and not isinstance(event, Secret.Accessed):
                self._event_row(cursor, pending, position, event)
        self._write(cursor, pending)
        self._recorded_request_id = pending.recorded_request_id

    # Secrets and versions known to this projection

    def _remember(self, secret_id: UUID, known: _KnownSecret) -> None:
        self._by_id[secret_id.int] = known
        self._by_arn[known.arn] = known.secret_key
        if len(self._by_id) > SECRET_CACHE_SIZE_MAX:
            self._by_id.popitem(last=False)
        if len(self._by_arn) > SECRET_CACHE_SIZE_MAX:
            self._by_arn.popitem(last=False)

    def _secret(self, cursor: ViewCursor, secret_id: UUID) -> _KnownSecret:
        known = self._by_id.get(secret_id.int)
        if known is None:
            row = cursor.execute(
                "SELECT secret_key, arn, name FROM projection_audit_secrets WHERE secret_id = ?",
                (secret_id.hex,),
            ).fetchone()
            assert row is not None, "every Secret stream starts with Secret.Created"
            known = _KnownSecret(row[0], row[1], row[2])
            self._remember(secret_id, known)
        return known

    def _key_of_arn(self, cursor: ViewCursor, arn: str) -> int | None:
        secret_key = self._by_arn.get(arn)
        if secret_key is None:
            row = cursor.execute(
                "SELECT secret_key FROM projection_audit_secrets WHERE arn = ?", (arn,)
            ).fetchone()
            secret_key = None if row is None else int(row[0])
        return secret_key

    def _live_versions(self, event: Any) -> list[str]:
        """The secret's versions when the request of ``event`` began, in creation order:
        read from the secret's own stream (only deletions and restorations ask, so this
        is rare). Versions destroyed by that same request (a forced delete's or a
        purge's ``VersionDestroyed``) count as live: the request ends them."""
        stored = self.log.recorder.select_events(
            event.originator_id, lte=event.originator_version - 1
        )
        request_id = event.request["request_id"]
        versions: dict[str, None] = {}
        for item in stored:
            earlier = self.log.mapper.to_domain_event(item)
            if isinstance(earlier, Secret.VersionCreated):
                versions[earlier.version_id] = None
            elif isinstance(earlier, Secret.VersionRemoved) or (
                isinstance(earlier, Secret.VersionDestroyed)
                and earlier.request["request_id"] != request_id
            ):
                del versions[earlier.version_id]
        return list(versions)

    # Records

    def _api_call_row(
        self,
        pending: _Pending,
        position: int,
        event: Any,
        *,
        read_only: bool,
        secret_keys: Sequence[int],
        version_id: str | None = None,
        deletion_date: datetime | None = None,
        resources: list[dict[str, str | None]] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        request = event.request
        extensions = dict(extensions or {})
        if request.get("os_user"):
            extensions["secretLedger.osUser"] = request["os_user"]
        record_key = position * SEQUENCES_PER_POSITION
        event_time = to_microseconds(event.timestamp)
        parameters = request["parameters"]
        details = [  # the fields of Details, in order
            API_CALL,
            request["access_key_id"],
            request["source_ip"],
            request["user_agent"],
            request["request_id"],
            parameters or None,
            read_only,
            error_message,
            version_id,
            None if deletion_date is None else to_microseconds(deletion_date),
            resources,
            extensions or None,
        ]
        pending.records.append(
            (
                record_key,
                event_time,
                event_time // MICROSECONDS_PER_HOUR,
                request["operation"],
                request["principal_arn"],
                secret_keys[0] if secret_keys else None,
                None if secret_keys else secret_reference(parameters),
                error_code,
                request["account_id"],
                request["region"],
                TRANSCODER.encode(details),
            )
        )
        pending.extra_resources += [(secret_key, record_key) for secret_key in secret_keys[1:]]

    def _service_rows(
        self,
        pending: _Pending,
        event_name: str,
        position: int,
        event: Any,
        known: _KnownSecret,
        version_ids: Sequence[str],
        error_message: str | None = None,
    ) -> None:
        """Service events about versions, caused by the request of ``event``."""
        assert len(version_ids) < SEQUENCES_PER_POSITION, "records of one event are bounded"
        request = event.request
        event_time = to_microseconds(event.timestamp)
        for offset, version_id in enumerate(version_ids):
            details = [  # the fields of Details, in order
                SERVICE_EVENT,
                "",
                SERVICE_PRINCIPAL,
                SERVICE_PRINCIPAL,
                request["request_id"],
                None,
                False,
                error_message,
                version_id,
                None,
                None,
            ]
            pending.records.append(
                (
                    position * SEQUENCES_PER_POSITION + 1 + offset,
                    event_time,
                    event_time // MICROSECONDS_PER_HOUR,
                    event_name,
                    SERVICE_PRINCIPAL,
                    known.secret_key,
                    None,
                    None,
                    request["account_id"],
                    request["region"],
                    TRANSCODER.encode(details),
                )
            )

    def _mutation_record(
        self,
        cursor: ViewCursor,
        pending: _Pending,
        position: int,
        event: Any,
        *,
        deletion_date: datetime | None = None,
    ) -> None:
        """The API call record of a successful mutation, once per request."""
        request = event.request
        request_id = request["request_id"]
        if request_id == pending.recorded_request_id:
            return
        if request["principal_arn"] == SERVICE_PRINCIPAL:
            return
        pending.recorded_request_id = request_id
        known = self._secret(cursor, event.originator_id)
        self._api_call_row(
            pending,
            position,
            event,
            read_only=False,
            secret_keys=[known.secret_key],
            deletion_date=deletion_date,
        )

    def _event_row(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.Event
    ) -> None:
        """What one ``Secret`` event states, with its request context (F-1)."""
        created = pending.secrets.get(event.originator_id)
        known = created if created is not None else self._secret(cursor, event.originator_id)
        request = event.request
        pending.events.append(
            (
                position,
                known.secret_key,
                to_microseconds(event.timestamp),
                event_name(type(event).TOPIC),
                *event_facts(event),
                request["principal_arn"],
                request["access_key_id"],
                request["source_ip"],
                request["user_agent"],
                request["request_id"],
                request["operation"],
            )
        )
        facts = rotation_facts(event)
        if facts is not None:
            pending.rotations.append((position, *facts))

    # Handlers

    def _on_created(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.Created
    ) -> None:
        known = _KnownSecret(position, event.arn, event.name)
        pending.secrets[event.originator_id] = known
        self._remember(event.originator_id, known)
        self._mutation_record(cursor, pending, position, event)

    def _on_label_moved(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.LabelMoved
    ) -> None:
        """A put that dropped AWSPENDING from the old current (R-4) abandoned a
        rotation. Detachments by deletion (D-1) leave the call's record to
        ``Deleted``, which carries the deletion date."""
        if event.reason == DETACHED_BY_DELETION:
            return
        self._mutation_record(cursor, pending, position, event)
        if event.reason == PENDING_DROPPED:
            assert event.from_version_id is not None, "AWSPENDING was on the old current"
            known = self._secret(cursor, event.originator_id)
            self._service_rows(
                pending, "RotationAbandoned", position, event, known, [event.from_version_id]
            )

    def _on_mutation(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Any
    ) -> None:
        self._mutation_record(cursor, pending, position, event)

    def _on_rotation_event(
        self,
        cursor: ViewCursor,
        pending: _Pending,
        position: int,
        event: Secret.RotationStarted | Secret.RotationSucceeded | Secret.RotationFailed,
    ) -> None:
        """RO-7: the service event of a rotation attempt's start, success or failure
        (after the API call record when a caller's RotateSecret started it)."""
        self._mutation_record(cursor, pending, position, event)
        known = self._secret(cursor, event.originator_id)
        error_message = event.error_message if isinstance(event, Secret.RotationFailed) else None
        self._service_rows(
            pending,
            event_name(type(event).TOPIC),
            position,
            event,
            known,
            [event.version_id],
            error_message,
        )

    def _on_version_removed(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.VersionRemoved
    ) -> None:
        self._mutation_record(cursor, pending, position, event)
        known = self._secret(cursor, event.originator_id)
        self._service_rows(
            pending, "EndSecretVersionDelete", position, event, known, [event.version_id]
        )

    def _on_version_destroyed(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.VersionDestroyed
    ) -> None:
        """On request: the call's record and the version's end. A forced delete's or a
        purge's destruction is recorded by its ``Deleted`` (see the module docstring)."""
        if event.reason != DESTROYED_ON_REQUEST:
            return
        self._mutation_record(cursor, pending, position, event)
        known = self._secret(cursor, event.originator_id)
        self._service_rows(
            pending, "EndSecretVersionDelete", position, event, known, [event.version_id]
        )

    def _on_deletion_scheduled(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.DeletionScheduled
    ) -> None:
        self._mutation_record(cursor, pending, position, event, deletion_date=event.deletion_date)
        self._version_service_rows(cursor, pending, "StartSecretVersionDelete", position, event)

    def _on_restored(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.Restored
    ) -> None:
        self._mutation_record(cursor, pending, position, event)
        self._version_service_rows(cursor, pending, "CancelSecretVersionDelete", position, event)

    def _on_deleted(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: Secret.Deleted
    ) -> None:
        self._mutation_record(cursor, pending, position, event, deletion_date=event.timestamp)
        self._version_service_rows(cursor, pending, "EndSecretVersionDelete", position, event)

    def _version_service_rows(
        self, cursor: ViewCursor, pending: _Pending, event_name: str, position: int, event: Any
    ) -> None:
        """One service event per version the secret had when ``event`` happened."""
        known = self._secret(cursor, event.originator_id)
        self._service_rows(pending, event_name, position, event, known, self._live_versions(event))

    def _on_api_call(
        self, cursor: ViewCursor, pending: _Pending, position: int, event: ApiCall.Recorded
    ) -> None:
        pending.recorded_request_id = event.request["request_id"]
        resources: list[dict[str, str | None]] = [
            {"secret_arn": str(resource["secret_arn"]), "version_id": resource.get("version_id")}
            for resource in event.resources
            if resource.get("secret_arn")
        ]
        keys = [self._key_of_arn(cursor, str(resource["secret_arn"])) for resource in resources]
        secret_keys = list(dict.fromkeys(key for key in keys if key is not None))
        flat = len(resources) == 1 and keys[0] is not None
        self._api_call_row(
            pending,
            position,
            event,
            read_only=event.read_only,
            secret_keys=secret_keys,
            version_id=resources[0]["version_id"] if flat else None,
            resources=resources if resources and not flat else None,
            error_code=event.error_code,
            error_message=event.error_message,
            extensions=call_extensions(event),
        )

    _handlers: ClassVar[dict[type, Any]] = {
        Secret.Created: _on_created,
        Secret.VersionCreated: _on_mutation,
        Secret.LabelMoved: _on_label_moved,
        Secret.MetadataUpdated: _on_mutation,
        Secret.VersionRemoved: _on_version_removed,
        Secret.VersionDestroyed: _on_version_destroyed,
        Secret.DeletionScheduled: _on_deletion_scheduled,
        Secret.Restored: _on_restored,
        Secret.Deleted: _on_deleted,
        Secret.RotationConfigured: _on_mutation,
        Secret.RotationDisabled: _on_mutation,
        Secret.RotationScheduled: _on_mutation,
        Secret.PendingVersionStaged: _on_mutation,
        Secret.VersionFilled: _on_mutation,
        Secret.RotationStarted: _on_rotation_event,
        Secret.RotationSucceeded: _on_rotation_event,
        Secret.RotationFailed: _on_rotation_event,
        Secret.Tagged: _on_mutation,
        Secret.Untagged: _on_mutation,
        Secret.ResourcePolicyPut: _on_mutation,
        Secret.ResourcePolicyDeleted: _on_mutation,
        ApiCall.Recorded: _on_api_call,
    }

    def _write(self, cursor: ViewCursor, pending: _Pending) -> None:
        cursor.executemany(
            "INSERT INTO projection_audit_secrets VALUES (?, ?, ?, ?)",
            [
                (known.secret_key, secret_id.hex, known.arn, known.name)
                for secret_id, known in pending.secrets.items()
            ],
        )
        cursor.executemany(
            "INSERT INTO projection_audit_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            pending.records,
        )
        cursor.executemany(
            "INSERT INTO projection_audit_events "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            pending.events,
        )
        cursor.executemany(
            "INSERT INTO projection_audit_rotations VALUES (?, ?, ?, ?, ?, ?)", pending.rotations
        )
        cursor.executemany(
            "INSERT INTO projection_audit_resources VALUES (?, ?)", pending.extra_resources
        )
        cursor.execute(
            "INSERT INTO projection_audit_state VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (RECORDED_REQUEST_STATE, pending.recorded_request_id),
        )


def event_name(topic: str) -> str:
    """The name of an event: the last part of its pinned topic (``SecretDeleted``)."""
    return topic.rpartition("/")[2]


def event_facts(
    event: Secret.Event,
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """(version id, label, from version id, to version id, reason) as the event states
    them (F-1); ``SecretDeleted``'s reason says whether it was forced (F-2)."""
    if isinstance(event, Secret.LabelMoved):
        return None, event.label, event.from_version_id, event.to_version_id, event.reason
    if isinstance(event, Secret.VersionRemoved | Secret.VersionDestroyed):
        return event.version_id, None, None, None, event.reason
    if isinstance(
        event,
        Secret.VersionCreated
        | Secret.PendingVersionStaged
        | Secret.VersionFilled
        | Secret.RotationStarted
        | Secret.RotationSucceeded,
    ):
        return event.version_id, None, None, None, None
    if isinstance(event, Secret.RotationFailed):
        return event.version_id, None, None, None, event.step
    if isinstance(event, Secret.Deleted):
        return (
            None,
            None,
            None,
            None,
            DESTROYED_BY_FORCED_DELETION if event.forced else DESTROYED_BY_PURGE,
        )
    return None, None, None, None, None


def rotation_facts(
    event: Secret.Event,
) -> tuple[str | None, str | None, int | None, int | None, str | None] | None:
    """(function ARN, rules as canonical JSON, window start, next rotation date, runner)
    of a rotation configuration, schedule or staging (RO-1, RO-8, RO-5), for the
    report (CR-15 of docs/report.md); None for every other event."""
    if isinstance(event, Secret.RotationConfigured):
        rules = json.dumps(event.rotation_rules, sort_keys=True, separators=(",", ":"))
        return event.rotation_lambda_arn, rules, None, None, None
    if isinstance(event, Secret.RotationScheduled):
        return (
            None,
            None,
            to_microseconds(event.window_start),
            to_microseconds(event.next_rotation_date),
            None,
        )
    if isinstance(event, Secret.PendingVersionStaged):
        return None, None, None, None, event.runner
    return None


def secret_reference(parameters: Mapping[str, Any]) -> str | None:
    """The secret as the caller named it (``secretId``, or ``name`` for CreateSecret)."""
    reference = parameters.get("secretId", parameters.get("name"))
    return reference if isinstance(reference, str) else None


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


class Details(NamedTuple):
    """The fields of a record that are not searched by: one msgpack blob per row."""

    event_type: str
    access_key_id: str
    source_ip: str
    user_agent: str
    request_id: str
    parameters: dict[str, Any] | None
    read_only: bool
    error_message: str | None
    version_id: str | None
    deletion_date: int | None
    resources: list[dict[str, Any]] | None
    # Project extensions for additionalEventData (rows written before they existed
    # have none): the OS user (CA-2), denials (AZ-12), a refusal count (DR-2).
    extensions: dict[str, Any] | None = None


def call_extensions(event: ApiCall.Recorded) -> dict[str, Any]:
    """What a call record adds to ``additionalEventData``: the permissions it was
    denied, each with the policy and statement that decided (AZ-12), and, for a
    summary of refusals, their count and window (DR-2)."""
    extensions: dict[str, Any] = {}
    if event.denials:
        extensions["secretLedger.denials"] = [
            {DENIAL_FIELDS[name]: value for name, value in denial.items()}
            for denial in event.denials
        ]
    if event.refusals_counted is not None:
        extensions["secretLedger.refusalsCounted"] = {
            "count": event.refusals_counted["count"],
            "windowStart": event.refusals_counted["window_start"],
            "windowEnd": event.refusals_counted["window_end"],
        }
    return extensions


DENIAL_FIELDS: Final = {
    "action": "action",
    "resource": "resource",
    "decision": "decision",
    "policy_type": "policyType",
    "statement_index": "statementIndex",
    "sid": "sid",
}


class RecordRow(NamedTuple):
    """A stored record with its secret's ARN and name (see RECORD_COLUMNS)."""

    record_key: int
    event_time: int
    event_name: str
    principal_arn: str
    secret_reference: str | None
    error_code: str | None
    account_id: str
    region: str
    details: bytes
    secret_arn: str | None
    secret_name: str | None


RECORDS_FROM: Final = (
    "projection_audit_records r LEFT JOIN projection_audit_secrets s ON s.secret_key = r.secret_key"
)
RECORD_COLUMNS: Final = (
    "r.record_key, r.event_time, r.event_name, r.principal_arn, r.secret_reference, "
    "r.error_code, r.account_id, r.region, r.details, s.arn, s.name"
)


def render(row: RecordRow) -> dict[str, Any]:
    """The CloudTrail record of a stored row: a pure function of the row."""
    details = Details(*TRANSCODER.decode(bytes(row.details)))
    event_time = from_microseconds(row.event_time)
    request = {
        "request_id": details.request_id,
        "principal_arn": row.principal_arn,
        "access_key_id": details.access_key_id,
        "source_ip": details.source_ip,
        "user_agent": details.user_agent,
        "region": row.region,
        "account_id": row.account_id,
        "operation": row.event_name,
        "parameters": details.parameters or {},
    }
    if details.event_type == SERVICE_EVENT:
        assert row.secret_arn is not None and details.version_id is not None
        return service_event_record(
            row.event_name,
            request=request,
            event_time=event_time,
            secret_arn=row.secret_arn,
            version_id=details.version_id,
            error_message=details.error_message,
        )
    resources: list[dict[str, Any]] = []
    if details.resources is not None:
        resources = details.resources
    elif row.secret_arn is not None:
        resources = [{"secret_arn": row.secret_arn, "version_id": details.version_id}]
    response: dict[str, Any] | None = None
    answered = row.event_name not in EMPTY_ANSWER_OPERATIONS
    if row.error_code is None and not details.read_only and resources and answered:
        response = {"arn": resources[0]["secret_arn"]}
        if details.deletion_date is not None:
            response["name"] = row.secret_name
            response["deletionDate"] = format_event_time(from_microseconds(details.deletion_date))
    return api_call_record(
        request,
        event_time=event_time,
        read_only=details.read_only,
        response_elements=response,
        additional_event_data=(resources_data(resources) or {}) | (details.extensions or {}),
        error_code=row.error_code,
        error_message=details.error_message,
    )


def resources_data(resources: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """``additionalEventData``: the resolved secret(s) and the version(s) served."""
    if not resources:
        return None
    if len(resources) == 1:
        data = {"secretLedger.secretArn": resources[0]["secret_arn"]}
        if resources[0].get("version_id"):
            data["secretLedger.resolvedVersionId"] = resources[0]["version_id"]
        return data
    return {
        "secretLedger.resources": [
            {"secretArn": resource["secret_arn"]}
            | ({"resolvedVersionId": resource["version_id"]} if resource.get("version_id") else {})
            for resource in resources
        ]
    }


# --------------------------------------------------------------------------------------
# Queries and export
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Which records: all given conditions must hold; times are inclusive.

    ``secret``: a full ARN matches that secret; a name or partial ARN matches every
    secret that ever had that name, and also calls that named it but resolved to no
    secret (e.g. failed calls on a name that did not exist).
    """

    secret: str | None = None
    principal_arn: str | None = None
    event_name: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """A record in the log: its place, the fields it is searched by, and its content.
    ``secret`` is the resolved secret's ARN, else the secret as the caller named it."""

    position: int
    sequence: int
    event_time: datetime
    event_name: str
    principal_arn: str
    secret: str | None
    error_code: str | None
    request_id: str
    record: dict[str, Any]

    @property
    def text(self) -> str:
        """The record as CloudTrail JSON (compact, keys in CloudTrail's order)."""
        return record_text(self.record)


class AuditQueries:
    """Reading and exporting audit records; bounded memory (keyset pages)."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store

    def records(self, audit_filter: AuditFilter | None = None) -> Iterator[AuditRecord]:
        """Matching records in log order (position, then sequence), read page by page."""
        conditions, parameters = self.conditions(audit_filter or AuditFilter())
        for row in self.rows(conditions, parameters):
            position, sequence = divmod(row.record_key, SEQUENCES_PER_POSITION)
            record = render(row)
            yield AuditRecord(
                position=position,
                sequence=sequence,
                event_time=from_microseconds(row.event_time),
                event_name=row.event_name,
                principal_arn=row.principal_arn,
                secret=row.secret_arn or row.secret_reference,
                error_code=row.error_code,
                request_id=record["requestID"],
                record=record,
            )

    def rows(self, conditions: list[str], parameters: list[Any]) -> Iterator[RecordRow]:
        """Rows in record_key order, ``QUERY_PAGE_SIZE`` at a time."""
        after = -1
        while True:
            with self.store.read() as cursor:
                rows = cursor.execute(
                    f"SELECT {RECORD_COLUMNS} FROM {RECORDS_FROM} WHERE r.record_key > ?"
                    + "".join(f" AND {condition}" for condition in conditions)
                    + f" ORDER BY r.record_key LIMIT {QUERY_PAGE_SIZE}",
                    (after, *parameters),
                ).fetchall()
            yield from (RecordRow(*row) for row in rows)
            if len(rows) < QUERY_PAGE_SIZE:
                return
            after = rows[-1][0]

    def conditions(self, audit_filter: AuditFilter) -> tuple[list[str], list[Any]]:
        """SQL conditions on records ``r`` (see ``RECORDS_FROM``), with their parameters."""
        conditions: list[str] = []
        parameters: list[Any] = []
        if audit_filter.secret is not None:
            keys = self.secret_keys(audit_filter.secret)
            marks = ", ".join("?" for _ in keys) or "NULL"
            conditions.append(
                f"(r.secret_key IN ({marks}) OR r.secret_reference = ? OR EXISTS "
                "(SELECT 1 FROM projection_audit_resources x "
                f"WHERE x.secret_key IN ({marks}) AND x.record_key = r.record_key))"
            )
            parameters += [*keys, audit_filter.secret, *keys]
        if audit_filter.principal_arn is not None:
            conditions.append("r.principal_arn = ?")
            parameters.append(audit_filter.principal_arn)
        if audit_filter.event_name is not None:
            conditions.append("r.event_name = ?")
            parameters.append(audit_filter.event_name)
        if audit_filter.error_code is not None:
            conditions.append("r.error_code = ?")
            parameters.append(audit_filter.error_code)
        if audit_filter.since is not None:
            conditions.append("r.event_time >= ?")
            parameters.append(to_microseconds(audit_filter.since))
        if audit_filter.until is not None:
            conditions.append("r.event_time <= ?")
            parameters.append(to_microseconds(audit_filter.until))
        return conditions, parameters

    def secret_keys(self, secret: str) -> list[int]:
        """A full ARN: its secret; a name or partial ARN: every secret of that name."""
        name, prefix = secret, ""
        with self.store.read() as cursor:
            if secret.startswith("arn:"):
                parsed = parse_secret_arn(secret)
                if parsed is None:
                    return []
                row = cursor.execute(
                    "SELECT secret_key FROM projection_audit_secrets WHERE arn = ?", (secret,)
                ).fetchone()
                if row is not None:
                    return [int(row[0])]
                name, prefix = parsed.resource, parsed.prefix
            rows = cursor.execute(
                "SELECT secret_key, arn FROM projection_audit_secrets WHERE name = ? "
                "ORDER BY secret_key",
                (name,),
            ).fetchall()
        return [int(secret_key) for secret_key, arn in rows if arn.startswith(prefix)]

    def export(
        self,
        directory: Path,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        records_per_file_max: int = RECORDS_PER_FILE_MAX,
    ) -> list[Path]:
        """Write CloudTrail log files for the records in the time range: per account,
        region and hour of eventTime, the records in (position, sequence) order, split
        every ``records_per_file_max`` records. The same records always give the same
        files, byte for byte (see :class:`LogFileWriter`)."""
        conditions, parameters = self.conditions(AuditFilter(since=since, until=until))
        where = "".join(f" AND {condition}" for condition in conditions)
        with self.store.read() as cursor:
            groups = cursor.execute(
                "SELECT DISTINCT r.event_hour, r.account_id, r.region "
                f"FROM projection_audit_records r WHERE r.record_key >= 0{where} "
                "ORDER BY 1, 2, 3",
                parameters,
            ).fetchall()
        written: list[Path] = []
        for hour, account_id, region in groups:
            group_conditions = [
                *conditions,
                "r.event_hour = ?",
                "r.account_id = ?",
                "r.region = ?",
            ]
            group_parameters = [*parameters, hour, account_id, region]
            writer = LogFileWriter(
                directory, LogFileGroup(account_id, region), records_per_file_max
            )
            written += writer.write(self._texts(group_conditions, group_parameters))
        return written

    def _texts(
        self, conditions: list[str], parameters: list[Any]
    ) -> Iterator[tuple[datetime, str]]:
        for row in self.rows(conditions, parameters):
            yield from_microseconds(row.event_time), record_text(render(row))
