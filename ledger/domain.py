"""The domain: a `Secret` whose history is an append-only log of versions and label moves.

The label rules follow AWS Secrets Manager (see docs/decisions.md for every open
point and the choice made). Label moves are computed as a whole new label map
and the `LabelMoved` events are the difference between the old and the new map,
so one command yields exactly one event per label that attaches, moves or
detaches, and a command that fails raises before any event is triggered.

Every `LabelMoved` says why the label moved (``reason``, one of
``LABEL_MOVE_REASONS``), and deleting a secret takes each label off with an explicit
`LabelMoved` before `Deleted`, so readers never infer either. The vocabulary and
the rules (ids R-*, D-*, N-*, S-*) are in docs/events.md; stored events of earlier
class versions are upcast exactly (``upcast_v1_v2``), never by guessing.

The domain never sees plaintext: a version arrives already sealed (ciphertext,
nonce, sealing format) with a keyed fingerprint for idempotency comparison.

Rotation (rules RO-* of docs/rotation.md) stages a version without a value
(``PendingVersionStaged``) that a later put fills (``VersionFilled``); the
rotation's configuration, schedule and attempts are events of the secret too.
"""

from __future__ import annotations

import bisect
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict, TypeGuard

from eventsourcing.domain import Aggregate

from ledger.arn import name_of_secret_arn
from ledger.errors import (
    InvalidParameterException,
    InvalidRequestException,
    LimitExceededException,
    ResourceExistsException,
    marked_for_deletion,
    token_in_use,
    version_not_found,
)
from ledger.policies import require_attachable
from ledger.rotation_schedule import parse_rules
from ledger.sealing import SEALING_V1, SEALINGS
from ledger.tags import (
    Tag,
    changed_tags,
    checked_tag_keys,
    checked_tags,
    require_tag_count,
    tags_after,
    tags_without,
)

AWSCURRENT = "AWSCURRENT"
AWSPREVIOUS = "AWSPREVIOUS"
AWSPENDING = "AWSPENDING"

LABEL_ATTACHMENTS_MAX = 20
VERSION_RETENTION_THRESHOLD = 100
VERSION_RETENTION_AGE = timedelta(hours=24)
VERSION_COUNT_MAX_DEFAULT = 100

SERVICE_PRINCIPAL = "secretsmanager.amazonaws.com"

# Why a version's data key was destroyed (``Secret.VersionDestroyed.reason``):
DESTROYED_ON_REQUEST = "requested"  # the destroy-version command (DestroySecretVersion)
DESTROYED_BY_FORCED_DELETION = "forced-deletion"  # DeleteSecret, ForceDeleteWithoutRecovery
DESTROYED_BY_PURGE = "purged"  # the service's purge after the recovery window
DESTROY_REASONS = frozenset(
    {DESTROYED_ON_REQUEST, DESTROYED_BY_FORCED_DELETION, DESTROYED_BY_PURGE}
)
# Why a version was removed (``Secret.VersionRemoved.reason``); it says itself whether
# its data key was destroyed with it (``data_key_destroyed``).
REMOVED_BY_RETENTION = "retention"

NAMESPACE = uuid.UUID("5e0c7d1a-2f4b-4c57-9a8e-6b1f3d2c9e70")

# Why a label moved (docs/events.md, R-1 to R-7).
REQUESTED: Final = "requested"
DEFAULT_CURRENT: Final = "default-current"
DEMOTED: Final = "demoted"
PENDING_DROPPED: Final = "pending-dropped"
DETACHED_BY_DELETION: Final = "detached-by-deletion"
DETACHED_BY_DESTROY: Final = "detached-by-destroy"
UNKNOWN_V1: Final = "unknown-v1"
ROTATION_STAGED: Final = "rotation-staged"
ROTATION_COMPLETED: Final = "rotation-completed"
LABEL_MOVE_REASONS: Final = frozenset(
    {
        REQUESTED,
        DEFAULT_CURRENT,
        DEMOTED,
        PENDING_DROPPED,
        DETACHED_BY_DELETION,
        DETACHED_BY_DESTROY,
        UNKNOWN_V1,
        ROTATION_STAGED,
        ROTATION_COMPLETED,
    }
)
# Who runs a rotation's steps (RO-5): the ledger's rotation runner, or someone else.
RUNNER_SERVICE: Final = "service"
RUNNER_EXTERNAL: Final = "external"
ROTATION_RUNNERS: Final = frozenset({RUNNER_SERVICE, RUNNER_EXTERNAL})
ROTATION_STEPS: Final = ("createSecret", "setSecret", "testSecret", "finishSecret")
ROTATION_INCOMPLETE_MESSAGE: Final = (
    "A previous rotation isn't complete. That rotation will be reattempted."
)
PUT_OPERATIONS: Final = frozenset({"CreateSecret", "PutSecretValue", "UpdateSecret"})
"""The operations that create a version: their label moves follow P1-P8."""


def start_of_utc_day(moment: datetime) -> datetime:
    """LA-1: the date AWS reports for a read: midnight UTC of the day it happened."""
    assert moment.tzinfo is not None, "an aware moment"
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def secret_id_for_arn(arn: str) -> uuid.UUID:
    """The aggregate id of a secret: its ARN carries a random suffix, so a
    re-created name gets a new identity."""
    return uuid.uuid5(NAMESPACE, "secret:" + arn)


def name_id_for(name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "name:" + name)


@dataclass(frozen=True)
class RequestContext:
    """Who asked for what: carried by every event so that audit records can be
    rebuilt from the log alone. ``parameters`` holds only allow-listed,
    non-sensitive request members (never a secret value)."""

    request_id: str
    principal_arn: str
    access_key_id: str
    source_ip: str
    user_agent: str
    region: str
    account_id: str
    operation: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    os_user: str = ""

    def to_event(self) -> dict[str, Any]:
        """The context as events store it; ``os_user`` (CA-2) only when known, so the
        events of calls that came over HTTP keep their shape."""
        return {
            "request_id": self.request_id,
            "principal_arn": self.principal_arn,
            "access_key_id": self.access_key_id,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
            "region": self.region,
            "account_id": self.account_id,
            "operation": self.operation,
            "parameters": dict(self.parameters),
        } | ({"os_user": self.os_user} if self.os_user else {})


class VersionRecord(TypedDict):
    """A version as the aggregate holds it (a plain dict, so snapshots encode).
    ``sealing``: how its value was sealed and fingerprinted (S-1)."""

    version_id: str
    kind: str
    ciphertext: bytes
    nonce: bytes
    fingerprint: bytes
    created_date: datetime
    sealing: int


class StagedVersion(TypedDict):
    """A version staged by a rotation before its value exists (RO-3): no value, no
    fingerprint, no data key. The first put with its id fills it (RO-4)."""

    version_id: str
    created_date: datetime


def is_filled(version: VersionRecord | StagedVersion) -> TypeGuard[VersionRecord]:
    """Whether a version has its value (every version but a staged, unfilled one)."""
    return "kind" in version


