"""Time travel answers exactly what replaying the log up to that instant gives.

Hypothesis writes random histories through the Secrets Manager API (creates, puts
with random stages, label moves, deletions scheduled or forced, restores, purges
after the window, names re-used, even within one instant, calls that fail) with a
clock that often stands still, so that many events share a timestamp. Then, for
every position of the log and for instants on, just before and just after every
event time, the label map from the projection must equal a fold of the raw log cut
at that point, for every name and every ARN.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_projections_support import (
    START,
    Ledger,
    replay_label_state,
    replay_name_holder,
    token,
)

from ledger.domain import AWSCURRENT, AWSPENDING, Secret
from projections import LabelMap, SecretNotFoundError
from projections.labels import LabelQueries

NAMES = ("app/db", "app/api", "web")
LABELS = (AWSCURRENT, AWSPENDING, "blue", "green")
STAGE_CHOICES: tuple[list[str] | None, ...] = (
    None,
    None,
    [AWSCURRENT],
    [AWSPENDING],
    ["blue"],
    [AWSPENDING, "green"],
    [AWSCURRENT, "blue"],
)
TICKS = (
    timedelta(0),
    timedelta(0),
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(seconds=1),
)
OPERATIONS = (
    "create",
    "create_empty",
    "put",
    "put",
    "put",
    "stage_move",
    "stage_remove",
    "delete",
    "force_delete",
    "recreate",
    "restore",
    "purge",
    "get",
)
ONE_MICROSECOND = timedelta(microseconds=1)

steps = st.lists(
    st.tuples(
        st.sampled_from(OPERATIONS),
        st.integers(0, len(NAMES) - 1),
        st.integers(0, 50),
        st.integers(0, 50),
        st.sampled_from(TICKS),
    ),
    min_size=1,
    max_size=35,
)


class Story:
    """Interprets drawn steps as API calls; failures are part of the story."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.next_token = 0
        self.versions: dict[str, list[str]] = {name: [] for name in NAMES}

    def new_token(self) -> str:
        self.next_token += 1
        return token(self.next_token)

    def pick_version(self, name: str, choice: int) -> str:
        versions = self.versions[name] or [token(999_999)]
        return versions[choice % len(versions)]

    def run(self, operation: str, name: str, first: int, second: int) -> None:
        ledger = self.ledger
        if operation in ("create", "create_empty"):
            members: dict[str, Any] = {"Name": name}
            first_versions = []
            if operation == "create":
                first_versions = [self.new_token()]
                members.update(ClientRequestToken=first_versions[0], SecretString="v")
            if ledger.attempt("CreateSecret", **members) is None:
                self.versions[name] = first_versions
        elif operation == "put":
            version_id = self.new_token()
            members = {"SecretId": name, "ClientRequestToken": version_id, "SecretString": "v"}
            stages = STAGE_CHOICES[first % len(STAGE_CHOICES)]
            if stages is not None:
                members["VersionStages"] = stages
            if ledger.attempt("PutSecretValue", **members) is None:
                self.versions[name].append(version_id)
        elif operation == "stage_move":
            label = LABELS[first % len(LABELS)]
            holder = self.holder(name, label)
            members = {"SecretId": name, "VersionStage": label}
            members["MoveToVersionId"] = self.pick_version(name, second)
            if holder is not None:
                members["RemoveFromVersionId"] = holder
            ledger.attempt("UpdateSecretVersionStage", **members)
        elif operation == "stage_remove":
            label = LABELS[first % len(LABELS)]
            ledger.attempt(
                "UpdateSecretVersionStage",
                SecretId=name,
                VersionStage=label,
                RemoveFromVersionId=self.holder(name, label) or self.pick_version(name, second),
            )
        elif operation == "delete":
            ledger.attempt("DeleteSecret", SecretId=name, RecoveryWindowInDays=7)
        elif operation == "force_delete":
            ledger.attempt("DeleteSecret", SecretId=name, ForceDeleteWithoutRecovery=True)
        elif operation == "recreate":
            # Gone and back under a new ARN, twice within one instant: the name changes
            # hands twice at a single timestamp.
            for _ in range(2):
                ledger.attempt("DeleteSecret", SecretId=name, ForceDeleteWithoutRecovery=True)
                self.run("create", name, first, second)
        elif operation == "restore":
            ledger.attempt("RestoreSecret", SecretId=name)
        elif operation == "purge":
            ledger.clock.advance(timedelta(days=8))
            ledger.attempt("GetSecretValue", SecretId=name)
        else:
            assert operation == "get", operation
            ledger.attempt("GetSecretValue", SecretId=name, VersionStage=LABELS[first % 4])

    def holder(self, name: str, label: str) -> str | None:
        """Where the label is now, asked quietly (DescribeSecret records a read; harmless)."""
        try:
            described = self.ledger.call("DescribeSecret", SecretId=name)
        except Exception:
            return None
        for version_id, labels in described.get("VersionIdsToStages", {}).items():
            if label in labels:
                return str(version_id)
        return None


def answer(labels: LabelQueries, secret: str, **cut: Any) -> LabelMap | None:
    try:
        return labels.label_map(secret, include_deprecated=True, **cut)
    except SecretNotFoundError:
        return None


def check_cut(
    labels: LabelQueries,
    entries: Sequence[tuple[int, Any]],
    arns: Sequence[str],
    **cut: Any,
) -> None:
    for arn in arns:
        expected = replay_label_state(entries, arn, **cut)
        assert_same(answer(labels, arn, **cut), expected, (arn, cut))
    for name in NAMES:
        holder = replay_name_holder(entries, name, **cut)
        expected = None if holder is None else replay_label_state(entries, holder, **cut)
        assert_same(answer(labels, name, **cut), expected, (name, cut))


def assert_same(actual: LabelMap | None, expected: Any, context: object) -> None:
    if expected is None:
        assert actual is None, context
        return
    assert actual is not None, context
    assert actual.arn == expected.arn, context
    assert actual.deleted == expected.deleted, context
    assert actual.labels == expected.labels, context
    assert list(actual.versions) == expected.versions, context
    assert actual.version_ids_to_stages() == expected.version_ids_to_stages(), context


def instants_around(entries: Sequence[tuple[int, Any]]) -> list[datetime]:
    times = sorted({event.timestamp for _, event in entries})
    instants = {START - ONE_MICROSECOND}
    for moment in times:
        instants.update({moment - ONE_MICROSECOND, moment, moment + ONE_MICROSECOND})
    return sorted(instants)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps)
def test_as_of_and_at_position_answer_what_a_replay_of_the_log_gives(
    drawn: list[tuple[str, int, int, int, timedelta]],
) -> None:
    ledger = Ledger("memory:", page_size=7)
    try:
        story = Story(ledger)
        for operation, name_index, first, second, tick in drawn:
            ledger.clock.advance(tick)
            story.run(operation, NAMES[name_index], first, second)
        labels = ledger.caught_up().labels
        entries = ledger.log()
        arns = sorted({event.arn for _, event in entries if isinstance(event, Secret.Created)})
        last_position = entries[-1][0] if entries else 0
        for position in range(last_position + 2):
            check_cut(labels, entries, arns, position=position)
        for instant in instants_around(entries):
            check_cut(labels, entries, arns, as_of=instant)
    finally:
        ledger.close()
