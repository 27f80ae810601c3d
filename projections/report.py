"""The compliance report (rules CR-1 to CR-17 of docs/report.md): rotation hygiene,
churn and access per secret, and findings, computed from the audit projection's rows.

The report is a pure function of its :class:`ReportPeriod`: the cut (``as_of``: every
row whose event time is at or before it, the "as of time T" of
:mod:`projections.labels`), the period (``since``/``until``, clipped to the cut) and
the maximum value age. Rows are read per secret in log-position order
(``projection_audit_events`` for what the secret's events state, ``projection_audit_records``
for reads, failed calls and denials), so memory grows with one secret's history plus
the report itself, never with the log. Nothing here sees a value or a key: value reuse
and the ledger's integrity are composed in by the CLI (``ledger/cli/report.py``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Final

from ledger.domain import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    REMOVED_BY_RETENTION,
    RUNNER_SERVICE,
    VERSION_COUNT_MAX_DEFAULT,
)
from projections.audit import SEQUENCES_PER_POSITION, TRANSCODER, Details
from projections.base import format_instant, from_microseconds, to_microseconds
from projections.store import ViewCursor, ViewStore

REPORT_FORMAT_VERSION: Final = 1
WRITE_BURST_GAP_SECONDS: Final = 600  # CR-6: AWS's guidance, at most one put per 10 minutes
NEAR_VERSION_CAP_MARGIN: Final = 10  # CR-7
PENDING_LEFT_BEHIND_SECONDS: Final = 86_400  # CR-5: the longest rotation window
REPORT_CACHE_KILOBYTES: Final = 8_192
MAX_AGE_SECONDS_DEFAULT: Final = 90 * 86_400  # CR-2
AWS_LABELS: Final = frozenset({AWSCURRENT, AWSPREVIOUS, AWSPENDING})
READ_OPERATIONS: Final = frozenset({"GetSecretValue", "BatchGetSecretValue"})
# CR-10: calls refused for who made them (authentication, or IAM's AccessDeniedException).
DENIAL_ERROR_CODES: Final = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "UnrecognizedClientException",
    }
)
SEVERITIES: Final = {
    "integrity": "critical",
    "value-reuse": "high",
    "stale-value": "high",
    "rotation-overdue": "high",
    "rotation-failed": "high",
    "rotation-abandoned": "medium",
    "rolled-back": "medium",
    "access-denied": "medium",
    "near-version-cap": "medium",
    "read-non-current": "low",
    "write-burst": "low",
    "first-time-reader": "info",
}
FINDING_KINDS: Final = tuple(SEVERITIES)
# CR-10: denials are grouped by principal, and secret ARN or the caller's reference.
DenialKey = tuple[str, str | None, str | None]
ACCESS_DENIED: Final = "AccessDeniedException"
# Keys of a call record's additionalEventData (docs/authorization.md AZ-12, DR-2).
DENIALS: Final = "secretLedger.denials"
REFUSALS_COUNTED: Final = "secretLedger.refusalsCounted"
EVENT_COLUMNS: Final = (
    "e.position, e.event_time, e.event_name, e.version_id, e.label, e.from_version_id, "
    "e.to_version_id, e.reason, e.principal_arn, e.request_id, e.operation, "
    "o.rotation_lambda_arn, o.rotation_rules, o.next_rotation_date, o.runner"
)
RECORD_COLUMNS: Final = "r.record_key, r.event_time, r.event_name, r.principal_arn, r.error_code"


@dataclass(frozen=True)
class ReportPeriod:
    """The cut and the period of a report (CR-1); ``until`` None: up to the cut."""

    as_of: datetime
    since: datetime | None = None
    until: datetime | None = None
    max_age_seconds: int = MAX_AGE_SECONDS_DEFAULT

    def __post_init__(self) -> None:
        assert self.as_of.tzinfo is not None, "times are timezone-aware"
        assert self.max_age_seconds > 0, "a maximum age is positive"
        if self.since is not None and self.since > self.end:
            msg = "--since is after the end of the period (--until, or the cut)"
            raise ValueError(msg)

    @property
    def end(self) -> datetime:
        return self.as_of if self.until is None else min(self.until, self.as_of)

    @cached_property
    def _bounds(self) -> tuple[int, int]:
        """The period in microseconds (asked once per row)."""
        start = -1 if self.since is None else to_microseconds(self.since)
        return start, to_microseconds(self.end)

    def holds(self, event_time: int) -> bool:
        start, end = self._bounds
        return start <= event_time <= end

    def to_json(self) -> dict[str, Any]:
        return {
            "AsOf": format_instant(self.as_of),
            "Since": None if self.since is None else format_instant(self.since),
            "Until": format_instant(self.end),
            "MaxAgeSeconds": self.max_age_seconds,
        }


@dataclass(frozen=True)
class Evidence:
    """A log position and the request behind it: ``secretledger prove --position``."""

    position: int
    request_id: str

    def to_json(self) -> dict[str, Any]:
        return {"Position": self.position, "RequestId": self.request_id}


@dataclass(frozen=True)
class Finding:
    """One thing an auditor should look at (CR-12)."""

    kind: str
    secret_arn: str | None
    summary: str
    evidence: tuple[Evidence, ...]
    principal: str | None = None
    secret_reference: str | None = None

    def __post_init__(self) -> None:
        assert self.kind in SEVERITIES, f"unknown finding kind {self.kind}"
        assert self.secret_arn is None or self.secret_arn.startswith("arn:"), "an ARN"
        assert self.secret_arn is None or self.secret_reference is None, (
            "a reference only for a call that resolved no secret (CR-14)"
        )

    @property
    def severity(self) -> str:
        return SEVERITIES[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "Kind": self.kind,
            "Severity": self.severity,
            "SecretARN": self.secret_arn,
            "SecretReference": self.secret_reference,
            "Principal": self.principal,
            "Summary": self.summary,
            "Evidence": [evidence.to_json() for evidence in self.evidence],
        }


@dataclass(frozen=True)
class EventRow:
    """One row of ``projection_audit_events`` (see EVENT_COLUMNS)."""

    position: int
    event_time: int
    event_name: str
    version_id: str | None
    label: str | None
    from_version_id: str | None
    to_version_id: str | None
    reason: str | None
    principal_arn: str
    request_id: str
    operation: str
    # From projection_audit_rotations (CR-15): RotationConfigured's function and rules
    # (canonical JSON), RotationScheduled's next rotation date, PendingVersionStaged's
    # runner; None for other events.
    rotation_lambda_arn: str | None = None
    rotation_rules: str | None = None
    next_rotation_date: int | None = None
    runner: str | None = None


@dataclass(frozen=True)
class CallRow:
    """An API call record about a secret: a read (with the version served) or a failure."""

    position: int
    event_time: int
    event_name: str
    principal_arn: str
    error_code: str | None
    request_id: str
    version_id: str | None
    parameters: dict[str, Any]


@dataclass
class _Version:
    created_position: int
    created_time: int
    request_id: str


@dataclass
class _Rotation:
    """A secret's rotation configuration replayed up to the cut (CR-15)."""

    enabled: bool
    lambda_arn: str
    rules: str
    configured: EventRow
    scheduled: EventRow | None = None
    next_rotation_date: int | None = None
    last_rotated_time: int | None = None
    last_succeeded_position: int = -1