class RotationState(TypedDict):
    """A secret's rotation (docs/rotation.md), once it was ever configured.

    ``version_id``: the token of the latest rotation staged, and ``runner`` who runs
    its steps; ``attempts``: how many attempts of that rotation started; the dates of
    the latest attempt's start and failure (for the runner's lease and retry delay)."""

    enabled: bool
    lambda_arn: str
    rules: dict[str, Any]
    last_rotated_date: datetime | None
    window_start: datetime | None
    next_rotation_date: datetime | None
    version_id: str | None
    runner: str
    attempts: int
    attempt_started_date: datetime | None
    attempt_failed_date: datetime | None


@dataclass(frozen=True)
class SealedVersion:
    """A new version as the application hands it to the domain: already encrypted."""

    version_id: str
    kind: str
    ciphertext: bytes
    nonce: bytes
    fingerprint: bytes
    sealing: int


def moves_between(
    before: Mapping[str, str], after: Mapping[str, str]
) -> list[tuple[str, str | None, str | None]]:
    """One (label, from, to) per label whose holder differs, ordered by label."""
    labels = sorted(set(before) | set(after))
    return [
        (label, before.get(label), after.get(label))
        for label in labels
        if before.get(label) != after.get(label)
    ]


def labels_after_put(
    before: Mapping[str, str], new_version_id: str, stages: list[str] | None, has_versions: bool
) -> dict[str, str]:
    """Rules P1-P8 of PutSecretValue (and of CreateSecret/UpdateSecret with a value)."""
    attach = set(stages) if stages is not None else {AWSCURRENT}
    if not has_versions:
        attach.add(AWSCURRENT)
    after = dict(before)
    old_current = before.get(AWSCURRENT)
    for label in attach:
        after[label] = new_version_id
    if AWSCURRENT in attach and old_current is not None:
        if AWSPREVIOUS not in attach:
            after[AWSPREVIOUS] = old_current
        if AWSPENDING not in attach and before.get(AWSPENDING) == old_current:
            del after[AWSPENDING]
    return after


def reason_of_put_move(
    label: str, to_version_id: str | None, new_version_id: str, stages: list[str] | None
) -> str:
    """Why a put (P1-P8) moved ``label``: R-1 requested (named in its stages), R-2
    default-current (AWSCURRENT, not named), R-3 demoted (AWSPREVIOUS to the old
    current), R-4 pending-dropped (AWSPENDING off the old current, P6)."""
    if to_version_id is None:
        assert label == AWSPENDING, "a put takes off AWSPENDING only"
        return PENDING_DROPPED
    if to_version_id == new_version_id:
        if stages is not None and label in stages:
            return REQUESTED
        assert label == AWSCURRENT, "a put attaches unnamed AWSCURRENT only"
        return DEFAULT_CURRENT
    assert label == AWSPREVIOUS, "a put moves AWSPREVIOUS only onto another version"
    return DEMOTED


def reason_of_stage_move(label: str, requested_label: str) -> str:
    """Why UpdateSecretVersionStage (U1-U11) moved ``label``: R-1 or R-3."""
    if label == requested_label:
        return REQUESTED
    assert label == AWSPREVIOUS, "a stage update moves its label and AWSPREVIOUS only"
    assert requested_label == AWSCURRENT, "AWSPREVIOUS follows an AWSCURRENT move"
    return DEMOTED


def reason_of_v1_move(label: str, to_version_id: str | None, request: Mapping[str, Any]) -> str:
    """The reason of a stored v1 ``LabelMoved`` (R-8), from that event alone: its
    label, target and request (operation and the allow-listed parameters the API
    records: ``clientRequestToken``, ``versionStages``, ``versionStage``). v1 wrote
    label moves for puts and stage updates only. Where the event cannot tell (calls
    made without the API's parameters), the reason is ``unknown-v1``."""
    operation = request.get("operation")
    parameters = request.get("parameters") or {}
    if operation in PUT_OPERATIONS:
        return _reason_of_v1_put_move(label, to_version_id, operation, parameters)
    if operation == "UpdateSecretVersionStage":
        if label != AWSPREVIOUS:
            return REQUESTED
        requested_label = parameters.get("versionStage")
        if requested_label in (AWSCURRENT, AWSPREVIOUS):
            return reason_of_stage_move(label, requested_label)
    return UNKNOWN_V1


def _reason_of_v1_put_move(
    label: str, to_version_id: str | None, operation: str, parameters: Mapping[str, Any]
) -> str:
    if to_version_id is None:
        return reason_of_put_move(label, None, "", None)
    if operation != "PutSecretValue":
        # CreateSecret and UpdateSecret never name stages: only P1 and P4 apply.
        return DEFAULT_CURRENT if label == AWSCURRENT else DEMOTED
    token = parameters.get("clientRequestToken")
    if isinstance(token, str):
        # The API recorded this put's members: VersionStages is there if it was sent.
        stages = parameters.get("versionStages")
        return reason_of_put_move(label, to_version_id, token, stages)
    if label not in (AWSCURRENT, AWSPREVIOUS):
        return REQUESTED
    return UNKNOWN_V1


def labels_after_stage_update(
    before: Mapping[str, str],
    versions: Mapping[str, object],
    label: str,
    move_to_version_id: str | None,
    remove_from_version_id: str | None,
) -> dict[str, str]:
    """Rules U1-U11 of UpdateSecretVersionStage; raises on any refusal."""
    if move_to_version_id is None and remove_from_version_id is None:
        raise InvalidParameterException(
            "You must specify MoveToVersionId, RemoveFromVersionId, or both."
        )
    for version_id in (move_to_version_id, remove_from_version_id):
        if version_id is not None and version_id not in versions:
            raise InvalidParameterException(
                f"The version {version_id} doesn't exist for this secret."
            )
    holder = before.get(label)
    if remove_from_version_id is not None and holder != remove_from_version_id:
        raise InvalidParameterException(
            f"Staging label {label} is not attached to version {remove_from_version_id}, "
            "so you can't remove it from that version."
        )
    after = dict(before)
    if move_to_version_id is not None:
        if holder is not None and holder != move_to_version_id and remove_from_version_id is None:
            raise InvalidParameterException(
                f"The parameter RemoveFromVersionId can't be empty. Staging label {label} is "
                f"currently attached to version {holder}, so you must explicitly reference "
                "that version in RemoveFromVersionId."
            )
        after[label] = move_to_version_id
    else:
        if label == AWSCURRENT:
            raise InvalidParameterException(
                "You can't remove the staging label AWSCURRENT without moving it to another "
                "version: a secret with versions always has exactly one AWSCURRENT version."
            )
        del after[label]
    if label == AWSCURRENT and holder is not None and after[AWSCURRENT] != holder:
        after[AWSPREVIOUS] = holder
    return after


def check_label_quota(after: Mapping[str, str], secret_arn: str) -> None:
    if len(after) > LABEL_ATTACHMENTS_MAX:
        raise LimitExceededException(
            f"You can't attach more than {LABEL_ATTACHMENTS_MAX} staging labels to the versions "
            f"of secret {secret_arn}; this request would attach {len(after)}."
        )


