"""The ledger against an independent model of the rules, over random call sequences.

Hypothesis drives create / put / update-secret / update-stage / destroy-version /
delete / restore / get / list-secrets / time-passes against ``SecretsManagerApi`` over a fresh
ledger, and the same calls against :class:`tests.model.SecretsModel`. After every
step it checks:

* both succeed or both fail, with the same exception name (and the same message
  where docs/semantics.md fixes the text), and the same answer;
* the log grew by exactly the events the model predicts: one ``VersionCreated``
  per new version, one ``LabelMoved`` per label that attached, moved or detached
  (with its reason), one ``VersionDestroyed`` per version destroyed (on request,
  or by a forced delete or a purge, with its reason), and for a call that changed
  nothing (a failure, a read, a replay) only its ``ApiCallRecorded`` audit record;
  every event carries the step's time;
* the state the ledger shows (DescribeSecret, ListSecretVersionIds with and
  without IncludeDeprecated) equals the model's, and a failed step left it as it
  was;
* the invariants hold on what the ledger shows, whatever the model says: each
  label on at most one version, exactly one AWSCURRENT once a version exists, at
  most 20 attachments, and AWSPREVIOUS on the version AWSCURRENT left (unless the
  put named AWSPREVIOUS itself: the OPEN choice recorded in the model).

The pools are small on purpose (three names, eight tokens, five labels plus a
bulk set for the 20-attachment quota, a version cap of five) so that replays,
collisions and quota breaches happen often. The machine runs on the in-memory
backend with many examples and once on SQLite with fewer, to cover the storage
path; both together stay well under a minute.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from model import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    LABEL_ATTACHMENTS_MAX,
    Event,
    ModelError,
    ModelSecret,
    SecretsModel,
    check_request_shape,
)

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.errors import SecretsManagerError
from ledger.evidence import CheckpointKeys, CheckpointStore, verify_evidence, write_checkpoint
from ledger.signed_note import Signer

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
ARN_PREFIX = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:"
OTHER_REGION_ARN_PREFIX = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT_ID}:secret:"
START_TIME = datetime(2030, 1, 1, tzinfo=UTC)
STEP_DURATION = timedelta(seconds=1)
VERSION_COUNT_MAX = 5
EVENTS_PER_STEP_MAX = 100
# What a purge (the service's own DeleteSecret) appends, by summary or by (kind, reason).
PURGE_SUMMARIES = (("SecretDeleted", False), ("SecretNameReleased",))
PURGE_REASONS = (("LabelMoved", "detached-by-deletion"), ("VersionDestroyed", "purged"))
CHECKPOINT_EVERY_STEPS = 10

# "team/app-secret" ends in '-' plus six letters: its partial ARN looks complete (§10).
NAMES = ("app/db", "payments/api-key", "team/app-secret")
TOKENS = tuple(f"00000000-0000-4000-8000-{index:012d}" for index in range(8))
INVALID_TOKEN = "too-short-for-a-token"
LABELS = (AWSCURRENT, AWSPREVIOUS, AWSPENDING, "blue", "green")
BULK_LABELS = tuple(f"bulk-{index:02d}" for index in range(24))
DESCRIPTIONS = ("first description", "second description", "")
# (SecretString, SecretBinary): "alpha" as text and as bytes are different values (T6).
VALID_VALUES: tuple[tuple[str | None, bytes | None], ...] = (
    ("alpha", None),
    ("bravo", None),
    ("ünïcödé ✓", None),
    (None, b"alpha"),
    (None, b"\x00\xff\x00binary"),
)
BOTH_VALUES: tuple[str | None, bytes | None] = ("alpha", b"alpha")
NO_VALUE: tuple[str | None, bytes | None] = (None, None)
# Weighted pools: most calls are well formed and name a live secret, so that long
# sequences build up real label histories; the rest probe the failure paths.
SECRET_ID_FORMS = ("name",) * 8 + ("arn", "arn", "partial-arn", "stale-arn", "other-region-arn")

names = st.sampled_from((NAMES[0],) * 3 + (NAMES[1],) * 2 + (NAMES[2],))
secret_id_forms = st.sampled_from(SECRET_ID_FORMS)
tokens = st.sampled_from(TOKENS)
maybe_tokens = st.sampled_from((*TOKENS, *TOKENS, None))
put_tokens = st.sampled_from((*TOKENS, *TOKENS, None, INVALID_TOKEN))
valid_values = st.sampled_from(VALID_VALUES)
values = st.sampled_from((*VALID_VALUES, *VALID_VALUES, BOTH_VALUES, NO_VALUE))
create_values = st.sampled_from((*VALID_VALUES, NO_VALUE, NO_VALUE, NO_VALUE, BOTH_VALUES))
labels = st.sampled_from(LABELS * 3 + BULK_LABELS[:3])
rotation_labels = st.sampled_from((AWSCURRENT, AWSCURRENT, AWSPENDING, AWSPREVIOUS, "blue"))
maybe_labels = st.sampled_from((*LABELS, None))
small_stage_lists = st.lists(st.sampled_from(LABELS), min_size=1, max_size=3)
version_stages = st.one_of(
    st.none(),
    small_stage_lists,
    st.lists(st.sampled_from(LABELS + BULK_LABELS), min_size=12, max_size=20, unique=True),
    st.sampled_from(([], ["x" * 257], list(BULK_LABELS[:21]))),
)
descriptions = st.sampled_from((None, None, *DESCRIPTIONS))
recovery_windows = st.sampled_from((None, None, 7, 30, 6, 31))
forced = st.sampled_from((False, False, False, True))
durations_days = st.sampled_from((1, 7, 31))


def version_ids_of(secret: ModelSecret | None, *preferred: str | None) -> st.SearchStrategy[Any]:
    """Mostly the secret's own version ids (and any preferred ones), sometimes none,
    one it destroyed, a token it never used, or one too short to be valid."""
    own = tuple(secret.versions) if secret is not None else ()
    destroyed = tuple(sorted(secret.destroyed)) if secret is not None else ()
    return st.sampled_from(
        (*preferred, *preferred, *own, *own, *destroyed, None, TOKENS[-1], INVALID_TOKEN)
    )


ModelCall = Callable[[], tuple[dict[str, Any], bool]]


def event_summary(topic: str, event: Any) -> Event:
    """The model's vocabulary for a stored event: its topic plus identifying details."""
    kind = topic.removeprefix("secretledger/")
    if kind == "LabelMoved":
        return (kind, event.label, event.from_version_id, event.to_version_id, event.reason)
    if kind == "VersionCreated":
        return (kind, event.version_id)
    if kind == "VersionDestroyed":
        return (kind, event.version_id, event.reason)
    if kind == "SecretDeleted":
        return (kind, event.forced)
    if kind in ("SecretCreated", "SecretNameRegistered"):
        return (kind, event.name)
    if kind == "ApiCallRecorded":
        return (kind, event.error_code)
    return (kind,)


