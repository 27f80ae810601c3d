"""An independent, in-memory model of Secrets Manager's version and label rules.

Written from the rules of ``docs/semantics.md`` (cited as §n, rule ids P1-P9,
T1-T10, U1-U14), not from ``ledger/``: it shares no code with the
ledger and holds labels the other way round (version -> set of labels, as AWS
describes a version, where the ledger keeps label -> version). The stateful test
(`tests/test_model_stateful.py`) runs both side by side and compares them.

Where AWS leaves a point open (§14), the model encodes the choice the ledger
made, each marked ``OPEN (§n)`` in a comment, so that a change of choice shows up
as a test failure rather than slipping through.

Besides answers, the model predicts what each call appends to the log, as
``(topic name, details...)`` tuples: the issue fixes the event vocabulary (one
``LabelMoved`` per label that attaches, moves or detaches, with why, by the rule
that moved it (docs/events.md: requested, default-current, demoted,
pending-dropped, detached-by-deletion, detached-by-destroy); destroying a version
(secret-ledger's own DestroySecretVersion) detaches its labels before
``VersionDestroyed``; deleting a secret detaches each label, then destroys each
version, before ``SecretDeleted``; a failed call appends nothing but its audit
record).
``ModelError.message`` is ``None`` where §12 does not fix the text, and
then only the exception name is compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

AWSCURRENT = "AWSCURRENT"
AWSPREVIOUS = "AWSPREVIOUS"
AWSPENDING = "AWSPENDING"

LABEL_ATTACHMENTS_MAX = 20  # §1, §2.6
RECOVERY_WINDOW_DAYS_DEFAULT = 30  # §8
RECOVERY_WINDOW_DAYS_RANGE = range(7, 31)  # §8: 7-30
ARN_SUFFIX_PATTERN = re.compile(r"-[A-Za-z0-9]{6}$")  # §10

# Messages §12 fixes, word for word.
SECRET_NOT_FOUND = "Secrets Manager can't find the specified secret."
TOKEN_REQUIRED = "You must provide a ClientRequestToken value. We recommend a UUID-type value."
VALUE_REQUIRED = "You must provide either SecretString or SecretBinary."
BOTH_VALUES = (
    "You can't specify both a binary secret value and a string secret value in the same secret."
)
MARKED_FOR_DELETION = (
    "You can't perform this operation on the secret because it was marked for deletion."
)
CREATE_OVER_SCHEDULED = (
    "You can't create this secret because a secret with this name is already scheduled "
    "for deletion."
)
STAGE_NOT_ON_VERSION = (
    "You provided a VersionStage that is not associated to the provided VersionId."
)
VALUE_NOT_FOUND_PREFIX = "Secrets Manager can't find the specified secret value for"
# secret-ledger's own texts (docs/decisions.md, "Crypto-shredding").
VERSION_DESTROYED = "The version was destroyed (crypto-shredded): its value can't be recovered."

Event = tuple[Any, ...]


class ModelError(Exception):
    """The failure the model expects: an AWS exception name and, where §12
    fixes it, the exact message (otherwise None: compare the name only)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def token_in_use(token: str, arn: str) -> ModelError:
    """T7 (§2.4), recorded text."""
    return ModelError(
        "ResourceExistsException",
        f"You can't use ClientRequestToken {token} because that value is already in use "
        f"for a version of secret {arn}.",
    )


def label_held_elsewhere(label: str, holder: str) -> ModelError:
    """U3 (§7), recorded for AWSCURRENT; U4 takes the same text with the label's name:
    OPEN (§7 U4, §14 #12), the recommended choice, which the ledger made."""
    return ModelError(
        "InvalidParameterException",
        f"The parameter RemoveFromVersionId can't be empty. Staging label {label} is "
        f"currently attached to version {holder}, so you must explicitly reference that "
        "version in RemoveFromVersionId.",
    )


@dataclass(frozen=True)
class ModelValue:
    """A secret value: its kind ("string" or "binary") and its bytes (T6: both count)."""

    kind: str
    data: bytes


@dataclass
class ModelVersion:
    version_id: str
    value: ModelValue
    created_date: datetime
    last_accessed_date: datetime | None = None  # LA-1: midnight UTC of the last read