@dataclass
class _SecretState:
    """A secret replayed from its rows, up to the cut."""

    arn: str
    period: ReportPeriod
    versions: dict[str, _Version] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    label_since: dict[str, int] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    puts: list[EventRow] = field(default_factory=list)
    last_rotation: EventRow | None = None
    completed_versions: set[str] = field(default_factory=set)
    rotation: _Rotation | None = None
    runners: dict[str, str] = field(default_factory=dict)
    service_attempt: bool = False
    deletion_scheduled: bool = False
    deleted_time: int | None = None
    ever_current: set[str] = field(default_factory=set)
    pending_staged: EventRow | None = None
    readers_before: set[str] = field(default_factory=set)
    reads: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_readers: dict[str, CallRow] = field(default_factory=dict)
    denied: Counter[str] = field(default_factory=Counter)

    def find(self, kind: str, summary: str, *rows: EventRow | CallRow) -> None:
        evidence = tuple(Evidence(row.position, row.request_id) for row in rows)
        principal = rows[0].principal_arn if rows else None
        self.findings.append(Finding(kind, self.arn, summary, evidence, principal))


class ReportQueries:
    """The report's questions to the audit projection (callers catch up first)."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store

    def report(
        self, period: ReportPeriod, on_secret: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """The report as JSON (docs/report.md) without its secrets, value reuse and
        integrity. Each secret's entry goes to ``on_secret`` as it is made, in creation
        order, and is not kept: memory holds one secret's history and the findings."""
        cut = to_microseconds(period.as_of)
        totals = Totals()
        findings: list[Finding] = []
        with self.store.read() as cursor, small_page_cache(self.store.dialect, cursor):
            for secret_key, arn, name in self._secrets(cursor, cut):
                entry, found = self._secret(cursor, secret_key, arn, name, period)
                totals.add(entry)
                on_secret(entry)
                findings += found
            denials = self._denials(cursor, period)
        findings += denials.findings()
        return {
            "ReportFormatVersion": REPORT_FORMAT_VERSION,
            "Period": period.to_json(),
            "Totals": totals.to_json(findings),
            "DeniedByPrincipal": denials.by_principal(),
            "Findings": sorted((finding.to_json() for finding in findings), key=finding_order),
        }

    def version_evidence(self, arn: str, version_id: str, as_of: datetime) -> Evidence | None:
        """Where a version was created (CR-11 cites it), None when that was after the
        cut: one index seek."""
        with self.store.read() as cursor:
            row = cursor.execute(
                "SELECT e.position, e.request_id, e.event_time FROM projection_audit_events e "
                "JOIN projection_audit_secrets s ON s.secret_key = e.secret_key "
                "WHERE s.arn = ? AND e.version_id = ? "
                "AND e.event_name IN ('VersionCreated', 'PendingVersionStaged')",
                (arn, version_id),
            ).fetchone()
        assert row is not None, "a live version's creation is in the log"
        if int(row[2]) > to_microseconds(as_of):
            return None
        return Evidence(int(row[0]), str(row[1]))

    def _secrets(self, cursor: ViewCursor, cut: int) -> list[tuple[int, str, str]]:
        """Secrets created at or before the cut, in creation order."""
        rows = cursor.execute(
            "SELECT s.secret_key, s.arn, s.name FROM projection_audit_secrets s "
            "JOIN projection_audit_events e ON e.position = s.secret_key "
            "WHERE e.event_time <= ? ORDER BY s.secret_key",
            (cut,),
        ).fetchall()
        return [(int(key), arn, name) for key, arn, name in rows]

    def _secret(
        self, cursor: ViewCursor, secret_key: int, arn: str, name: str, period: ReportPeriod
    ) -> tuple[dict[str, Any], list[Finding]]:
        cut = to_microseconds(period.as_of)
        state = _SecretState(arn, period)
        events = [
            EventRow(*row)
            for row in cursor.execute(
                f"SELECT {EVENT_COLUMNS} FROM projection_audit_events e "
                "LEFT JOIN projection_audit_rotations o ON o.position = e.position "
                "WHERE e.secret_key = ? AND e.event_time <= ? ORDER BY e.position",
                (secret_key, cut),
            ).fetchall()
        ]
        calls = list(self._calls(cursor, secret_key, arn, name, cut))
        for row in merged(events, calls):
            if isinstance(row, EventRow):
                on_event(state, row)
            else:
                on_call(state, row)
        close_timeline(state, cut)
        pending_left_behind(state, cut)
        write_bursts(state)
        stale_or_near_cap(state)
        rotation_overdue(state, cut)
        access_findings(state)
        return secret_entry(state, name), state.findings

    def _calls(
        self, cursor: ViewCursor, secret_key: int, arn: str, name: str, cut: int
    ) -> Iterator[CallRow]:
        """The secret's call records (not service events), with the version served; a
        failed call that resolved no secret counts when it named this one (CR-4)."""
        rows = cursor.execute(
            f"SELECT {RECORD_COLUMNS}, r.details FROM projection_audit_records r "
            "WHERE r.event_time <= ? AND (r.secret_key = ? OR r.secret_reference IN (?, ?) "
            "OR r.record_key IN (SELECT x.record_key FROM projection_audit_resources x "
            "WHERE x.secret_key = ?)) ORDER BY r.record_key",
            (cut, secret_key, name, arn, secret_key),
        ).fetchall()
        for record_key, event_time, event_name, principal_arn, error_code, blob in rows:
            position, sequence = divmod(record_key, SEQUENCES_PER_POSITION)
            if sequence:
                continue
            details = Details(*TRANSCODER.decode(bytes(blob)))
            yield CallRow(
                position=position,
                event_time=event_time,
                event_name=event_name,
                principal_arn=principal_arn,
                error_code=error_code,
                request_id=details.request_id,
                version_id=served_version(details, arn),
                parameters=details.parameters or {},
            )

    def _denials(self, cursor: ViewCursor, period: ReportPeriod) -> Denials:
        """CR-10: refused calls in the period, and the secrets a successful
        BatchGetSecretValue was refused (AZ-13 of docs/authorization.md)."""
        marks = ", ".join("?" for _ in DENIAL_ERROR_CODES)
        rows = cursor.execute(
            f"SELECT {RECORD_COLUMNS}, s.arn, r.secret_reference, r.details "
            "FROM projection_audit_records r LEFT JOIN projection_audit_secrets s "
            "ON s.secret_key = r.secret_key "
            f"WHERE (r.error_code IN ({marks}) OR (r.error_code IS NULL "
            "AND r.event_name = 'BatchGetSecretValue')) AND r.event_time <= ? "
            "ORDER BY r.record_key",
            (*sorted(DENIAL_ERROR_CODES), to_microseconds(period.end)),
        ).fetchall()
        denials = Denials()
        for record_key, event_time, _, principal, error_code, secret_arn, reference, blob in rows:
            if not period.holds(event_time):
                continue
            position, sequence = divmod(record_key, SEQUENCES_PER_POSITION)
            details = Details(*TRANSCODER.decode(bytes(blob)))
            evidence = Evidence(position, details.request_id)
            extensions = details.extensions or {}
            refused = [str(denial["resource"]) for denial in extensions.get(DENIALS, [])]
            if error_code is not None:
                # CR-14: the secret the refused permission was on when the ledger holds
                # it, else the secret as the caller named it; a summary of refusals
                # counts every refusal (DR-2).
                arns = {self._held_arn(cursor, resource) for resource in refused} - {None}
                arn = secret_arn or (arns.pop() if len(arns) == 1 else None)
                counted = extensions.get(REFUSALS_COUNTED, {}).get("count", 1)
                key = (principal, arn, reference if arn is None else None)
                denials.add(key, evidence, error_code, int(counted))
            elif sequence == 0:
                for resource in refused:
                    arn = self._held_arn(cursor, resource)
                    key = (principal, arn, resource if arn is None else None)
                    denials.add(key, evidence, ACCESS_DENIED, 1)
        return denials

    def _held_arn(self, cursor: ViewCursor, resource: str) -> str | None:
        """``resource`` when it is the ARN of a secret in the log, else None."""
        row = cursor.execute(
            "SELECT arn FROM projection_audit_secrets WHERE arn = ?", (resource,)
        ).fetchone()
        return None if row is None else str(row[0])