def present_members(**members: Any) -> dict[str, Any]:
    """A request with only the members that have a value, as an SDK sends it."""
    return {member: item for member, item in members.items() if item is not None}


def without_kms_key_ids(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: item for key, item in entry.items() if key != "KmsKeyIds"} for entry in entries]


def arn_pattern_for(secret_id: str) -> re.Pattern[str]:
    """The ARN a synthesised answer must carry for a SecretId (§8, §10)."""
    if not secret_id.startswith("arn:"):
        return re.compile(re.escape(ARN_PREFIX + secret_id) + r"-[A-Za-z0-9]{6}")
    if re.search(r"-[A-Za-z0-9]{6}$", secret_id):
        return re.compile(re.escape(secret_id))
    return re.compile(re.escape(secret_id) + r"-[A-Za-z0-9]{6}")


def check_label_invariants(versions: list[dict[str, Any]]) -> dict[str, str]:
    """Invariants 1 and 2 and the quota, on what the ledger shows; returns label -> holder."""
    holders: dict[str, str] = {}
    for entry in versions:
        for label in entry.get("VersionStages", []):
            assert label not in holders, f"{label} on {holders[label]} and {entry['VersionId']}"
            holders[label] = entry["VersionId"]
    assert len(holders) <= LABEL_ATTACHMENTS_MAX, "more than 20 label attachments"
    if versions:
        assert AWSCURRENT in holders, "a secret with versions has no AWSCURRENT"
    return holders