@dataclass
class ModelSecret:
    name: str
    arn: str  # learnt from the ledger's CreateSecret answer: the suffix is random (§10)
    description: str | None
    created_date: datetime
    last_changed_date: datetime
    versions: dict[str, ModelVersion] = field(default_factory=dict)  # creation order
    stages: dict[str, set[str]] = field(default_factory=dict)  # version id -> its labels
    deletion_date: datetime | None = None
    last_accessed_date: datetime | None = None
    destroyed: set[str] = field(default_factory=set)  # versions destroyed on request

    def holder_of(self, label: str) -> str | None:
        holders = [version_id for version_id, labels in self.stages.items() if label in labels]
        assert len(holders) <= 1, f"model broke invariant 1 for {label}"
        return holders[0] if holders else None

    def labels_of(self, version_id: str) -> list[str]:
        return sorted(self.stages.get(version_id, set()))

    def version_ids_to_stages(self) -> dict[str, list[str]]:
        """§4: labelled versions only; deprecated ones are absent."""
        return {
            version_id: self.labels_of(version_id)
            for version_id in self.versions
            if self.stages.get(version_id)
        }

    def attachment_count(self) -> int:
        return sum(len(labels) for labels in self.stages.values())


def holders(stages: dict[str, set[str]]) -> dict[str, str]:
    return {label: version_id for version_id, labels in stages.items() for label in labels}


def label_moves(
    before: dict[str, set[str]], after: dict[str, set[str]], why: dict[str, str]
) -> list[Event]:
    """One ("LabelMoved", label, from, to, reason) per label whose holder differs;
    ``why``: the reason of each label a rule touched."""
    old, new = holders(before), holders(after)
    return [
        ("LabelMoved", label, old.get(label), new.get(label), why[label])
        for label in sorted(set(old) | set(new))
        if old.get(label) != new.get(label)
    ]


def detachments(stages: dict[str, set[str]]) -> list[Event]:
    """Deleting a secret takes every label off, in label order."""
    return [
        ("LabelMoved", label, version_id, None, "detached-by-deletion")
        for label, version_id in sorted(holders(stages).items())
    ]


def destroyed_versions(secret: ModelSecret, reason: str) -> list[Event]:
    """Deleting now destroys every version's data key, in creation order, after the
    labels came off."""
    return [("VersionDestroyed", version_id, reason) for version_id in secret.versions]


def copy_stages(stages: dict[str, set[str]]) -> dict[str, set[str]]:
    return {version_id: set(labels) for version_id, labels in stages.items()}


def value_of(secret_string: str | None, secret_binary: bytes | None) -> ModelValue | None:
    """§2.5: both values fail. OPEN (§2.2): PutSecretValue checks this after resolving
    the secret (the recommended order); CreateSecret and UpdateSecret check it first,
    with the request's shape, before the name or SecretId."""
    if secret_string is not None and secret_binary is not None:
        raise ModelError("InvalidParameterException", BOTH_VALUES)
    if secret_string is not None:
        return ModelValue("string", secret_string.encode("utf-8"))
    if secret_binary is not None:
        return ModelValue("binary", secret_binary)
    return None


def check_request_shape(request: dict[str, Any]) -> None:
    """§11.4, OPEN (§14 #5): constraint violations are ValidationException, checked
    before anything else (§2.2 step 1). Lengths from §2.1 and §7."""
    id_members = ("ClientRequestToken", "VersionId", "MoveToVersionId", "RemoveFromVersionId")
    for member in id_members:
        if member in request and not 32 <= len(request[member]) <= 64:
            raise ModelError("ValidationException")
    stages = request.get("VersionStages")
    if stages is not None and not (
        1 <= len(stages) <= 20 and all(1 <= len(label) <= 256 for label in stages)
    ):
        raise ModelError("ValidationException")
    if "VersionStage" in request and not 1 <= len(request["VersionStage"]) <= 256:
        raise ModelError("ValidationException")
    secret_string = request.get("SecretString")
    if secret_string is not None and not 1 <= len(secret_string.encode("utf-8")) <= 65_536:
        raise ModelError("ValidationException")  # OPEN (§2.5, §14 #6): UTF-8 bytes
    secret_binary = request.get("SecretBinary")
    if secret_binary is not None and not 1 <= len(secret_binary) <= 65_536:
        raise ModelError("ValidationException")