@dataclass
class Denials:
    """CR-10: refused calls grouped by principal and secret."""

    evidence: dict[DenialKey, list[Evidence]] = field(default_factory=dict)
    codes: dict[DenialKey, set[str]] = field(default_factory=dict)
    counts: Counter[DenialKey] = field(default_factory=Counter)

    def add(self, key: DenialKey, evidence: Evidence, error_code: str, count: int) -> None:
        assert count >= 1, "a record states at least one refusal"
        self.evidence.setdefault(key, []).append(evidence)
        self.codes.setdefault(key, set()).add(error_code)
        self.counts[key] += count

    def findings(self) -> list[Finding]:
        found = []
        for key, cited in self.evidence.items():
            principal, secret_arn, reference = key
            codes = ", ".join(sorted(self.codes[key]))
            summary = f"{self.counts[key]} denied calls ({codes})"
            found.append(
                Finding("access-denied", secret_arn, summary, tuple(cited), principal, reference)
            )
        return found

    def by_principal(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (principal, _, _), count in self.counts.items():
            counts[principal] += count
        return dict(sorted(counts.items()))


@contextmanager
def small_page_cache(dialect: str, cursor: ViewCursor) -> Iterator[None]:
    """SQLite: the report reads each page about once, so the reader's page cache
    (sized for the runners' writes) is kept small meanwhile, then restored."""
    if dialect != "sqlite":
        yield
        return
    row = cursor.execute("PRAGMA cache_size").fetchone()
    assert row is not None, "SQLite states its cache size"
    cursor.execute(f"PRAGMA cache_size=-{REPORT_CACHE_KILOBYTES}")
    try:
        yield
    finally:
        cursor.execute(f"PRAGMA cache_size={int(row[0])}")


def served_version(details: Details, arn: str) -> str | None:
    if details.resources is None:
        return details.version_id
    for resource in details.resources:
        if resource.get("secret_arn") == arn:
            version_id: str | None = resource.get("version_id")
            return version_id
    return None


def merged(events: Sequence[EventRow], calls: Sequence[CallRow]) -> list[EventRow | CallRow]:
    """Events and calls in log order (a request's calls after its events)."""
    rows: list[EventRow | CallRow] = [*events, *calls]
    return sorted(rows, key=lambda row: (row.position, isinstance(row, CallRow)))


# Replaying one secret -----------------------------------------------------------------


def on_event(state: _SecretState, row: EventRow) -> None:
    in_period = state.period.holds(row.event_time)
    if row.event_name in ("VersionCreated", "VersionFilled"):
        # A staged version exists from its staging (RO-3, its CreatedDate); the put
        # that fills it is a put (CR-6).
        assert row.version_id is not None, "a created version has an id"
        if row.event_name == "VersionCreated":
            state.versions[row.version_id] = _Version(row.position, row.event_time, row.request_id)
        if row.operation == "PutSecretValue" and in_period:
            state.puts.append(row)
    elif row.event_name in ("VersionRemoved", "VersionDestroyed"):
        assert row.version_id is not None, "a removed version has an id"
        state.versions.pop(row.version_id, None)
        retention = row.event_name == "VersionRemoved" and row.reason == REMOVED_BY_RETENTION
        if in_period:
            state.counts["RemovedByRetention" if retention else "Destroyed"] += 1
    elif row.event_name == "LabelMoved":
        on_label_moved(state, row, in_period)
    elif row.event_name == "SecretDeleted":
        state.deleted_time = row.event_time
    elif row.event_name in ("SecretDeletionScheduled", "SecretRestored"):
        state.deletion_scheduled = row.event_name == "SecretDeletionScheduled"
    else:
        on_rotation_event(state, row, in_period)


def on_rotation_event(state: _SecretState, row: EventRow, in_period: bool) -> None:
    """CR-15 (configuration), CR-16 (attempts), CR-17 (overdue)."""
    rotation = state.rotation
    if row.event_name == "RotationConfigured":
        assert row.rotation_lambda_arn is not None and row.rotation_rules is not None
        state.rotation = _Rotation(True, row.rotation_lambda_arn, row.rotation_rules, row)
        if rotation is not None:
            state.rotation.scheduled = rotation.scheduled
            state.rotation.next_rotation_date = rotation.next_rotation_date
            state.rotation.last_rotated_time = rotation.last_rotated_time
            state.rotation.last_succeeded_position = rotation.last_succeeded_position
        return
    if row.event_name == "PendingVersionStaged":
        assert row.version_id is not None and row.runner is not None, "a staging's runner"
        state.versions[row.version_id] = _Version(row.position, row.event_time, row.request_id)
        state.runners[row.version_id] = row.runner
        return
    if row.event_name == "RotationStarted":
        state.service_attempt = state.runners.get(row.version_id or "") == RUNNER_SERVICE
        return
    if rotation is None:
        return
    if row.event_name == "RotationDisabled":
        rotation.enabled = False
        rotation.scheduled = None
        rotation.next_rotation_date = None
    elif row.event_name == "RotationScheduled":
        assert row.next_rotation_date is not None, "a schedule's next rotation date"
        rotation.scheduled = row
        rotation.next_rotation_date = row.next_rotation_date
    elif row.event_name == "RotationSucceeded":
        assert row.version_id is not None, "a rotation rotates a version"
        state.service_attempt = False
        rotation.last_rotated_time = row.event_time
        rotation.last_succeeded_position = row.position
        rotation_completed(state, row, row.version_id, in_period)
    elif row.event_name == "RotationFailed":
        state.service_attempt = False
        if in_period:
            state.counts["RotationsFailed"] += 1
            state.find(
                "rotation-failed",
                f"rotating to {row.version_id} failed in the {row.reason} step",
                row,
            )


def rotation_completed(
    state: _SecretState, row: EventRow, version_id: str, in_period: bool
) -> None:
    """CR-3, CR-16: a rotation completes once per version, at its first evidence (the
    AWSCURRENT move onto the pending version, or RotationSucceeded)."""
    if version_id in state.completed_versions:
        return
    state.completed_versions.add(version_id)
    state.last_rotation = row
    if in_period:
        state.counts["RotationsCompleted"] += 1


def on_label_moved(state: _SecretState, row: EventRow, in_period: bool) -> None:
    """CR-3 to CR-5: completed rotations, rollbacks and abandoned rotations."""
    assert row.label is not None, "a label move names its label"
    previous = state.labels.get(row.label)
    if previous is not None:
        state.timeline.append(
            timeline_bar(row.label, previous, state.label_since[row.label], row.event_time)
        )
    if row.label == AWSCURRENT and previous is not None and row.to_version_id is not None:
        if state.labels.get(AWSPENDING) == row.to_version_id:
            rotation_completed(state, row, row.to_version_id, in_period)
        elif older(state, row.to_version_id, previous) and in_period:
            state.counts["RolledBack"] += 1
            state.find(
                "rolled-back",
                f"AWSCURRENT moved back from {previous} to {row.to_version_id}",
                row,
            )
    if row.label == AWSCURRENT and row.to_version_id is not None:
        state.ever_current.add(row.to_version_id)
    if row.label == AWSPENDING and previous is not None and previous not in state.ever_current:
        # CR-5: AWSPENDING taken off a version that never became AWSCURRENT.
        staged = state.pending_staged
        assert staged is not None, "a version holding AWSPENDING was staged"
        if state.period.holds(staged.event_time):
            state.counts["RotationsAbandoned"] += 1
            state.find("rotation-abandoned", f"AWSPENDING dropped from {previous}", staged, row)
    if row.to_version_id is None:
        state.labels.pop(row.label, None)
        state.label_since.pop(row.label, None)
    else:
        state.labels[row.label] = row.to_version_id
        state.label_since[row.label] = row.event_time
    if row.label == AWSPENDING:
        state.pending_staged = None if row.to_version_id is None else row


def pending_left_behind(state: _SecretState, cut: int) -> None:
    """CR-5: AWSPENDING still on a version that never became AWSCURRENT, staged in
    the period and longer than a rotation window before the cut."""
    staged = state.pending_staged
    if staged is None or staged.to_version_id in state.ever_current:
        return
    waited_seconds = (cut - staged.event_time) // 1_000_000
    if state.period.holds(staged.event_time) and waited_seconds > PENDING_LEFT_BEHIND_SECONDS:
        state.counts["RotationsAbandoned"] += 1
        state.find(
            "rotation-abandoned",
            f"AWSPENDING left on {staged.to_version_id} for {duration_text(waited_seconds)}",
            staged,
        )


def older(state: _SecretState, version_id: str, than_version_id: str) -> bool:
    version = state.versions.get(version_id)
    than = state.versions.get(than_version_id)
    return (
        version is not None
        and than is not None
        and version.created_position < (than.created_position)
    )


def on_call(state: _SecretState, row: CallRow) -> None:
    """CR-4 (failed stage moves), CR-8 and CR-9 (reads)."""
    in_period = state.period.holds(row.event_time)
    if row.error_code is not None:
        failed_move = (
            row.event_name == "UpdateSecretVersionStage"
            and row.parameters.get("versionStage") == AWSCURRENT
            and row.error_code not in DENIAL_ERROR_CODES
            and not state.service_attempt  # CR-16: the attempt's outcome counts
        )
        if failed_move and in_period:
            state.counts["RotationsFailed"] += 1
            state.find("rotation-failed", f"moving AWSCURRENT failed: {row.error_code}", row)
        return
    if row.event_name not in READ_OPERATIONS or row.version_id is None:
        return
    if not in_period:
        state.readers_before.add(row.principal_arn)
        return
    state.reads[(row.principal_arn, row.version_id)] += 1
    if row.principal_arn not in state.readers_before:
        state.first_readers.setdefault(row.principal_arn, row)
    current = state.labels.get(AWSCURRENT)
    if row.version_id != current:
        state.counts["NonCurrentReads"] += 1
        state.find(
            "read-non-current",
            f"read {row.version_id} while AWSCURRENT was {current}",
            row,
        )


def timeline_bar(label: str, version_id: str, start: int, end: int) -> dict[str, Any]:
    return {
        "Label": label,
        "VersionId": version_id,
        "From": format_instant(from_microseconds(start)),
        "To": format_instant(from_microseconds(end)),
    }


def close_timeline(state: _SecretState, cut: int) -> None:
    for label, version_id in sorted(state.labels.items()):
        state.timeline.append(timeline_bar(label, version_id, state.label_since[label], cut))


def write_bursts(state: _SecretState) -> None:
    """CR-6: runs of puts less than WRITE_BURST_GAP_SECONDS apart."""
    gap = WRITE_BURST_GAP_SECONDS * 1_000_000
    run: list[EventRow] = []
    for put in [*state.puts, None]:
        if put is not None and run and put.event_time - run[-1].event_time < gap:
            run.append(put)
            continue
        if len(run) > 1:
            state.counts["WriteBursts"] += 1
            seconds = (run[-1].event_time - run[0].event_time) // 1_000_000
            state.find("write-burst", f"{len(run)} puts within {seconds} seconds", *run)
        run = [] if put is None else [put]


def stale_or_near_cap(state: _SecretState) -> None:
    """CR-2 and CR-7, for a secret not deleted at the cut."""
    if state.deleted_time is not None:
        return
    current = state.versions.get(state.labels.get(AWSCURRENT, ""))
    if current is not None:
        age_seconds = age(state, current.created_time)
        if age_seconds > state.period.max_age_seconds:
            state.findings.append(
                Finding(
                    "stale-value",
                    state.arn,
                    f"the AWSCURRENT value is {duration_text(age_seconds)} old",
                    (Evidence(current.created_position, current.request_id),),
                )
            )
    remaining = VERSION_COUNT_MAX_DEFAULT - len(state.versions)
    if remaining <= NEAR_VERSION_CAP_MARGIN:
        newest = max(state.versions.values(), key=lambda version: version.created_position)
        state.findings.append(
            Finding(
                "near-version-cap",
                state.arn,
                f"{len(state.versions)} versions: {remaining} below the cap",
                (Evidence(newest.created_position, newest.request_id),),
            )
        )


def rotation_overdue(state: _SecretState, cut: int) -> None:
    """CR-17: rotation on, its NextRotationDate before the cut, no RotationSucceeded
    since that schedule; not for a secret deleted or scheduled for deletion."""
    rotation = state.rotation
    if state.deleted_time is not None or state.deletion_scheduled or rotation is None:
        return
    scheduled = rotation.scheduled
    if not rotation.enabled or scheduled is None or rotation.next_rotation_date is None:
        return
    if rotation.next_rotation_date >= cut:
        return
    if rotation.last_succeeded_position > scheduled.position:
        return
    late_seconds = (cut - rotation.next_rotation_date) // 1_000_000
    due = format_instant(from_microseconds(rotation.next_rotation_date))
    rows = sorted({rotation.configured, scheduled}, key=lambda row: row.position)
    state.find(
        "rotation-overdue", f"rotation due by {due}, {duration_text(late_seconds)} late", *rows
    )


def access_findings(state: _SecretState) -> None:
    """CR-9: first-time readers, only when the period has a start."""
    if state.period.since is None:
        return
    for principal, row in state.first_readers.items():
        state.find("first-time-reader", f"{principal} read this secret for the first time", row)


def age(state: _SecretState, since_time: int) -> int:
    return (to_microseconds(state.period.as_of) - since_time) // 1_000_000


def duration_text(seconds: int) -> str:
    """Whole days, else hours, else seconds (``91d``, ``5h``, ``30s``)."""
    if seconds >= 86_400:
        return f"{seconds // 86_400}d"
    if seconds >= 3_600:
        return f"{seconds // 3_600}h"
    return f"{seconds}s"


def parse_duration(text: str) -> int:
    """CR-2: ``90d``, ``12h``, ``15m``, ``30s`` as seconds (positive, whole units)."""
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        msg = f"{text!r} is not a duration like 90d, 12h, 15m or 30s"
        raise ValueError(msg)
    return int(number) * units[unit]


# Shaping --------------------------------------------------------------------------------


def secret_entry(state: _SecretState, name: str) -> dict[str, Any]:
    current_id = state.labels.get(AWSCURRENT)
    current = None if current_id is None else state.versions.get(current_id)
    labelled = set(state.labels.values())
    last = state.last_rotation
    return {
        "ARN": state.arn,
        "Name": name,
        "Deleted": state.deleted_time is not None,
        "Current": None
        if current is None or current_id is None
        else {
            "VersionId": current_id,
            "Created": format_instant(from_microseconds(current.created_time)),
            "AgeSeconds": age(state, current.created_time),
        },
        "LastRotation": None
        if last is None
        else {
            "Time": format_instant(from_microseconds(last.event_time)),
            "SecondsSince": age(state, last.event_time),
            "Position": last.position,
            "RequestId": last.request_id,
        },
        "Rotation": rotation_entry(state),
        "Rotations": {
            "Completed": state.counts["RotationsCompleted"],
            "Failed": state.counts["RotationsFailed"],
            "Abandoned": state.counts["RotationsAbandoned"],
            "RolledBack": state.counts["RolledBack"],
        },
        "Churn": {
            "Puts": len(state.puts),
            "WriteBursts": state.counts["WriteBursts"],
            "Versions": len(state.versions),
            "VersionCap": VERSION_COUNT_MAX_DEFAULT,
            "VersionsBelowCap": VERSION_COUNT_MAX_DEFAULT - len(state.versions),
            "RemovedByRetention": state.counts["RemovedByRetention"],
            "Destroyed": state.counts["Destroyed"],
        },
        "DeprecatedVersions": sum(1 for version_id in state.versions if version_id not in labelled),
        "CustomLabels": sorted(label for label in state.labels if label not in AWS_LABELS),
        "Access": {
            "Reads": [
                {"Principal": principal, "VersionId": version_id, "Count": count}
                for (principal, version_id), count in sorted(state.reads.items())
            ],
            "NonCurrentReads": state.counts["NonCurrentReads"],
            "FirstTimeReaders": sorted(state.first_readers)
            if state.period.since is not None
            else [],
        },
        "LabelTimeline": state.timeline,
    }


def rotation_entry(state: _SecretState) -> dict[str, Any] | None:
    """CR-15: the rotation configuration at the cut, as DescribeSecret shows it."""
    rotation = state.rotation
    if rotation is None:
        return None
    return {
        "RotationEnabled": rotation.enabled,
        "RotationLambdaARN": rotation.lambda_arn,
        "RotationRules": json.loads(rotation.rules),
        "NextRotationDate": optional_instant(rotation.next_rotation_date),
        "LastRotatedDate": optional_instant(rotation.last_rotated_time),
        "Overdue": any(finding.kind == "rotation-overdue" for finding in state.findings),
    }


def optional_instant(microseconds: int | None) -> str | None:
    return None if microseconds is None else format_instant(from_microseconds(microseconds))


def finding_order(item: dict[str, Any]) -> tuple[int, int, str, str]:
    """CR-12: by kind (FINDING_KINDS order), first position, secret, summary."""
    first = item["Evidence"][0]["Position"] if item["Evidence"] else -1
    secret = item["SecretARN"] or item["SecretReference"] or ""
    return (FINDING_KINDS.index(item["Kind"]), first, secret, item["Summary"])


# Totals' figures summed from each secret's entry: (total, section, figure).
SUMMED_FIGURES: Final = (
    ("RotationsCompleted", "Rotations", "Completed"),
    ("RotationsFailed", "Rotations", "Failed"),
    ("RotationsAbandoned", "Rotations", "Abandoned"),
    ("RolledBack", "Rotations", "RolledBack"),
    ("Puts", "Churn", "Puts"),
    ("WriteBursts", "Churn", "WriteBursts"),
    ("RemovedByRetention", "Churn", "RemovedByRetention"),
    ("Destroyed", "Churn", "Destroyed"),
    ("NonCurrentReads", "Access", "NonCurrentReads"),
)


@dataclass
class Totals:
    """The report's totals, summed as secrets' entries are made."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, entry: dict[str, Any]) -> None:
        self.counts["Secrets"] += 1
        self.counts["DeletedSecrets"] += int(entry["Deleted"])
        self.counts["DeprecatedVersions"] += int(entry["DeprecatedVersions"])
        for total, section, figure in SUMMED_FIGURES:
            self.counts[total] += int(entry[section][figure])

    def to_json(self, findings: Sequence[Finding]) -> dict[str, Any]:
        kinds = Counter(finding.kind for finding in findings)
        names = ("Secrets", "DeletedSecrets", *(total for total, _, _ in SUMMED_FIGURES))
        return {
            **{name: self.counts[name] for name in names},
            "DeprecatedVersions": self.counts["DeprecatedVersions"],
            "FindingsByKind": {kind: kinds[kind] for kind in FINDING_KINDS if kinds[kind]},
        }


def add_findings(report: dict[str, Any], findings: Sequence[Finding]) -> None:
    """Compose findings made outside the projections (value reuse, integrity) in."""
    combined = [*report["Findings"], *(finding.to_json() for finding in findings)]
    combined.sort(key=finding_order)
    report["Findings"] = combined
    kinds = Counter(item["Kind"] for item in combined)
    report["Totals"]["FindingsByKind"] = {
        kind: kinds[kind] for kind in FINDING_KINDS if kinds[kind]
    }
