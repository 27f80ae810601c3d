"""The forensic timeline: everything that happened to a secret, or everything one
identity did, one row per fact (rules F-1 to F-8 of docs/forensics.md).

Two kinds of rows, merged in log order:

* what a ``Secret`` event states, from ``projection_audit_events``: a secret or a
  version created, a label moved (and why), a version removed, a deletion scheduled,
  a secret restored or deleted; with the request context the event carries;
* every call that changed nothing (reads with the version they served, idempotent
  replays, failures, refusals), from the audit records that ``ApiCall.Recorded``
  made: the records whose position holds no ``Secret`` event. A call that touched
  several secrets (``BatchGetSecretValue``) gives one row per secret it served.

Both come from the audit projection, read up to the position it has reached, so a
timeline never mixes two states of the log. Nothing here decrypts anything: the read
side has no key.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ledger.domain import ApiCall
from projections.audit import (
    AUDIT_PROJECTION_NAME,
    QUERY_PAGE_SIZE,
    SEQUENCES_PER_POSITION,
    TRANSCODER,
    AuditFilter,
    AuditQueries,
    Details,
    RecordRow,
    event_name,
)
from projections.base import format_instant, from_microseconds, to_microseconds
from projections.labels import SecretNotFoundError
from projections.store import ViewStore

CALL_EVENT_NAME: Final = event_name(ApiCall.Recorded.TOPIC)
# Request members that name a version (F-5): a call concerns the versions they name.
VERSION_PARAMETERS: Final = (
    "versionId",
    "clientRequestToken",
    "moveToVersionId",
    "removeFromVersionId",
)
EVENT_COLUMNS: Final = (
    "e.position, e.event_time, e.event_name, e.operation, s.arn, e.version_id, e.label, "
    "e.from_version_id, e.to_version_id, e.reason, e.principal_arn, e.access_key_id, "
    "e.source_ip, e.user_agent, e.request_id"
)
EVENTS_FROM: Final = (
    "projection_audit_events e JOIN projection_audit_secrets s ON s.secret_key = e.secret_key"
)
# Records made by a Secret event share its position (F-3): only calls remain.
CALLS_ONLY: Final = (
    "NOT EXISTS (SELECT 1 FROM projection_audit_events e "
    f"WHERE e.position = r.record_key / {SEQUENCES_PER_POSITION})"
)


@dataclass(frozen=True)
class TimelineRow:
    """One fact of the timeline (F-1). ``event``: the name of the event that states it
    (``VersionCreated``, ``LabelMoved``, ..., ``ApiCallRecorded`` for a call);
    ``secret``: the secret's ARN, or for a call that resolved none, the secret as the
    caller named it; ``version_id``: the version created, removed or served."""

    position: int
    event_time: datetime
    event: str
    operation: str
    secret: str | None
    version_id: str | None
    label: str | None
    from_version_id: str | None
    to_version_id: str | None
    reason: str | None
    error_code: str | None
    error_message: str | None
    principal_arn: str
    access_key_id: str
    source_ip: str
    user_agent: str
    request_id: str

    def to_json(self) -> dict[str, Any]:
        """The stable JSON object of a row (docs/forensics.md, F-7)."""
        return {
            "Position": self.position,
            "Time": format_instant(self.event_time),
            "Event": self.event,
            "Operation": self.operation,
            "Secret": self.secret,
            "VersionId": self.version_id,
            "Label": self.label,
            "FromVersionId": self.from_version_id,
            "ToVersionId": self.to_version_id,
            "Reason": self.reason,
            "ErrorCode": self.error_code,
            "ErrorMessage": self.error_message,
            "Principal": self.principal_arn,
            "AccessKeyId": self.access_key_id,
            "SourceIp": self.source_ip,
            "UserAgent": self.user_agent,
            "RequestId": self.request_id,
        }


@dataclass(frozen=True)
class TimelineFilter:
    """Whose timeline: one ``secret`` (a name, partial ARN or full ARN, as ``audit
    query --secret`` takes it: F-2) or one ``principal_arn``; narrowed to the rows
    about ``version_id`` (F-5) and to a time range (inclusive)."""

    secret: str | None = None
    principal_arn: str | None = None
    version_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        assert (self.secret is None) != (self.principal_arn is None), "a secret or a principal"


class ForensicsQueries:
    """The timeline of a secret or of a principal; callers catch up first."""

    def __init__(self, store: ViewStore, audit: AuditQueries) -> None:
        self.store = store
        self.audit = audit

    def timeline(self, timeline_filter: TimelineFilter) -> list[TimelineRow]:
        """Every row of the filter's timeline, in log order. Raises
        :class:`SecretNotFoundError` for a secret that no secret ever had as its name
        or ARN and that no call named (F-2)."""
        position = self._tracked_position()
        secret = timeline_filter.secret
        secret_keys = [] if secret is None else self.audit.secret_keys(secret)
        if secret is not None and not secret_keys and not self._named_by_a_call(secret):
            raise SecretNotFoundError(f"No secret was ever named {secret!r}, and no call named it.")
        events = self._events(timeline_filter, secret_keys, position)
        calls = self._calls(timeline_filter, secret_keys, position)
        return list(heapq.merge(events, calls, key=lambda row: row.position))

    def _tracked_position(self) -> int:
        with self.store.read() as cursor:
            row = cursor.execute(
                "SELECT position FROM projection_tracking WHERE name = ?",
                (AUDIT_PROJECTION_NAME,),
            ).fetchone()
        if row is None:
            msg = "the audit projection has not been built: run `secretledger replay`"
            raise RuntimeError(msg)
        tracked: int = row[0]
        return tracked

    def _named_by_a_call(self, secret: str) -> bool:
        conditions, parameters = self.audit.conditions(AuditFilter(secret=secret))
        return next(self.audit.rows(conditions, parameters), None) is not None

    def _events(
        self, timeline_filter: TimelineFilter, secret_keys: Sequence[int], position: int
    ) -> Iterator[TimelineRow]:
        """The rows of ``Secret`` events (F-1), page by page."""
        conditions = ["e.position <= ?"]
        parameters: list[Any] = [position]
        if timeline_filter.secret is not None:
            marks = ", ".join("?" for _ in secret_keys) or "NULL"
            conditions.append(f"e.secret_key IN ({marks})")
            parameters += secret_keys
        if timeline_filter.principal_arn is not None:
            conditions.append("e.principal_arn = ?")
            parameters.append(timeline_filter.principal_arn)
        if timeline_filter.version_id is not None:
            conditions.append("? IN (e.version_id, e.from_version_id, e.to_version_id)")
            parameters.append(timeline_filter.version_id)
        if timeline_filter.since is not None:
            conditions.append("e.event_time >= ?")
            parameters.append(to_microseconds(timeline_filter.since))
        if timeline_filter.until is not None:
            conditions.append("e.event_time <= ?")
            parameters.append(to_microseconds(timeline_filter.until))
        where = " AND ".join(conditions)
        after = -1
        while True:
            with self.store.read() as cursor:
                rows = cursor.execute(
                    f"SELECT {EVENT_COLUMNS} FROM {EVENTS_FROM} WHERE e.position > ? AND "
                    f"{where} ORDER BY e.position LIMIT {QUERY_PAGE_SIZE}",
                    (after, *parameters),
                ).fetchall()
            for row in rows:
                yield TimelineRow(
                    position=row[0],
                    event_time=from_microseconds(row[1]),
                    event=row[2],
                    operation=row[3],
                    secret=row[4],
                    version_id=row[5],
                    label=row[6],
                    from_version_id=row[7],
                    to_version_id=row[8],
                    reason=row[9],
                    error_code=None,
                    error_message=None,
                    principal_arn=row[10],
                    access_key_id=row[11],
                    source_ip=row[12],
                    user_agent=row[13],
                    request_id=row[14],
                )
            if len(rows) < QUERY_PAGE_SIZE:
                return
            after = rows[-1][0]

    def _calls(
        self, timeline_filter: TimelineFilter, secret_keys: Sequence[int], position: int
    ) -> Iterator[TimelineRow]:
        """The rows of calls (F-3), from their audit records."""
        conditions, parameters = self.audit.conditions(
            AuditFilter(
                secret=timeline_filter.secret,
                principal_arn=timeline_filter.principal_arn,
                since=timeline_filter.since,
                until=timeline_filter.until,
            )
        )
        conditions += [CALLS_ONLY, "r.record_key < ?"]
        parameters.append((position + 1) * SEQUENCES_PER_POSITION)
        selected_arns = self._arns(secret_keys) if timeline_filter.secret is not None else None
        for record in self.audit.rows(conditions, parameters):
            yield from call_rows(record, selected_arns, timeline_filter.version_id)

    def _arns(self, secret_keys: Sequence[int]) -> frozenset[str]:
        if not secret_keys:
            return frozenset()
        marks = ", ".join("?" for _ in secret_keys)
        with self.store.read() as cursor:
            rows = cursor.execute(
                f"SELECT arn FROM projection_audit_secrets WHERE secret_key IN ({marks})",
                secret_keys,
            ).fetchall()
        return frozenset(str(row[0]) for row in rows)


def call_rows(
    record: RecordRow, selected_arns: frozenset[str] | None, version_id: str | None
) -> Iterator[TimelineRow]:
    """One row per secret a call touched (only those in ``selected_arns``, unless None),
    or one row naming the secret as the caller did when it resolved none (F-3); with a
    ``version_id``, only the rows about it (F-5)."""
    details = Details(*TRANSCODER.decode(bytes(record.details)))
    touched: list[tuple[str | None, str | None]]
    if details.resources is not None:
        touched = [(str(item["secret_arn"]), item.get("version_id")) for item in details.resources]
        if selected_arns is not None:
            touched = [item for item in touched if item[0] in selected_arns]
    elif record.secret_arn is not None:
        touched = [(record.secret_arn, details.version_id)]
    else:
        touched = [(record.secret_reference, None)]
    if version_id is not None:
        parameters = details.parameters or {}
        named = [parameters.get(member) for member in VERSION_PARAMETERS]
        if version_id not in named:
            touched = [item for item in touched if item[1] == version_id]
    for secret, served_version_id in touched:
        yield TimelineRow(
            position=record.record_key // SEQUENCES_PER_POSITION,
            event_time=from_microseconds(record.event_time),
            event=CALL_EVENT_NAME,
            operation=record.event_name,
            secret=secret,
            version_id=served_version_id,
            label=None,
            from_version_id=None,
            to_version_id=None,
            reason=None,
            error_code=record.error_code,
            error_message=details.error_message,
            principal_arn=record.principal_arn,
            access_key_id=details.access_key_id,
            source_ip=details.source_ip,
            user_agent=details.user_agent,
            request_id=details.request_id,
        )