class SecretsModel:
    """Secrets by name, a clock the test sets, and the events each call should append."""

    def __init__(self, *, region: str, account_id: str, version_count_max: int) -> None:
        self.region = region
        self.account_id = account_id
        self.version_count_max = version_count_max
        self.now: datetime | None = None
        self.secrets: dict[str, ModelSecret] = {}
        self.registered_names: set[str] = set()
        self.events: list[Event] = []

    # Time and events

    def clock(self) -> datetime:
        assert self.now is not None, "the test sets the model's clock before each call"
        return self.now

    def drain_events(self) -> list[Event]:
        drained, self.events = self.events, []
        return drained

    # Resolution (§10) and the lazy end of a recovery window (§8)

    def arn_prefix(self) -> str:
        return f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:"

    def resolve(self, secret_id: str) -> ModelSecret:
        secret = self.lookup(secret_id)
        if secret is None:
            raise ModelError("ResourceNotFoundException", SECRET_NOT_FOUND)
        if self.is_due(secret):
            self.purge(secret)
            raise ModelError("ResourceNotFoundException", SECRET_NOT_FOUND)
        return secret

    def lookup(self, secret_id: str) -> ModelSecret | None:
        """A name; a full ARN (exact match only); a partial ARN (by name). A partial ARN
        whose name ends in '-' plus six letters or digits looks complete and is not
        found (§10, recorded). OPEN (§10, §14 #18): another region or account is
        not found."""
        if not secret_id.startswith("arn:"):
            return self.secrets.get(secret_id)
        if not secret_id.startswith(self.arn_prefix()):
            return None
        resource = secret_id[len(self.arn_prefix()) :]
        if ARN_SUFFIX_PATTERN.search(resource):
            by_arn = [secret for secret in self.secrets.values() if secret.arn == secret_id]
            return by_arn[0] if by_arn else None
        return self.secrets.get(resource)

    def is_due(self, secret: ModelSecret) -> bool:
        """OPEN (§8, §14 #15): gone once now >= DeletionDate, evaluated lazily."""
        return secret.deletion_date is not None and self.clock() >= secret.deletion_date

    def purge(self, secret: ModelSecret) -> None:
        """The purge step appends the final events: the labels come off, the secret
        ends, its name is freed."""
        self.end(secret, forced=False)

    def end(self, secret: ModelSecret, *, forced: bool) -> None:
        del self.secrets[secret.name]
        self.events += detachments(secret.stages)
        self.events += destroyed_versions(secret, "forced-deletion" if forced else "purged")
        self.events += [("SecretDeleted", forced), ("SecretNameReleased",)]

    def purge_all_due(self) -> None:
        for secret in list(self.secrets.values()):
            if self.is_due(secret):
                self.purge(secret)

    # CreateSecret (§9)

    def create_secret(
        self,
        name: str,
        token: str | None,
        secret_string: str | None,
        secret_binary: bytes | None,
        description: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """Returns the response (ARN left out: the ledger draws the suffix) and whether
        the call changed anything."""
        value = value_of(secret_string, secret_binary)
        if value is not None and token is None:
            raise ModelError("InvalidRequestException", TOKEN_REQUIRED)  # T2
        # OPEN (§9, §14 #16): no token is needed when no value is given.
        existing = self.secrets.get(name)
        if existing is not None and self.is_due(existing):
            self.purge(existing)  # OPEN (§14 #15): the name is free once the window ends
            existing = None
        if existing is not None:
            return self._create_over_existing(existing, token, value), False
        now = self.clock()
        secret = ModelSecret(
            name=name,
            arn="",
            description=description,
            created_date=now,
            last_changed_date=now,
        )
        if name not in self.registered_names:
            self.registered_names.add(name)
            self.events.append(("SecretNameRegistered", name))
        self.events += [("SecretNameClaimed",), ("SecretCreated", name)]
        response: dict[str, Any] = {"Name": name}
        if value is not None and token is not None:
            self._add_version(secret, token, value, None)
            response["VersionId"] = token
        self.secrets[name] = secret
        return response, True

    def _create_over_existing(
        self, existing: ModelSecret, token: str | None, value: ModelValue | None
    ) -> dict[str, Any]:
        if existing.deletion_date is not None:
            raise ModelError("InvalidRequestException", CREATE_OVER_SCHEDULED)  # §8
        if token is not None and value is not None and token in existing.versions:
            # §9: the same token and data as the original create answer the same.
            # OPEN (§9): the ledger accepts the token of any version of the secret, not
            # only the first one, with the same T5/T7 comparison.
            if existing.versions[token].value != value:
                raise token_in_use(token, existing.arn)
            return {"ARN": existing.arn, "Name": existing.name, "VersionId": token}
        raise ModelError(
            "ResourceExistsException",
            f"The operation failed because the secret {existing.name} already exists.",
        )

    def adopt_arn(self, name: str, arn: str) -> None:
        self.secrets[name].arn = arn

    # PutSecretValue (§2) and UpdateSecret with a value

    def put_secret_value(
        self,
        secret_id: str,
        token: str | None,
        secret_string: str | None,
        secret_binary: bytes | None,
        stages: list[str] | None,
    ) -> tuple[dict[str, Any], bool]:
        """OPEN (§2.2), the recommended order: token missing, resolve, scheduled,
        value (both, then neither), replay, labels, quota, version cap."""
        if token is None:
            raise ModelError("InvalidRequestException", TOKEN_REQUIRED)  # T2
        secret = self.resolve(secret_id)
        if secret.deletion_date is not None:
            raise ModelError("InvalidRequestException", MARKED_FOR_DELETION)  # §2.8, OPEN #8
        value = value_of(secret_string, secret_binary)
        if value is None:
            raise ModelError("InvalidRequestException", VALUE_REQUIRED)
        if token in secret.versions:
            if secret.versions[token].value != value:
                raise token_in_use(token, secret.arn)  # T7
            return self._put_response(secret, token), False  # T5, T8
        self._add_version(secret, token, value, stages)
        return self._put_response(secret, token), True

    def _put_response(self, secret: ModelSecret, version_id: str) -> dict[str, Any]:
        """OPEN (§2.4 T8, §14 #4): a replay ignores VersionStages and answers with the
        version's current labels, and none at all if it is deprecated."""
        response: dict[str, Any] = {
            "ARN": secret.arn,
            "Name": secret.name,
            "VersionId": version_id,
        }
        labels = secret.labels_of(version_id)
        if labels:
            response["VersionStages"] = labels  # §2.1: sorted
        return response

    def _add_version(
        self, secret: ModelSecret, token: str, value: ModelValue, stages: list[str] | None
    ) -> None:
        if token in secret.destroyed:
            raise token_in_use(token, secret.arn)  # a destroyed version's token stays taken
        attach = set(stages) if stages is not None else {AWSCURRENT}  # P1
        if not secret.versions:
            attach.add(AWSCURRENT)  # P2
        named = set(stages or ())
        why = {label: "requested" if label in named else "default-current" for label in attach}
        old_current = secret.holder_of(AWSCURRENT)
        after = copy_stages(secret.stages)
        for labels in after.values():
            labels -= attach  # P3: the other holders keep their other labels
        after[token] = set(attach)
        if AWSCURRENT in attach and old_current is not None:
            if AWSPREVIOUS not in attach:
                # P4. OPEN (§2.3): an explicit AWSPREVIOUS in VersionStages wins over P4
                # (the new version takes it, V_old gets nothing in its place).
                for labels in after.values():
                    labels.discard(AWSPREVIOUS)
                after[old_current].add(AWSPREVIOUS)
                why[AWSPREVIOUS] = "demoted"
            if AWSPENDING in secret.stages[old_current] and AWSPENDING not in attach:
                after[old_current].discard(AWSPENDING)  # P6; OPEN (P7, §14 #2): custom labels stay
                why[AWSPENDING] = "pending-dropped"
        # P5: without AWSCURRENT in L nothing else moves; OPEN (P8, §14 #3): AWSPENDING on
        # a third version stays.
        self._require_label_quota(after)  # P9
        if len(secret.versions) + 1 > self.version_count_max:
            # OPEN (§2.7, §14 #7): no version is pruned below 100 versions, so past the
            # configured cap a put is refused with LimitExceededException.
            raise ModelError("LimitExceededException")
        now = self.clock()
        secret.versions[token] = ModelVersion(token, value, now)
        self.events.append(("VersionCreated", token))
        self._set_stages(secret, after, why)

    def _require_label_quota(self, after: dict[str, set[str]]) -> None:
        """OPEN (§1, §14 #1): every attachment counts, AWS-managed labels included."""
        if sum(len(labels) for labels in after.values()) > LABEL_ATTACHMENTS_MAX:
            raise ModelError("LimitExceededException")

    def _set_stages(
        self, secret: ModelSecret, after: dict[str, set[str]], why: dict[str, str]
    ) -> None:
        moves = label_moves(secret.stages, after, why)
        self.events += moves
        secret.stages = {version_id: labels for version_id, labels in after.items() if labels}
        secret.last_changed_date = self.clock()

    def update_secret(
        self,
        secret_id: str,
        token: str | None,
        secret_string: str | None,
        secret_binary: bytes | None,
        description: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """UpdateSecret: a value makes a version as a default put does (P1, P4, P6);
        a description changes the metadata (any given description is a change)."""
        value = value_of(secret_string, secret_binary)
        if value is not None and token is None:
            raise ModelError("InvalidRequestException", TOKEN_REQUIRED)  # T2
        secret = self.resolve(secret_id)
        if secret.deletion_date is not None:
            raise ModelError("InvalidRequestException", MARKED_FOR_DELETION)
        response: dict[str, Any] = {"ARN": secret.arn, "Name": secret.name}
        changed = False
        if value is not None and token is not None:
            response["VersionId"] = token
            if token in secret.versions:
                if secret.versions[token].value != value:
                    raise token_in_use(token, secret.arn)
            else:
                self._add_version(secret, token, value, None)
                changed = True
        if description is not None:
            secret.description = description
            secret.last_changed_date = self.clock()
            self.events.append(("SecretMetadataUpdated",))
            changed = True
        return response, changed

    # UpdateSecretVersionStage (§7)

    def update_secret_version_stage(
        self,
        secret_id: str,
        label: str,
        move_to_version_id: str | None,
        remove_from_version_id: str | None,
    ) -> tuple[dict[str, Any], bool]:
        secret = self.resolve(secret_id)
        if secret.deletion_date is not None:
            raise ModelError("InvalidRequestException", MARKED_FOR_DELETION)  # U13
        if move_to_version_id is None and remove_from_version_id is None:
            raise ModelError("InvalidParameterException")  # U11, OPEN (§14 #12)
        for version_id in (move_to_version_id, remove_from_version_id):
            if version_id is not None and version_id not in secret.versions:
                raise ModelError("InvalidParameterException")  # U7, OPEN (§14 #12)
        holder = secret.holder_of(label)
        if remove_from_version_id is not None and holder != remove_from_version_id:
            # U5. OPEN (§7): refused whenever RemoveFromVersionId does not hold the
            # label, also when it is to be moved onto that very version or held by none.
            raise ModelError("InvalidParameterException")
        after = copy_stages(secret.stages)
        why = {label: "requested"}
        if move_to_version_id is not None:
            if holder is not None and holder != move_to_version_id:
                if remove_from_version_id is None:
                    raise label_held_elsewhere(label, holder)  # U3, U4
                after[holder].discard(label)  # U2: the holder keeps its other labels
            after.setdefault(move_to_version_id, set()).add(label)  # U1; U9: no-op
            if label == AWSCURRENT and holder is not None and holder != move_to_version_id:
                for labels in after.values():  # U8: other labels stay where they are
                    labels.discard(AWSPREVIOUS)
                after[holder].add(AWSPREVIOUS)
                why[AWSPREVIOUS] = "demoted"
        else:
            if label == AWSCURRENT:
                # U10. OPEN (§7, §14 #12): removing AWSCURRENT without moving it is
                # refused, so that invariant 2 holds.
                raise ModelError("InvalidParameterException")
            assert holder is not None, "U5 refused a label held by no version"
            after[holder].discard(label)  # U6: a version left bare is deprecated
        self._require_label_quota(after)  # U12
        if not label_moves(secret.stages, after, why):
            return {"ARN": secret.arn, "Name": secret.name}, False
        self._set_stages(secret, after, why)
        return {"ARN": secret.arn, "Name": secret.name}, True

    # DestroySecretVersion (secret-ledger's own; docs/decisions.md, "Crypto-shredding")

    def destroy_secret_version(
        self, secret_id: str, version_id: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Takes the version's labels off (reason detached-by-destroy), then destroys
        it. Refused for the AWSCURRENT version and on a scheduled secret; a version
        destroyed already answers the same with nothing written."""
        if version_id is None:
            raise ModelError("ValidationException")  # a required member
        secret = self.resolve(secret_id)
        if secret.deletion_date is not None:
            raise ModelError("InvalidRequestException", MARKED_FOR_DELETION)
        response = {"ARN": secret.arn, "Name": secret.name, "VersionId": version_id}
        if version_id in secret.destroyed:
            return response, False
        if version_id not in secret.versions:
            raise ModelError(
                "ResourceNotFoundException", f"{VALUE_NOT_FOUND_PREFIX} VersionId: {version_id}"
            )
        if secret.holder_of(AWSCURRENT) == version_id:
            raise ModelError(
                "InvalidRequestException",
                f"You can't destroy version {version_id} of secret {secret.arn} because it "
                "has the staging label AWSCURRENT. Move AWSCURRENT to another version first "
                "(UpdateSecretVersionStage).",
            )
        after = copy_stages(secret.stages)
        why = dict.fromkeys(after.pop(version_id, set()), "detached-by-destroy")
        self._set_stages(secret, after, why)
        del secret.versions[version_id]
        secret.destroyed.add(version_id)
        self.events.append(("VersionDestroyed", version_id, "requested"))
        return response, True

    # DeleteSecret and RestoreSecret (§8)

    def delete_secret(
        self, secret_id: str, recovery_window_days: int | None, force: bool
    ) -> tuple[dict[str, Any], bool]:
        """Responses omit ARN for a forced delete of an unknown secret (it is drawn at
        random, §8); the test checks its shape."""
        if force and recovery_window_days is not None:
            raise ModelError("InvalidParameterException")  # §8, text OPEN
        window_days = (
            RECOVERY_WINDOW_DAYS_DEFAULT if recovery_window_days is None else recovery_window_days
        )
        if window_days not in RECOVERY_WINDOW_DAYS_RANGE:
            raise ModelError("InvalidParameterException")  # §8, text OPEN
        now = self.clock()
        try:
            secret = self.resolve(secret_id)
        except ModelError:
            if force:
                # §8 (recorded): a forced delete of an unknown secret succeeds.
                return {"Name": self.name_in(secret_id), "DeletionDate": now}, False
            raise
        if force:
            self.end(secret, forced=True)
            return {"ARN": secret.arn, "Name": secret.name, "DeletionDate": now}, True
        if secret.deletion_date is not None:
            # OPEN (§8, §14 #13): deleting a scheduled secret again is refused.
            raise ModelError("InvalidRequestException", MARKED_FOR_DELETION)
        secret.deletion_date = now + timedelta(days=window_days)
        secret.last_changed_date = now
        self.events.append(("SecretDeletionScheduled",))
        response = {"ARN": secret.arn, "Name": secret.name, "DeletionDate": secret.deletion_date}
        return response, True

    def name_in(self, secret_id: str) -> str:
        """The name a SecretId names, for the synthesised answer of a forced delete."""
        if not secret_id.startswith("arn:"):
            return secret_id
        resource = secret_id.split(":", 6)[-1]
        return resource[:-7] if ARN_SUFFIX_PATTERN.search(resource) else resource

    def restore_secret(self, secret_id: str) -> tuple[dict[str, Any], bool]:
        secret = self.resolve(secret_id)
        response = {"ARN": secret.arn, "Name": secret.name}
        if secret.deletion_date is None:
            return response, False  # OPEN (§8, §14 #14): succeed with no change
        secret.deletion_date = None
        secret.last_changed_date = self.clock()
        self.events.append(("SecretRestored",))
        return response, True

    # Reads (§3, §4, §5, §6)

    def get_secret_value(
        self, secret_id: str, version_id: str | None, version_stage: str | None
    ) -> dict[str, Any]:
        secret = self.resolve(secret_id)
        if secret.deletion_date is not None:
            raise ModelError("InvalidRequestException", MARKED_FOR_DELETION)
        if version_id is not None:
            # OPEN (§3): with both given, an unknown VersionId is reported first.
            if version_id in secret.destroyed:
                raise ModelError(
                    "ResourceNotFoundException",
                    f"{VALUE_NOT_FOUND_PREFIX} VersionId: {version_id}. {VERSION_DESTROYED}",
                )
            if version_id not in secret.versions:
                raise ModelError(
                    "ResourceNotFoundException", f"{VALUE_NOT_FOUND_PREFIX} VersionId: {version_id}"
                )
            if version_stage is not None and secret.holder_of(version_stage) != version_id:
                raise ModelError("InvalidRequestException", STAGE_NOT_ON_VERSION)
            chosen = version_id
        else:
            label = version_stage if version_stage is not None else AWSCURRENT
            holder = secret.holder_of(label)
            if holder is None:
                raise ModelError(
                    "ResourceNotFoundException", f"{VALUE_NOT_FOUND_PREFIX} staging label: {label}"
                )
            chosen = holder
        version = secret.versions[chosen]
        read_on = self.clock().replace(hour=0, minute=0, second=0, microsecond=0)
        if version.last_accessed_date != read_on:  # LA-2: the day's first read of it
            self.events.append(("SecretAccessed",))
            version.last_accessed_date = secret.last_accessed_date = read_on
        response: dict[str, Any] = {"ARN": secret.arn, "Name": secret.name, "VersionId": chosen}
        if version.value.kind == "string":
            response["SecretString"] = version.value.data.decode("utf-8")
        else:
            response["SecretBinary"] = version.value.data
        labels = secret.labels_of(chosen)
        if labels:
            response["VersionStages"] = labels  # OPEN (§3): omitted when deprecated
        response["CreatedDate"] = version.created_date
        return response

    def describe_secret(self, secret_id: str) -> dict[str, Any]:
        """§4; works on a scheduled secret and then carries DeletedDate (OPEN §14 #9:
        the DeletionDate instant)."""
        secret = self.resolve(secret_id)
        response: dict[str, Any] = {
            "ARN": secret.arn,
            "Name": secret.name,
            "LastChangedDate": secret.last_changed_date,
            "CreatedDate": secret.created_date,
        }
        if secret.description:  # NV-4: an empty description is no description
            response["Description"] = secret.description
        if secret.last_accessed_date is not None:
            response["LastAccessedDate"] = secret.last_accessed_date
        if secret.deletion_date is not None:
            response["DeletedDate"] = secret.deletion_date
        stages = secret.version_ids_to_stages()
        if stages:
            response["VersionIdsToStages"] = stages
        return response

    def list_secret_version_ids(
        self, secret_id: str, include_deprecated: bool
    ) -> list[dict[str, Any]]:
        """§5: a deprecated entry has no VersionStages member; OPEN (§5, §14 #11):
        newest first, and allowed on a scheduled secret."""
        secret = self.resolve(secret_id)
        entries = []
        for version in reversed(secret.versions.values()):
            labels = secret.labels_of(version.version_id)
            if not labels and not include_deprecated:
                continue
            entry: dict[str, Any] = {"VersionId": version.version_id}
            if labels:
                entry["VersionStages"] = labels
            if version.last_accessed_date is not None:
                entry["LastAccessedDate"] = version.last_accessed_date
            entry["CreatedDate"] = version.created_date
            entries.append(entry)
        return entries

    def list_secret_names(self, include_planned_deletion: bool) -> list[str]:
        """§6: scheduled secrets only with IncludePlannedDeletion; due ones are purged."""
        self.purge_all_due()
        return sorted(
            secret.name
            for secret in self.secrets.values()
            if include_planned_deletion or secret.deletion_date is None
        )