class LedgerAgainstModel(RuleBasedStateMachine):
    """One ledger, one model, the same calls; see the module docstring for the checks."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START_TIME
        self.directory = Path(tempfile.mkdtemp(prefix="ledger-model-"))
        self.secrets = Secrets(
            self.database(),
            keyring_path=self.directory / "ledger.keyring",
            region=REGION,
            account_id=ACCOUNT_ID,
            clock=lambda: self.now,
            version_count_max=VERSION_COUNT_MAX,
        )
        self.api = SecretsManagerApi(self.secrets)
        self.observer = SecretsManagerApi(self.secrets, record_calls=False)
        self.model = SecretsModel(
            region=REGION, account_id=ACCOUNT_ID, version_count_max=VERSION_COUNT_MAX
        )
        self.arns_seen: dict[str, list[str]] = {name: [] for name in NAMES}
        self.log_length = 0
        self.snapshot: dict[str, Any] = {}
        self.current_holders: dict[str, str] = {}  # ARN -> version holding AWSCURRENT
        self.step_failed = False
        self.step_named_previous = False
        signer = Signer("model.test/1", bytes(32))
        self.checkpoint_keys = CheckpointKeys(signer, (signer.verifier,))
        self.invariant_checks = 0

    def database(self) -> str:
        return "memory:"

    def teardown(self) -> None:
        try:
            self.check_every_value_reads_back()
            self.check_the_log_verifies()
        finally:
            self.secrets.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # Referring to secrets

    def secret_id(self, name: str, form: str) -> str:
        """A name, its live ARN, a partial ARN, an ARN of an earlier incarnation, or an
        ARN for another region (§10)."""
        live = self.model.secrets.get(name)
        if form == "arn" and live is not None:
            return live.arn
        if form == "partial-arn":
            return ARN_PREFIX + name
        if form == "stale-arn":
            stale = [arn for arn in self.arns_seen[name] if live is None or arn != live.arn]
            return stale[-1] if stale else ARN_PREFIX + name + "-Zz0Zz0"
        if form == "other-region-arn":
            return OTHER_REGION_ARN_PREFIX + name
        return name

    # One step

    def run_step(
        self, operation: str, request: dict[str, Any], model_call: ModelCall
    ) -> dict[str, Any] | None:
        """Advance the clock, run the call on both sides, compare answers and the log."""
        self.now += STEP_DURATION
        self.model.now = self.now
        expected: dict[str, Any] | None = None
        expected_error: ModelError | None = None
        changed = False
        try:
            check_request_shape(request)
            expected, changed = model_call()
        except ModelError as error:
            expected_error = error
        actual: dict[str, Any] | None = None
        actual_error: SecretsManagerError | None = None
        try:
            actual = self.api.call(operation, request)
        except SecretsManagerError as error:
            actual_error = error
        if expected_error is not None:
            assert actual_error is not None, f"expected {expected_error}, ledger answered {actual}"
            assert actual_error.code == expected_error.code, (actual_error, expected_error)
            if expected_error.message is not None:
                assert actual_error.message == expected_error.message
        else:
            assert actual_error is None, f"ledger failed: {actual_error.code}: {actual_error}"
            assert expected is not None and actual is not None
            self.compare_answer(operation, request, expected, actual)
        event(f"{operation}: {expected_error.code if expected_error else 'ok'}")
        predicted = self.model.drain_events()
        if expected_error is not None or not changed:
            predicted.append(("ApiCallRecorded", expected_error.code if expected_error else None))
        self.check_appended_events(operation, predicted)
        self.step_failed = expected_error is not None
        self.step_named_previous = AWSPREVIOUS in (request.get("VersionStages") or [])
        return actual

    def compare_answer(
        self,
        operation: str,
        request: dict[str, Any],
        expected: dict[str, Any],
        actual: dict[str, Any],
    ) -> None:
        if "ARN" not in expected:
            # A new secret (the ledger draws the suffix), or a forced delete of an
            # unknown secret (a synthesised ARN).
            secret_id = request.get("Name", request.get("SecretId"))
            assert isinstance(secret_id, str)
            assert arn_pattern_for(secret_id).fullmatch(actual["ARN"]), actual["ARN"]
            expected = {**expected, "ARN": actual["ARN"]}
            if operation == "CreateSecret":
                name = request["Name"]
                assert actual["ARN"] not in self.arns_seen[name], "a re-created name got a new ARN"
                self.arns_seen[name].append(actual["ARN"])
                self.model.adopt_arn(name, actual["ARN"])
        assert actual == expected

    def check_appended_events(self, operation: str, predicted: list[Event]) -> None:
        """The log grew by exactly the predicted events, each stamped with this step's
        time and request (purges are the service's own DeleteSecret)."""
        notifications = self.secrets.recorder.select_notifications(
            start=self.log_length, limit=EVENTS_PER_STEP_MAX, inclusive_of_start=False
        )
        appended = []
        for notification in notifications:
            event: Any = self.secrets.mapper.to_domain_event(notification)
            summary = event_summary(notification.topic, event)
            appended.append(summary)
            assert event.timestamp == self.now, (summary, event.timestamp, self.now)
            purge_part = summary in PURGE_SUMMARIES or (summary[0], summary[-1]) in PURGE_REASONS
            allowed = {operation, "DeleteSecret"} if purge_part else {operation}
            assert event.request["operation"] in allowed, (summary, event.request)
        assert sorted(appended, key=repr) == sorted(predicted, key=repr), (appended, predicted)
        self.log_length = notifications[-1].id if notifications else self.log_length

    # Rules

    @initialize(token=tokens, value=create_values)
    def a_secret_with_a_value(self, token: str, value: tuple[str | None, bytes | None]) -> None:
        self.create_secret(NAMES[0], token, value, None)

    @rule(name=names, token=maybe_tokens, value=create_values, description=descriptions)
    def create_secret(
        self,
        name: str,
        token: str | None,
        value: tuple[str | None, bytes | None],
        description: str | None,
    ) -> None:
        secret_string, secret_binary = value
        request = present_members(
            Name=name,
            ClientRequestToken=token,
            SecretString=secret_string,
            SecretBinary=secret_binary,
            Description=description,
        )
        self.run_step(
            "CreateSecret",
            request,
            lambda: self.model.create_secret(
                name, token, secret_string, secret_binary, description
            ),
        )

    @rule(name=names, form=secret_id_forms, token=put_tokens, value=values, stages=version_stages)
    def put_secret_value(
        self,
        name: str,
        form: str,
        token: str | None,
        value: tuple[str | None, bytes | None],
        stages: list[str] | None,
    ) -> None:
        secret_id = self.secret_id(name, form)
        secret_string, secret_binary = value
        request = present_members(
            SecretId=secret_id,
            ClientRequestToken=token,
            SecretString=secret_string,
            SecretBinary=secret_binary,
            VersionStages=stages,
        )
        self.run_step(
            "PutSecretValue",
            request,
            lambda: self.model.put_secret_value(
                secret_id, token, secret_string, secret_binary, stages
            ),
        )

    @rule(name=names, token=tokens, value=valid_values)
    def put_secret_value_as_a_rotation_would(
        self, name: str, token: str, value: tuple[str | None, bytes | None]
    ) -> None:
        """The common case, drawn more often: a well-formed default put."""
        self.put_secret_value(name, "name", token, value, None)

    @rule(
        name=names,
        form=secret_id_forms,
        token=maybe_tokens,
        value=values,
        description=descriptions,
    )
    def update_secret(
        self,
        name: str,
        form: str,
        token: str | None,
        value: tuple[str | None, bytes | None],
        description: str | None,
    ) -> None:
        secret_id = self.secret_id(name, form)
        secret_string, secret_binary = value
        request = present_members(
            SecretId=secret_id,
            ClientRequestToken=token,
            SecretString=secret_string,
            SecretBinary=secret_binary,
            Description=description,
        )
        self.run_step(
            "UpdateSecret",
            request,
            lambda: self.model.update_secret(
                secret_id, token, secret_string, secret_binary, description
            ),
        )

    @rule(name=names, form=secret_id_forms, label=labels, data=st.data())
    def update_secret_version_stage(
        self, name: str, form: str, label: str, data: st.DataObject
    ) -> None:
        """Version ids are mostly the secret's own (and the label's holder for
        RemoveFromVersionId), so that moves succeed as often as they are refused."""
        secret = self.model.secrets.get(name)
        holder = secret.holder_of(label) if secret else None
        move = data.draw(version_ids_of(secret), label="move")
        remove = data.draw(version_ids_of(secret, holder), label="remove")
        self.update_stage(name, form, label, move, remove)

    @rule(name=names, label=rotation_labels, data=st.data())
    def move_a_label_as_a_rotation_would(self, name: str, label: str, data: st.DataObject) -> None:
        """Promote a version, roll back, or move AWSPENDING: onto one of the secret's
        versions, mostly naming the holder as RemoveFromVersionId (U2, U8)."""
        secret = self.model.secrets.get(name)
        holder = secret.holder_of(label) if secret else None
        others = tuple(v for v in (secret.versions if secret else ()) if v != holder)
        move = data.draw(st.sampled_from(others or TOKENS[:1]), label="move")
        remove = data.draw(st.sampled_from((holder, holder, holder, None)), label="remove")
        self.update_stage(name, "name", label, move, remove)

    def update_stage(
        self, name: str, form: str, label: str, move: str | None, remove: str | None
    ) -> None:
        secret_id = self.secret_id(name, form)
        request = present_members(
            SecretId=secret_id,
            VersionStage=label,
            MoveToVersionId=move,
            RemoveFromVersionId=remove,
        )
        self.run_step(
            "UpdateSecretVersionStage",
            request,
            lambda: self.model.update_secret_version_stage(secret_id, label, move, remove),
        )

    @rule(name=names, form=secret_id_forms, data=st.data())
    def destroy_secret_version(self, name: str, form: str, data: st.DataObject) -> None:
        """Crypto-shred a version: mostly one of the secret's own, so that label
        detachments (detached-by-destroy) and the AWSCURRENT refusal both happen."""
        secret = self.model.secrets.get(name)
        version_id = data.draw(version_ids_of(secret), label="version_id")
        secret_id = self.secret_id(name, form)
        request = present_members(SecretId=secret_id, VersionId=version_id)
        self.run_step(
            "DestroySecretVersion",
            request,
            lambda: self.model.destroy_secret_version(secret_id, version_id),
        )

    @rule(name=names, form=secret_id_forms, window_days=recovery_windows, force=forced)
    def delete_secret(self, name: str, form: str, window_days: int | None, force: bool) -> None:
        secret_id = self.secret_id(name, form)
        request = present_members(
            SecretId=secret_id,
            RecoveryWindowInDays=window_days,
            ForceDeleteWithoutRecovery=True if force else None,
        )
        self.run_step(
            "DeleteSecret",
            request,
            lambda: self.model.delete_secret(secret_id, window_days, force),
        )

    @rule(name=names, form=secret_id_forms)
    def restore_secret(self, name: str, form: str) -> None:
        secret_id = self.secret_id(name, form)
        self.run_step(
            "RestoreSecret",
            {"SecretId": secret_id},
            lambda: self.model.restore_secret(secret_id),
        )

    @rule(
        name=names,
        form=secret_id_forms,
        stage=maybe_labels,
        data=st.data(),
    )
    def get_secret_value(
        self, name: str, form: str, stage: str | None, data: st.DataObject
    ) -> None:
        secret = self.model.secrets.get(name)
        version_id = data.draw(version_ids_of(secret, None), label="version_id")
        secret_id = self.secret_id(name, form)
        request = present_members(SecretId=secret_id, VersionId=version_id, VersionStage=stage)
        self.run_step(
            "GetSecretValue",
            request,
            lambda: (self.model.get_secret_value(secret_id, version_id, stage), False),
        )

    @rule(include_planned_deletion=st.booleans())
    def list_secrets(self, include_planned_deletion: bool) -> None:
        """ListSecrets purges every secret whose recovery window has run out (§6, §8)."""
        self.now += STEP_DURATION
        self.model.now = self.now
        expected_names = self.model.list_secret_names(include_planned_deletion)
        request = {"IncludePlannedDeletion": include_planned_deletion}
        response = self.api.call("ListSecrets", request)
        assert sorted(entry["Name"] for entry in response["SecretList"]) == expected_names
        for entry in response["SecretList"]:
            secret = self.model.secrets[entry["Name"]]
            assert entry["ARN"] == secret.arn
            assert entry.get("SecretVersionsToStages") == (secret.version_ids_to_stages() or None)
        predicted = [*self.model.drain_events(), ("ApiCallRecorded", None)]
        self.check_appended_events("ListSecrets", predicted)
        self.step_failed = False
        self.step_named_previous = False

    @rule(days=durations_days)
    def time_passes(self, days: int) -> None:
        """Recovery windows run out; the ledger notices lazily, on the next access."""
        self.now += timedelta(days=days)
        self.step_failed = False
        self.step_named_previous = False

    # Checks after every step

    @invariant()
    def checkpoints_sign_the_log(self) -> None:
        """Every few steps the log is checkpointed (the writer walks what is new)."""
        self.invariant_checks += 1
        if self.invariant_checks % CHECKPOINT_EVERY_STEPS == 0:
            write_checkpoint(
                self.evidence_store(),
                self.checkpoint_keys,
                now=lambda: self.now,
                checkpoint_path=None,
            )

    def evidence_store(self) -> CheckpointStore:
        store: CheckpointStore = self.secrets.recorder  # type: ignore[assignment]
        return store

    def check_the_log_verifies(self) -> None:
        """At the end, the whole log verifies against every checkpoint written."""
        write_checkpoint(
            self.evidence_store(), self.checkpoint_keys, now=lambda: self.now, checkpoint_path=None
        )
        verification = verify_evidence(self.evidence_store(), self.checkpoint_keys.verifiers, None)
        assert verification.problem is None, verification.problem
        assert verification.tree_size == self.evidence_store().event_hash_count()

    @invariant()
    def ledger_shows_what_the_model_holds(self) -> None:
        self.model.now = self.now
        log_length_before = self.log_length
        snapshot: dict[str, Any] = {}
        for name in NAMES:
            secret = self.model.secrets.get(name)
            if secret is not None and self.model.is_due(secret):
                continue  # touching it would purge it: the next step sees to that
            snapshot[name] = self.observe(name)
        current_log_length = self.secrets.recorder.max_notification_id() or 0
        assert current_log_length == log_length_before, "observing the ledger wrote to it"
        if self.step_failed:
            for name, observed in snapshot.items():
                assert observed == self.snapshot.get(name, observed), (
                    f"a failed call changed {name}"
                )
        self.snapshot = snapshot

    def observe(self, name: str) -> Any:
        """What the ledger shows for a name, compared with the model; None if absent."""
        secret = self.model.secrets.get(name)
        try:
            description = self.observer.call("DescribeSecret", {"SecretId": name})
        except SecretsManagerError as error:
            assert secret is None, f"{name}: {error.code}: {error}"
            assert error.code == "ResourceNotFoundException"
            return None
        assert secret is not None, f"the ledger still has {name}"
        assert description == self.model.describe_secret(name)
        every_version = self.observer.call(
            "ListSecretVersionIds", {"SecretId": name, "IncludeDeprecated": True}
        )
        labelled = self.observer.call("ListSecretVersionIds", {"SecretId": name})
        assert every_version["ARN"] == labelled["ARN"] == secret.arn
        versions = without_kms_key_ids(every_version["Versions"])
        assert versions == self.model.list_secret_version_ids(name, include_deprecated=True)
        assert without_kms_key_ids(labelled["Versions"]) == [
            entry for entry in versions if entry.get("VersionStages")
        ]
        holders = check_label_invariants(versions)
        assert description.get("VersionIdsToStages", {}) == {
            entry["VersionId"]: entry["VersionStages"]
            for entry in versions
            if entry.get("VersionStages")
        }
        self.check_previous_follows_current(secret.arn, holders)
        return (description, versions)

    def check_previous_follows_current(self, arn: str, holders: dict[str, str]) -> None:
        """P4/U8: when AWSCURRENT moves, AWSPREVIOUS lands on the version it left. OPEN
        (§2.3, see the model): a put that names AWSPREVIOUS itself keeps it."""
        old_current = self.current_holders.get(arn)
        new_current = holders.get(AWSCURRENT)
        if old_current is not None and new_current != old_current:
            assert new_current is not None, "AWSCURRENT vanished"
            expected_previous = new_current if self.step_named_previous else old_current
            assert holders.get(AWSPREVIOUS) == expected_previous, holders
        if new_current is not None:
            self.current_holders[arn] = new_current

    def check_every_value_reads_back(self) -> None:
        """Every version of every readable secret decrypts to the value the model holds."""
        self.model.now = self.now
        for name, secret in self.model.secrets.items():
            if secret.deletion_date is not None or self.model.is_due(secret):
                continue
            for version_id in secret.versions:
                request = {"SecretId": secret.arn, "VersionId": version_id}
                actual = self.observer.call("GetSecretValue", request)
                assert actual == self.model.get_secret_value(name, version_id, None)


class LedgerOnSQLiteAgainstModel(LedgerAgainstModel):
    """The same machine over a SQLite file: the transcoder, the data-key table and the
    recorder's transactions are then in the loop."""

    def database(self) -> str:
        return str(self.directory / "ledger.sqlite")


MEMORY_SETTINGS = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SQLITE_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_random_call_sequences_agree_with_the_model_in_memory() -> None:
    run_state_machine_as_test(LedgerAgainstModel, settings=MEMORY_SETTINGS)  # type: ignore[no-untyped-call]


def test_random_call_sequences_agree_with_the_model_on_sqlite() -> None:
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        LedgerOnSQLiteAgainstModel, settings=SQLITE_SETTINGS
    )