class Secret(Aggregate):
    """A secret: metadata, its versions (sealed values) and its label map."""

    TOPIC = "secretledger/Secret"

    class Event(Aggregate.Event):
        TOPIC = "secretledger/Secret.Event"
        request: dict[str, Any]

    class Created(Event, Aggregate.Created):
        TOPIC = "secretledger/SecretCreated"
        name: str
        arn: str
        description: str | None
        kms_key_id: str | None
        tags: list[dict[str, str]]

    class_version = 5

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A v1 snapshot's state: its versions were all sealed in format 1, and v1
        destroyed no data key. v1 counted its retention removals
        (``removed_version_count``) without naming them, so ``destroyed_version_ids``
        starts empty; the tokens of versions removed before the snapshot are refused
        from the data keys v1 kept (docs/events.md VD-3)."""
        state["versions"] = {
            version_id: {**record, "sealing": SEALING_V1}
            for version_id, record in state["versions"].items()
        }
        state.pop("removed_version_count", None)
        state["destroyed_version_ids"] = []

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """A v2 snapshot's state: v2 removed no tag and attached no resource policy, so
        the secret was ever tagged exactly when it has tags (TG-7)."""
        state["ever_tagged"] = bool(state["tags"])
        state["resource_policy"] = None

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """A v3 snapshot's state: v3 had no ``Accessed`` events (LA-2)."""
        state["accessed_dates"] = {}
        state["last_accessed_date"] = None

    @staticmethod
    def upcast_v4_v5(state: dict[str, Any]) -> None:
        """A v4 snapshot's state: v4 had no rotation."""
        state["rotation"] = None

    class VersionCreated(Event):
        """``sealing``: the format of ``ciphertext`` and ``fingerprint`` (S-1)."""

        TOPIC = "secretledger/VersionCreated"
        class_version = 2
        version_id: str
        kind: str
        ciphertext: bytes
        nonce: bytes
        fingerprint: bytes
        sealing: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["sealing"] = SEALING_V1

        def apply(self, aggregate: Secret) -> None:
            aggregate.versions[self.version_id] = VersionRecord(
                version_id=self.version_id,
                kind=self.kind,
                ciphertext=self.ciphertext,
                nonce=self.nonce,
                fingerprint=self.fingerprint,
                created_date=self.timestamp,
                sealing=self.sealing,
            )

    class LabelMoved(Event):
        """``reason``: one of LABEL_MOVE_REASONS (docs/events.md R-1 to R-8)."""

        TOPIC = "secretledger/LabelMoved"
        class_version = 2
        label: str
        from_version_id: str | None
        to_version_id: str | None
        reason: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["reason"] = reason_of_v1_move(
                state["label"], state["to_version_id"], state["request"]
            )

        def apply(self, aggregate: Secret) -> None:
            if self.to_version_id is None:
                del aggregate.labels[self.label]
            else:
                aggregate.labels[self.label] = self.to_version_id

    class VersionRemoved(Event):
        """A version removed by retention (``reason``: ``retention``). Version 2 says
        whether its data key was destroyed in the same transaction: always, since
        shredding was wired; version 1 events (older code kept the key) read as False.
        """

        TOPIC = "secretledger/VersionRemoved"
        class_version = 2
        version_id: str
        reason: str
        data_key_destroyed: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["data_key_destroyed"] = False

        def apply(self, aggregate: Secret) -> None:
            del aggregate.versions[self.version_id]
            aggregate.accessed_dates.pop(self.version_id, None)
            aggregate.remember_gone_version(self.version_id)

    class VersionDestroyed(Event):
        """A version's data key was destroyed in this event's transaction: its value
        can never be decrypted again (crypto-shredding). The version leaves the live
        versions; ``reason`` is one of ``DESTROY_REASONS``."""

        TOPIC = "secretledger/VersionDestroyed"
        version_id: str
        reason: str

        def apply(self, aggregate: Secret) -> None:
            assert self.reason in DESTROY_REASONS, f"unknown destroy reason {self.reason!r}"
            del aggregate.versions[self.version_id]
            aggregate.accessed_dates.pop(self.version_id, None)
            aggregate.remember_gone_version(self.version_id)

    class Accessed(Event):
        """LA-2: version ``version_id``'s value was read on ``accessed_date`` (midnight
        UTC), for the first time that day. LA-3: an access is not a change, so the
        secret's ``modified_on`` (its LastChangedDate) stays that of its last change."""

        TOPIC = "secretledger/SecretAccessed"
        version_id: str
        accessed_date: datetime

        def apply(self, aggregate: Secret) -> None:
            aggregate.accessed_dates[self.version_id] = self.accessed_date
            latest = aggregate.last_accessed_date
            if latest is None or latest < self.accessed_date:
                aggregate.last_accessed_date = self.accessed_date

        def mutate(self, aggregate: Any) -> Any:
            modified_on = aggregate.modified_on
            mutated = super().mutate(aggregate)
            assert mutated is not None, "an access happens to an existing secret"
            mutated.modified_on = modified_on
            return mutated

    class MetadataUpdated(Event):
        TOPIC = "secretledger/SecretMetadataUpdated"
        description: str | None
        kms_key_id: str | None

        def apply(self, aggregate: Secret) -> None:
            if self.description is not None:
                aggregate.description = self.description
            if self.kms_key_id is not None:
                aggregate.kms_key_id = self.kms_key_id

    class DeletionScheduled(Event):
        TOPIC = "secretledger/SecretDeletionScheduled"
        deletion_date: datetime
        recovery_window_days: int

        def apply(self, aggregate: Secret) -> None:
            aggregate.deletion_date = self.deletion_date

    class Restored(Event):
        TOPIC = "secretledger/SecretRestored"

        def apply(self, aggregate: Secret) -> None:
            aggregate.deletion_date = None

    class Deleted(Event):
        """``labels_detached``: True when every label was taken off by
        ``LabelMoved(reason="detached-by-deletion")`` events just before this one
        (D-1); False for v1 events, which left the labels attached in the log and
        readers take off at this event (D-2)."""

        TOPIC = "secretledger/SecretDeleted"
        class_version = 2
        forced: bool
        labels_detached: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["labels_detached"] = False

        def apply(self, aggregate: Secret) -> None:
            aggregate.is_deleted = True

    # Rotation (docs/rotation.md)

    class RotationConfigured(Event):
        """RO-1: rotation turned on with this function and these rules (as given)."""

        TOPIC = "secretledger/RotationConfigured"
        rotation_lambda_arn: str
        rotation_rules: dict[str, Any]

        def apply(self, aggregate: Secret) -> None:
            previous = aggregate.rotation
            aggregate.rotation = RotationState(
                enabled=True,
                lambda_arn=self.rotation_lambda_arn,
                rules=dict(self.rotation_rules),
                last_rotated_date=previous["last_rotated_date"] if previous else None,
                window_start=previous["window_start"] if previous else None,
                next_rotation_date=previous["next_rotation_date"] if previous else None,
                version_id=previous["version_id"] if previous else None,
                runner=previous["runner"] if previous else RUNNER_EXTERNAL,
                attempts=previous["attempts"] if previous else 0,
                attempt_started_date=previous["attempt_started_date"] if previous else None,
                attempt_failed_date=previous["attempt_failed_date"] if previous else None,
            )

    class RotationDisabled(Event):
        """RO-9: CancelRotateSecret turned rotation off; no next rotation date."""

        TOPIC = "secretledger/RotationDisabled"

        def apply(self, aggregate: Secret) -> None:
            assert aggregate.rotation is not None, "only a configured rotation is disabled"
            aggregate.rotation["enabled"] = False
            aggregate.rotation["window_start"] = None
            aggregate.rotation["next_rotation_date"] = None

    class RotationScheduled(Event):
        """RO-8: the next rotation window: it opens at ``window_start``; the rotation
        happens on or before ``next_rotation_date``, the window's end."""

        TOPIC = "secretledger/RotationScheduled"
        window_start: datetime
        next_rotation_date: datetime

        def apply(self, aggregate: Secret) -> None:
            assert aggregate.rotation is not None, "only a configured rotation is scheduled"
            aggregate.rotation["window_start"] = self.window_start
            aggregate.rotation["next_rotation_date"] = self.next_rotation_date

    class PendingVersionStaged(Event):
        """RO-3: a rotation created version ``version_id`` without a value (the
        ``LabelMoved`` of AWSPENDING onto it follows); ``runner`` runs its steps."""

        TOPIC = "secretledger/PendingVersionStaged"
        version_id: str
        runner: str

        def apply(self, aggregate: Secret) -> None:
            aggregate.versions[self.version_id] = StagedVersion(
                version_id=self.version_id, created_date=self.timestamp
            )
            assert aggregate.rotation is not None, "a configured rotation stages versions"
            aggregate.rotation["version_id"] = self.version_id
            aggregate.rotation["runner"] = self.runner
            aggregate.rotation["attempts"] = 0
            aggregate.rotation["attempt_started_date"] = None
            aggregate.rotation["attempt_failed_date"] = None

    class VersionFilled(Event):
        """RO-4: the value of staged version ``version_id`` arrived (sealed, as in
        ``VersionCreated``); the put's label moves follow."""

        TOPIC = "secretledger/VersionFilled"
        version_id: str
        kind: str
        ciphertext: bytes
        nonce: bytes
        fingerprint: bytes
        sealing: int

        def apply(self, aggregate: Secret) -> None:
            staged = aggregate.versions[self.version_id]
            assert not is_filled(staged), "only a staged version is filled"
            aggregate.versions[self.version_id] = VersionRecord(
                version_id=self.version_id,
                kind=self.kind,
                ciphertext=self.ciphertext,
                nonce=self.nonce,
                fingerprint=self.fingerprint,
                created_date=staged["created_date"],
                sealing=self.sealing,
            )

    class RotationStarted(Event):
        """RO-6: attempt ``attempt`` (1, 2, ...) of the rotation to ``version_id``."""

        TOPIC = "secretledger/RotationStarted"
        version_id: str
        attempt: int

        def apply(self, aggregate: Secret) -> None:
            assert aggregate.rotation is not None, "a configured rotation starts"
            aggregate.rotation["attempts"] = self.attempt
            aggregate.rotation["attempt_started_date"] = self.timestamp

    class RotationFailed(Event):
        """RO-7: attempt ``attempt`` failed in ``step``; ``error_message`` says how
        (never anything the function printed or returned)."""

        TOPIC = "secretledger/RotationFailed"
        version_id: str
        attempt: int
        step: str
        error_message: str

        def apply(self, aggregate: Secret) -> None:
            assert aggregate.rotation is not None, "a configured rotation fails"
            aggregate.rotation["attempt_failed_date"] = self.timestamp

    class RotationSucceeded(Event):
        """RO-6: the rotation to ``version_id`` completed; the event time is the
        secret's LastRotatedDate."""

        TOPIC = "secretledger/RotationSucceeded"
        version_id: str
        attempt: int

        def apply(self, aggregate: Secret) -> None:
            assert aggregate.rotation is not None, "a configured rotation succeeds"
            aggregate.rotation["last_rotated_date"] = self.timestamp

    # Tags and the resource policy (docs/policies.md TG-5 to TG-7, RP-12)

    class Tagged(Event):
        """TG-5: ``tags`` were attached, or given a new value: only those pairs of the
        request that changed something, in request order."""

        TOPIC = "secretledger/SecretTagged"
        tags: list[Tag]

        def apply(self, aggregate: Secret) -> None:
            aggregate.tags = tags_after(aggregate.tags, self.tags)
            aggregate.ever_tagged = True

    class Untagged(Event):
        """TG-5: the tags with ``tag_keys`` were taken off (keys the secret had)."""

        TOPIC = "secretledger/SecretUntagged"
        tag_keys: list[str]

        def apply(self, aggregate: Secret) -> None:
            aggregate.tags = tags_without(aggregate.tags, self.tag_keys)

    class ResourcePolicyPut(Event):
        """RP-12: ``resource_policy`` (its text as sent) is the secret's policy now;
        ``block_public_policy``: whether the call asked to refuse a public one (RP-8)."""

        TOPIC = "secretledger/SecretResourcePolicyPut"
        resource_policy: str
        block_public_policy: bool

        def apply(self, aggregate: Secret) -> None:
            aggregate.resource_policy = self.resource_policy

    class ResourcePolicyDeleted(Event):
        """RP-12: the secret has no resource policy any more."""

        TOPIC = "secretledger/SecretResourcePolicyDeleted"

        def apply(self, aggregate: Secret) -> None:
            aggregate.resource_policy = None

    def __init__(
        self,
        name: str,
        arn: str,
        description: str | None,
        kms_key_id: str | None,
        tags: list[dict[str, str]],
        request: dict[str, Any],
    ) -> None:
        self.name = name
        self.arn = arn
        self.description = description
        self.kms_key_id = kms_key_id
        self.tags = tags
        self.versions: dict[str, VersionRecord | StagedVersion] = {}
        self.labels: dict[str, str] = {}
        self.deletion_date: datetime | None = None
        self.is_deleted = False
        self.destroyed_version_ids: list[str] = []
        self.rotation: RotationState | None = None

        self.ever_tagged = bool(tags)
        self.resource_policy: str | None = None
        self.accessed_dates: dict[str, datetime] = {}
        self.last_accessed_date: datetime | None = None

    @classmethod
    def create(
        cls,
        *,
        name: str,
        arn: str,
        description: str | None,
        kms_key_id: str | None,
        tags: list[dict[str, str]],
        request: RequestContext,
        now: datetime,
    ) -> Secret:
        """``tags`` as the request gave them: checked here (TG-1 to TG-4)."""
        checked = checked_tags(tags)
        require_tag_count(len(checked))
        return cls._create(
            cls.Created,
            id=secret_id_for_arn(arn),
            timestamp=now,
            name=name,
            arn=arn,
            description=description,
            kms_key_id=kms_key_id,
            tags=checked,
            request=request.to_event(),
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        """The repository copies cached aggregates on every get. Version records are
        never mutated once created, so sharing them keeps a put's cost independent of
        how many versions the secret holds in anything but a shallow dict copy.
        ``destroyed_version_ids`` is shared too: it is replaced, never mutated."""
        duplicate = object.__new__(type(self))
        duplicate.__dict__.update(self.__dict__)
        duplicate.versions = dict(self.versions)
        duplicate.labels = dict(self.labels)
        duplicate.tags = [dict(tag) for tag in self.tags]
        duplicate.accessed_dates = dict(self.accessed_dates)
        duplicate.rotation = None if self.rotation is None else RotationState(**self.rotation)
        duplicate._pending_events = list(self._pending_events)
        return duplicate

    # Queries

    def is_scheduled_for_deletion(self) -> bool:
        return self.deletion_date is not None

    def labels_of(self, version_id: str) -> list[str]:
        return sorted(label for label, holder in self.labels.items() if holder == version_id)

    def version_ids_to_stages(self) -> dict[str, list[str]]:
        """Labelled versions only, in creation order; deprecated ones are absent. One
        pass over the labels, not one per version: DescribeSecret and ListSecrets
        call this for every secret, which may hold a hundred versions."""
        labels_by_version: dict[str, list[str]] = {}
        for label, holder in self.labels.items():
            labels_by_version.setdefault(holder, []).append(label)
        return {
            version_id: sorted(labels_by_version[version_id])
            for version_id in self.versions
            if version_id in labels_by_version
        }

    def is_gone(self, version_id: str) -> bool:
        """Whether the version was destroyed or removed: its id can never name a new
        version, and its value can never be read again."""
        ids = self.destroyed_version_ids
        index = bisect.bisect_left(ids, version_id)
        return index < len(ids) and ids[index] == version_id

    def remember_gone_version(self, version_id: str) -> None:
        """Keeps ``destroyed_version_ids`` sorted (membership is a binary search) and
        replaces the list instead of mutating it, so that copies can share it: a put
        that removes a version pays one list copy, not a copy per repository get."""
        assert not self.is_gone(version_id), f"version {version_id} is gone already"
        ids = list(self.destroyed_version_ids)
        bisect.insort(ids, version_id)
        self.destroyed_version_ids = ids

    def has_value(self) -> bool:
        """Whether any version has its value (staged versions have none, RO-3)."""
        return any(is_filled(version) for version in self.versions.values())

    def rotation_in_progress(self) -> str | None:
        """RO-2: the version of a rotation staged and not finished (it holds AWSPENDING
        but not AWSCURRENT), or None."""
        if self.rotation is None:
            return None
        version_id = self.rotation["version_id"]
        holds_pending = version_id is not None and self.labels.get(AWSPENDING) == version_id
        if holds_pending and self.labels.get(AWSCURRENT) != version_id:
            return version_id
        return None

    def pending_blocks_rotation(self) -> bool:
        """RO-2 (R6): AWSPENDING sits on a version that does not hold AWSCURRENT."""
        holder = self.labels.get(AWSPENDING)
        return holder is not None and holder != self.labels.get(AWSCURRENT)

    def replayed_version(self, version_id: str, fingerprint: bytes) -> VersionRecord | None:
        """T5/T7: the existing version for a reused token, or None for a new token.
        ``fingerprint``: the retried value's, in the format of the version the token
        names (S-3)."""
        existing = self.versions.get(version_id)
        if existing is None:
            return None
        assert is_filled(existing), "a staged version is filled, not replayed (RO-4)"
        if not hmac.compare_digest(existing["fingerprint"], fingerprint):
            raise token_in_use(version_id, self.arn)
        return existing

    def access_changes(self, version_id: str, now: datetime) -> bool:
        """LA-2: whether a read of ``version_id`` at ``now`` is its first that UTC day."""
        accessed_date = self.accessed_dates.get(version_id)
        return accessed_date is None or accessed_date < start_of_utc_day(now)

    # Commands

    def note_access(self, version_id: str, *, request: RequestContext, now: datetime) -> None:
        """LA-2: at most one ``Accessed`` per version per UTC day."""
        assert version_id in self.versions, "a read version exists"
        if not self.access_changes(version_id, now):
            return
        self.trigger_event(
            self.Accessed,
            timestamp=self._event_time(now),
            request=request.to_event(),
            version_id=version_id,
            accessed_date=start_of_utc_day(now),
        )

    def add_version(
        self,
        sealed: SealedVersion,
        stages: list[str] | None,
        *,
        request: RequestContext,
        now: datetime,
        version_count_max: int = VERSION_COUNT_MAX_DEFAULT,
    ) -> None:
        """Create a version and move labels (P1-P9), removing old deprecated versions
        beyond the retention threshold; all checks run before any event."""
        assert sealed.sealing in SEALINGS, "a known sealing format"
        self._refuse_if_scheduled()
        if sealed.version_id in self.versions:
            raise ResourceExistsException(
                f"Version {sealed.version_id} already exists for secret {self.arn}."
            )
        if self.is_gone(sealed.version_id):
            raise token_in_use(sealed.version_id, self.arn)
        after = labels_after_put(self.labels, sealed.version_id, stages, self.has_value())
        abandoned = self.rotation_in_progress()
        moves_current = after.get(AWSCURRENT) == sealed.version_id
        if abandoned is not None and moves_current and after.get(AWSPENDING) == abandoned:
            del after[AWSPENDING]  # RO-10 (P8): a put during a rotation abandons it
        check_label_quota(after, self.arn)
        removals = self._versions_to_remove(after, now)
        count_after = len(self.versions) + 1 - len(removals)
        if count_after > version_count_max:
            raise LimitExceededException(
                f"You can't create more than {version_count_max} versions of secret {self.arn}: "
                "deprecated versions are removed only when they are older than 24 hours."
            )
        timestamp = self._event_time(now)
        context = request.to_event()
        self._seal_value(self.VersionCreated, sealed, stages, after, timestamp, context)
        for version_id in removals:
            self.trigger_event(
                self.VersionRemoved,
                timestamp=timestamp,
                request=context,
                version_id=version_id,
                reason=REMOVED_BY_RETENTION,
                data_key_destroyed=True,
            )
        if self.labels.get(AWSCURRENT) == sealed.version_id:
            self._reschedule_after_manual_rotation(request, timestamp)
        self.assert_invariants()

    def fill_version(
        self,
        sealed: SealedVersion,
        stages: list[str] | None,
        *,
        request: RequestContext,
        now: datetime,
    ) -> None:
        """RO-4: the first put naming a staged version gives it its value, then moves
        labels as a put of a new version would (P1-P9)."""
        assert sealed.sealing in SEALINGS, "a known sealing format"
        staged = self.versions.get(sealed.version_id)
        assert staged is not None and not is_filled(staged), "a staged version is filled"
        self._refuse_if_scheduled()
        after = labels_after_put(self.labels, sealed.version_id, stages, self.has_value())
        check_label_quota(after, self.arn)
        timestamp = self._event_time(now)
        context = request.to_event()
        self._seal_value(self.VersionFilled, sealed, stages, after, timestamp, context)
        self._complete_external_rotation(request, timestamp)
        self.assert_invariants()

    def _seal_value(
        self,
        event_class: type[Secret.VersionCreated] | type[Secret.VersionFilled],
        sealed: SealedVersion,
        stages: list[str] | None,
        after: Mapping[str, str],
        timestamp: datetime,
        context: dict[str, Any],
    ) -> None:
        """A put's events: the sealed value (a new version, or a staged one filled), then
        one ``LabelMoved`` per label the put attaches, moves or detaches (P1-P9)."""
        self.trigger_event(
            event_class,
            timestamp=timestamp,
            request=context,
            version_id=sealed.version_id,
            kind=sealed.kind,
            ciphertext=sealed.ciphertext,
            nonce=sealed.nonce,
            fingerprint=sealed.fingerprint,
            sealing=sealed.sealing,
        )
        reasons = {
            label: reason_of_put_move(label, to_version_id, sealed.version_id, stages)
            for label, _, to_version_id in moves_between(self.labels, after)
        }
        self._move_labels(after, reasons, timestamp, context)

    def update_stage(
        self,
        label: str,
        move_to_version_id: str | None,
        remove_from_version_id: str | None,
        *,
        request: RequestContext,
        now: datetime,
    ) -> None:
        self._refuse_if_scheduled()
        after = labels_after_stage_update(
            self.labels, self.versions, label, move_to_version_id, remove_from_version_id
        )
        current = self.versions.get(after.get(AWSCURRENT, ""))
        if current is not None and not is_filled(current):
            raise InvalidRequestException(
                f"You can't attach AWSCURRENT to version {current['version_id']}: it has "
                "no secret value yet."
            )
        check_label_quota(after, self.arn)
        reasons = {
            moved: reason_of_stage_move(moved, label)
            for moved, _, _ in moves_between(self.labels, after)
        }
        timestamp = self._event_time(now)
        self._move_labels(after, reasons, timestamp, request.to_event())
        self._complete_external_rotation(request, timestamp)
        self.assert_invariants()

    def update_metadata(
        self,
        description: str | None,
        kms_key_id: str | None,
        *,
        request: RequestContext,
        now: datetime,
    ) -> None:
        self._refuse_if_scheduled()
        if description is None and kms_key_id is None:
            return
        self.trigger_event(
            self.MetadataUpdated,
            timestamp=self._event_time(now),
            request=request.to_event(),
            description=description,
            kms_key_id=kms_key_id,
        )

    def schedule_deletion(
        self, recovery_window_days: int, *, request: RequestContext, now: datetime
    ) -> None:
        self._refuse_if_scheduled()
        timestamp = self._event_time(now)
        self.trigger_event(
            self.DeletionScheduled,
            timestamp=timestamp,
            request=request.to_event(),
            deletion_date=timestamp + timedelta(days=recovery_window_days),
            recovery_window_days=recovery_window_days,
        )

    def restore(self, *, request: RequestContext, now: datetime) -> None:
        """§14 #14: restoring a secret that is not scheduled succeeds with no change."""
        if self.deletion_date is None:
            return
        self.trigger_event(
            self.Restored, timestamp=self._event_time(now), request=request.to_event()
        )

    def destroy_version(self, version_id: str, *, request: RequestContext, now: datetime) -> None:
        """Crypto-shred one version: detach its labels (one ``LabelMoved`` each, reason
        detached-by-destroy, R-6), then ``VersionDestroyed`` (VD-1). The version
        holding AWSCURRENT is refused; a version that is gone already is a no-op (no
        event)."""
        self._refuse_if_scheduled()
        if self.is_gone(version_id):
            return
        if version_id not in self.versions:
            raise version_not_found(version_id)
        if self.labels.get(AWSCURRENT) == version_id:
            raise InvalidRequestException(
                f"You can't destroy version {version_id} of secret {self.arn} because it has "
                "the staging label AWSCURRENT. Move AWSCURRENT to another version first "
                "(UpdateSecretVersionStage)."
            )
        timestamp = self._event_time(now)
        context = request.to_event()
        after = {label: holder for label, holder in self.labels.items() if holder != version_id}
        reasons = {label: DETACHED_BY_DESTROY for label in self.labels if label not in after}
        self._move_labels(after, reasons, timestamp, context)
        self._trigger_destroyed(version_id, DESTROYED_ON_REQUEST, timestamp, context)
        self.assert_invariants()

    def delete(self, *, forced: bool, request: RequestContext, now: datetime) -> None:
        """D-1: every label comes off (one ``LabelMoved``, reason detached-by-deletion,
        per label, in label order); then every live version's data key is destroyed
        (one ``VersionDestroyed`` each, in creation order); then ``Deleted``: all at
        one time."""
        assert not self.is_deleted, "a deleted secret is never loaded for a command"
        timestamp = self._event_time(now)
        context = request.to_event()
        reasons = dict.fromkeys(self.labels, DETACHED_BY_DELETION)
        self._move_labels({}, reasons, timestamp, context)
        reason = DESTROYED_BY_FORCED_DELETION if forced else DESTROYED_BY_PURGE
        for version_id in list(self.versions):
            self._trigger_destroyed(version_id, reason, timestamp, context)
        self.trigger_event(
            self.Deleted,
            timestamp=timestamp,
            request=context,
            forced=forced,
            labels_detached=True,
        )
        self.assert_invariants()

    def tag(self, tags: list[Tag], *, request: RequestContext, now: datetime) -> None:
        """TagResource (TG-1 to TG-6): no event when nothing would change."""
        self._refuse_if_scheduled()
        changed = changed_tags(self.tags, checked_tags(tags))
        if not changed:
            return
        self.trigger_event(
            self.Tagged, timestamp=self._event_time(now), request=request.to_event(), tags=changed
        )

    def untag(self, tag_keys: list[str], *, request: RequestContext, now: datetime) -> None:
        """UntagResource (TG-2, TG-5): keys the secret does not have are ignored; no
        event when none is left."""
        self._refuse_if_scheduled()
        held = {tag.get("Key") for tag in self.tags}
        removed = [key for key in checked_tag_keys(tag_keys) if key in held]
        if not removed:
            return
        self.trigger_event(
            self.Untagged,
            timestamp=self._event_time(now),
            request=request.to_event(),
            tag_keys=removed,
        )

    def put_resource_policy(
        self,
        resource_policy: str,
        *,
        block_public_policy: bool,
        request: RequestContext,
        now: datetime,
    ) -> None:
        """PutResourcePolicy (RP-7, RP-8, RP-12): no event when the same text is
        already attached."""
        self._refuse_if_scheduled()
        require_attachable(resource_policy, block_public_policy=block_public_policy)
        if resource_policy == self.resource_policy:
            return
        self.trigger_event(
            self.ResourcePolicyPut,
            timestamp=self._event_time(now),
            request=request.to_event(),
            resource_policy=resource_policy,
            block_public_policy=block_public_policy,
        )

    def delete_resource_policy(self, *, request: RequestContext, now: datetime) -> None:
        """DeleteResourcePolicy (RP-12): without a policy, no event."""
        self._refuse_if_scheduled()
        if self.resource_policy is None:
            return
        self.trigger_event(
            self.ResourcePolicyDeleted, timestamp=self._event_time(now), request=request.to_event()
        )

    # Rotation (docs/rotation.md)

    def rotate(
        self,
        version_id: str,
        lambda_arn: str,
        rules: dict[str, Any] | None,
        rotate_immediately: bool,
        runner: str,
        *,
        request: RequestContext,
        now: datetime,
    ) -> None:
        """RotateSecret after the secret was resolved and the function found (R1-R5):
        RO-2 refuses while a rotation is unfinished; RO-1 stores the configuration
        (an event only if it changes); then RO-3 stages ``version_id``, or, not
        rotating at once, RO-8 schedules the next window."""
        assert runner in ROTATION_RUNNERS, "a known runner"
        self._refuse_if_scheduled()
        if self.pending_blocks_rotation():
            raise InvalidRequestException(ROTATION_INCOMPLETE_MESSAGE)
        if version_id in self.versions:
            raise InvalidParameterException(
                f"The ClientRequestToken {version_id} is already the VersionId of a version "
                "of this secret; use a new token for each rotation."
            )
        if rules is None:
            rules = self.rotation["rules"] if self.rotation is not None else {}
        elif not rules:
            raise InvalidParameterException(
                "RotationRules must have AutomaticallyAfterDays or ScheduleExpression."
            )
        if rules:
            parse_rules(rules)
        timestamp = self._event_time(now)
        context = request.to_event()
        rotation = self.rotation
        if (
            rotation is None
            or not rotation["enabled"]
            or rotation["lambda_arn"] != lambda_arn
            or rotation["rules"] != rules
        ):
            self.trigger_event(
                self.RotationConfigured,
                timestamp=timestamp,
                request=context,
                rotation_lambda_arn=lambda_arn,
                rotation_rules=dict(rules),
            )
        if rotate_immediately:
            self._stage(version_id, runner, timestamp, context)
        else:
            self._schedule_next(timestamp, context)
        self.assert_invariants()

    def start_scheduled_rotation(
        self, version_id: str, runner: str, *, request: RequestContext, now: datetime
    ) -> None:
        """RO-8: the service starts the rotation whose window has opened."""
        assert self.is_rotation_due(now), "only a due rotation starts"
        assert version_id not in self.versions, "a fresh token"
        self._stage(version_id, runner, self._event_time(now), request.to_event())
        self.assert_invariants()

    def is_rotation_due(self, now: datetime) -> bool:
        """RO-8: rotation on, its window open, no rotation unfinished, not scheduled
        for deletion."""
        rotation = self.rotation
        return (
            rotation is not None
            and rotation["enabled"]
            and rotation["window_start"] is not None
            and rotation["window_start"] <= now
            and not self.pending_blocks_rotation()
            and self.deletion_date is None
        )

    def start_rotation_attempt(self, *, request: RequestContext, now: datetime) -> int:
        """RO-6: the next attempt of the rotation in progress; its number."""
        version_id = self.rotation_in_progress()
        assert self.rotation is not None and version_id is not None, "a rotation in progress"
        attempt = self.rotation["attempts"] + 1
        self.trigger_event(
            self.RotationStarted,
            timestamp=self._event_time(now),
            request=request.to_event(),
            version_id=version_id,
            attempt=attempt,
        )
        return attempt

    def fail_rotation_attempt(
        self,
        version_id: str,
        attempt: int,
        step: str,
        error_message: str,
        *,
        request: RequestContext,
        now: datetime,
    ) -> None:
        """RO-7: the attempt failed; AWSPENDING stays where it is."""
        assert step in ROTATION_STEPS, "a step of the rotation protocol"
        self.trigger_event(
            self.RotationFailed,
            timestamp=self._event_time(now),
            request=request.to_event(),
            version_id=version_id,
            attempt=attempt,
            step=step,
            error_message=error_message,
        )

    def complete_rotation(
        self, version_id: str, attempt: int, *, request: RequestContext, now: datetime
    ) -> None:
        """RO-6: the rotation to ``version_id`` succeeded (it holds AWSCURRENT):
        AWSPENDING comes off it, and the next window is scheduled."""
        assert self.labels.get(AWSCURRENT) == version_id, "success: the token is current"
        timestamp = self._event_time(now)
        context = request.to_event()
        self.trigger_event(
            self.RotationSucceeded,
            timestamp=timestamp,
            request=context,
            version_id=version_id,
            attempt=attempt,
        )
        if self.labels.get(AWSPENDING) == version_id:
            after = dict(self.labels)
            del after[AWSPENDING]
            self._move_labels(after, {AWSPENDING: ROTATION_COMPLETED}, timestamp, context)
        self._schedule_next(timestamp, context)
        self.assert_invariants()

    def disable_rotation(self, *, request: RequestContext, now: datetime) -> None:
        """RO-9: CancelRotateSecret. A secret never configured, or already off, is
        left as it is; AWSPENDING is not touched."""
        self._refuse_if_scheduled()
        if self.rotation is None or not self.rotation["enabled"]:
            return
        self.trigger_event(
            self.RotationDisabled, timestamp=self._event_time(now), request=request.to_event()
        )

    def _stage(
        self, version_id: str, runner: str, timestamp: datetime, context: dict[str, Any]
    ) -> None:
        self.trigger_event(
            self.PendingVersionStaged,
            timestamp=timestamp,
            request=context,
            version_id=version_id,
            runner=runner,
        )
        after = {**self.labels, AWSPENDING: version_id}
        self._move_labels(after, {AWSPENDING: ROTATION_STAGED}, timestamp, context)
        if runner == RUNNER_EXTERNAL:
            self.trigger_event(
                self.RotationStarted,
                timestamp=timestamp,
                request=context,
                version_id=version_id,
                attempt=1,
            )

    def _schedule_next(self, timestamp: datetime, context: dict[str, Any]) -> None:
        """RO-8: the first window after ``timestamp``, when the rules set a schedule."""
        assert self.rotation is not None, "a configured rotation is scheduled"
        if not self.rotation["rules"]:
            return
        window = parse_rules(self.rotation["rules"]).next_window(timestamp)
        self.trigger_event(
            self.RotationScheduled,
            timestamp=timestamp,
            request=context,
            window_start=window.start,
            next_rotation_date=window.end,
        )

    def _reschedule_after_manual_rotation(
        self, request: RequestContext, timestamp: datetime
    ) -> None:
        """RO-8: a put that makes a new current version counts as a rotation when the
        next rotation date is computed (LastRotatedDate stays)."""
        if self.rotation is not None and self.rotation["enabled"]:
            self._schedule_next(timestamp, request.to_event())

    def _complete_external_rotation(self, request: RequestContext, timestamp: datetime) -> None:
        """RO-5: a rotation nobody in the ledger runs completes when its version
        becomes current, in the same transaction as that move."""
        rotation = self.rotation
        if rotation is None or rotation["runner"] != RUNNER_EXTERNAL:
            return
        version_id = rotation["version_id"]
        if (
            version_id is None
            or not rotation["enabled"]
            or self.labels.get(AWSCURRENT) != version_id
            or self.labels.get(AWSPENDING) != version_id
        ):
            return
        self.complete_rotation(version_id, rotation["attempts"], request=request, now=timestamp)

    # Invariants and helpers

    def assert_invariants(self) -> None:
        assert len(self.labels) <= LABEL_ATTACHMENTS_MAX, "label quota exceeded"
        for label, version_id in self.labels.items():
            assert version_id in self.versions, f"label {label} on a missing version"
            assert not self.is_gone(version_id), f"label {label} on a gone version"
        if self.has_value() and not self.is_deleted:
            assert AWSCURRENT in self.labels, "a secret with values has no AWSCURRENT"
        current = self.versions.get(self.labels.get(AWSCURRENT, ""))
        assert current is None or is_filled(current), "AWSCURRENT is on a version with a value"

    def _refuse_if_scheduled(self) -> None:
        if self.deletion_date is not None:
            raise marked_for_deletion()

    def _event_time(self, now: datetime) -> datetime:
        """Event times never go backwards within a secret, so time order agrees with
        log order for time-travel queries."""
        return max(now, self.modified_on)

    def _move_labels(
        self,
        after: Mapping[str, str],
        reasons: Mapping[str, str],
        timestamp: datetime,
        context: dict[str, Any],
    ) -> None:
        """One ``LabelMoved`` per label whose holder differs; ``reasons``: why, per label."""
        for label, from_version_id, to_version_id in moves_between(self.labels, after):
            reason = reasons[label]
            assert reason in LABEL_MOVE_REASONS and reason != UNKNOWN_V1, "a known reason"
            self.trigger_event(
                self.LabelMoved,
                timestamp=timestamp,
                request=context,
                label=label,
                from_version_id=from_version_id,
                to_version_id=to_version_id,
                reason=reason,
            )

    def _trigger_destroyed(
        self, version_id: str, reason: str, timestamp: datetime, context: dict[str, Any]
    ) -> None:
        self.trigger_event(
            self.VersionDestroyed,
            timestamp=timestamp,
            request=context,
            version_id=version_id,
            reason=reason,
        )

    def _versions_to_remove(self, after: Mapping[str, str], now: datetime) -> list[str]:
        """Deprecated versions older than 24 hours, oldest first, just enough to bring
        the count (the new version included) back to the retention threshold."""
        excess = len(self.versions) + 1 - VERSION_RETENTION_THRESHOLD
        if excess <= 0:
            return []
        labelled = set(after.values())
        cutoff = now - VERSION_RETENTION_AGE
        removable: list[str] = []
        for version_id, version in self.versions.items():
            if len(removable) == excess:
                break
            if version_id not in labelled and version["created_date"] <= cutoff:
                removable.append(version_id)
        return removable


class SecretName(Aggregate):
    """Which secret currently holds a name. Creating a secret claims its name in the
    same transaction, so two concurrent creates of one name conflict and the loser
    sees ResourceExistsException on retry. Force deletion or purge releases it."""

    TOPIC = "secretledger/SecretName"

    class Event(Aggregate.Event):
        TOPIC = "secretledger/SecretName.Event"
        request: dict[str, Any]

    class Registered(Event, Aggregate.Created):
        TOPIC = "secretledger/SecretNameRegistered"
        name: str

    class Claimed(Event):
        """``name``: the name claimed (NM-1); v1 events are upcast from their ARN."""

        TOPIC = "secretledger/SecretNameClaimed"
        class_version = 2
        secret_id: uuid.UUID
        arn: str
        name: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["name"] = name_of_secret_arn(state["arn"])

        def apply(self, aggregate: SecretName) -> None:
            aggregate.secret_id = self.secret_id
            aggregate.arn = self.arn

    class Released(Event):
        TOPIC = "secretledger/SecretNameReleased"
        secret_id: uuid.UUID

        def apply(self, aggregate: SecretName) -> None:
            aggregate.secret_id = None
            aggregate.arn = None

    def __init__(self, name: str, request: dict[str, Any]) -> None:
        self.name = name
        self.secret_id: uuid.UUID | None = None
        self.arn: str | None = None

    @classmethod
    def register(cls, name: str, *, request: RequestContext, now: datetime) -> SecretName:
        return cls._create(
            cls.Registered,
            id=name_id_for(name),
            timestamp=now,
            name=name,
            request=request.to_event(),
        )

    def claim(
        self, secret_id: uuid.UUID, arn: str, *, request: RequestContext, now: datetime
    ) -> None:
        assert self.secret_id is None, "a name is claimed by one secret at a time"
        assert name_of_secret_arn(arn) == self.name, "a secret claims the name in its ARN"
        self.trigger_event(
            self.Claimed,
            timestamp=max(now, self.modified_on),
            request=request.to_event(),
            secret_id=secret_id,
            arn=arn,
            name=self.name,
        )

    def release(self, secret_id: uuid.UUID, *, request: RequestContext, now: datetime) -> None:
        if self.secret_id != secret_id:
            return
        self.trigger_event(
            self.Released,
            timestamp=max(now, self.modified_on),
            request=request.to_event(),
            secret_id=secret_id,
        )


class ApiCall(Aggregate):
    """A call that changed no secret: a read, an idempotent replay, a failure or a
    denial. Kept out of the `Secret` streams (it is not a state change of a secret)
    but in the same log, so the audit projection sees every call in log order."""

    TOPIC = "secretledger/ApiCall"

    class Event(Aggregate.Event):
        TOPIC = "secretledger/ApiCall.Event"
        request: dict[str, Any]

    class Created(Event, Aggregate.Created):
        TOPIC = "secretledger/ApiCall.Created"

    class Recorded(Created):
        """``denials``: each permission the call was refused (AZ-12), with the
        statement that decided; ``refusals_counted``: for the summary of refused
        requests that were counted, not recorded one by one (DR-2), their ``count``
        and the window (``window_start``, ``window_end``, RFC 3339)."""

        TOPIC = "secretledger/ApiCallRecorded"
        class_version = 2
        read_only: bool
        resources: list[dict[str, str | None]]
        error_code: str | None
        error_message: str | None
        denials: list[dict[str, Any]]
        refusals_counted: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Calls recorded before authorization had no denials and no summaries."""
            state["denials"] = []
            state["refusals_counted"] = None

    def __init__(
        self,
        request: dict[str, Any],
        read_only: bool,
        resources: list[dict[str, str | None]],
        error_code: str | None,
        error_message: str | None,
        denials: list[dict[str, Any]],
        refusals_counted: dict[str, Any] | None,
    ) -> None:
        self.request = request
        self.read_only = read_only
        self.resources = resources
        self.error_code = error_code
        self.error_message = error_message
        self.denials = denials
        self.refusals_counted = refusals_counted

    @classmethod
    def record(
        cls,
        *,
        request: RequestContext,
        read_only: bool,
        now: datetime,
        resources: list[dict[str, str | None]],
        error_code: str | None = None,
        error_message: str | None = None,
        denials: list[dict[str, Any]] | None = None,
        refusals_counted: dict[str, Any] | None = None,
    ) -> ApiCall:
        """``resources`` names each secret the call touched (``secret_arn``) and, for
        reads, the version actually served (``version_id``)."""
        assert refusals_counted is None or error_code is not None, "a summary names its reason"
        return cls._create(
            cls.Recorded,
            id=uuid.uuid5(NAMESPACE, "call:" + request.request_id),
            timestamp=now,
            request=request.to_event(),
            read_only=read_only,
            resources=resources,
            error_code=error_code,
            error_message=error_message,
            denials=denials or [],
            refusals_counted=refusals_counted,
        )
