"""The label projection tells, from the log alone, where every label was at any moment.

Each story writes through the Secrets Manager API and reads through the read model,
on every backend; the oracle is DescribeSecret (now) or a fold of the raw log (then).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_projections_support import (
    ALICE,
    ROTATOR,
    Ledger,
    replay_label_state,
    token,
)

from ledger.domain import AWSCURRENT, AWSPENDING, AWSPREVIOUS, Secret
from projections import SecretNotFoundError
from projections.labels import (
    LABELS_BEFORE,
    LATEST_LABELS,
    NAME_HOLDER_AS_OF,
    NAME_HOLDER_AT,
    SECRET_POSITION_AS_OF,
    SECRET_TIME_AT,
    VERSION_CREATED_AT,
    VERSIONS_AT,
)

ONE_MICROSECOND = timedelta(microseconds=1)


@pytest.fixture
def ledger(backend: str) -> Iterator[Ledger]:
    ledger = Ledger(backend)
    yield ledger
    ledger.close()


def assert_agrees_with_the_ledger(ledger: Ledger, name: str) -> None:
    """The current label map is DescribeSecret's, and its versions ListSecretVersionIds'."""
    model = ledger.caught_up()
    described = ledger.call("DescribeSecret", SecretId=name)
    label_map = model.labels.label_map(name, include_deprecated=True)
    assert label_map.arn == described["ARN"]
    assert label_map.version_ids_to_stages() == described.get("VersionIdsToStages", {})
    listed = ledger.call("ListSecretVersionIds", SecretId=name, IncludeDeprecated=True)
    newest_first = [entry["VersionId"] for entry in listed["Versions"]]
    assert list(label_map.versions) == list(reversed(newest_first))


def test_the_label_map_agrees_with_describe_secret_after_every_call(ledger: Ledger) -> None:
    name = "payments/api-key"
    steps: list[Callable[[], dict[str, Any]]] = [
        lambda: ledger.call("CreateSecret", Name=name),
        lambda: ledger.call(
            "PutSecretValue", SecretId=name, ClientRequestToken=token(1), SecretString="one"
        ),
        lambda: ledger.call(
            "PutSecretValue", SecretId=name, ClientRequestToken=token(2), SecretString="two"
        ),
        lambda: ledger.call(
            "PutSecretValue",
            SecretId=name,
            ClientRequestToken=token(3),
            SecretString="three",
            VersionStages=[AWSPENDING],
        ),
        lambda: ledger.call(
            "UpdateSecretVersionStage",
            SecretId=name,
            VersionStage="blue",
            MoveToVersionId=token(1),
        ),
        lambda: ledger.call(
            "UpdateSecretVersionStage",
            SecretId=name,
            VersionStage=AWSCURRENT,
            MoveToVersionId=token(3),
            RemoveFromVersionId=token(2),
            principal=ROTATOR,
        ),
        lambda: ledger.call(
            "UpdateSecretVersionStage",
            SecretId=name,
            VersionStage="blue",
            RemoveFromVersionId=token(1),
        ),
        lambda: ledger.call(
            "PutSecretValue",
            SecretId=name,
            ClientRequestToken=token(4),
            SecretString="four",
            VersionStages=[AWSPENDING],
        ),
        lambda: ledger.call(
            "UpdateSecretVersionStage",
            SecretId=name,
            VersionStage=AWSPENDING,
            MoveToVersionId=token(3),
            RemoveFromVersionId=token(4),
        ),
        # A put while AWSCURRENT also carries AWSPENDING abandons the rotation (P6).
        lambda: ledger.call(
            "PutSecretValue", SecretId=name, ClientRequestToken=token(5), SecretString="five"
        ),
        lambda: ledger.call("GetSecretValue", SecretId=name, VersionStage=AWSPREVIOUS),
        lambda: ledger.call("DeleteSecret", SecretId=name, RecoveryWindowInDays=7),
        lambda: ledger.call("RestoreSecret", SecretId=name),
    ]
    for step in steps:
        ledger.tick()
        step()
        assert_agrees_with_the_ledger(ledger, name)


def test_as_of_a_time_includes_every_event_stamped_with_that_time(ledger: Ledger) -> None:
    created = ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="first"
    )
    before = ledger.tick()
    instant = ledger.tick()
    # Two puts in the same microsecond: "as of" that instant includes both.
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="2")
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(3), SecretString="3")
    labels = ledger.caught_up().labels

    at_instant = labels.label_map("app/db", as_of=instant)
    assert at_instant.labels == {AWSCURRENT: token(3), AWSPREVIOUS: token(2)}
    assert at_instant.as_of == instant
    assert at_instant.position == ledger.secrets.recorder.max_notification_id()

    just_before = labels.label_map("app/db", as_of=instant - ONE_MICROSECOND)
    assert just_before.labels == {AWSCURRENT: token(1)}
    assert labels.label_map(created["ARN"], as_of=before).labels == {AWSCURRENT: token(1)}


def test_a_position_can_cut_between_the_events_of_one_put(ledger: Ledger) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="first")
    ledger.tick()
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="2")
    entries = ledger.log()
    version_created = next(
        position
        for position, event in entries
        if isinstance(event, Secret.VersionCreated) and event.version_id == token(2)
    )
    labels = ledger.caught_up().labels

    halfway = labels.label_map("app/db", position=version_created, include_deprecated=True)

    assert halfway.versions == {token(1): (AWSCURRENT,), token(2): ()}
    replayed = replay_label_state(entries, halfway.arn, position=version_created)
    assert replayed is not None
    assert halfway.labels == replayed.labels
    assert halfway.position == version_created


def test_a_name_means_the_secret_that_held_it_at_that_time(ledger: Ledger) -> None:
    before_anything = ledger.quiet_moment()
    first = ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="old"
    )
    while_first = ledger.quiet_moment()
    ledger.call("DeleteSecret", SecretId="app/db", ForceDeleteWithoutRecovery=True)
    between = ledger.quiet_moment()
    second = ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(2), SecretString="new"
    )
    labels = ledger.caught_up().labels

    then = labels.label_map("app/db", as_of=while_first)
    assert (then.arn, then.labels, then.deleted) == (first["ARN"], {AWSCURRENT: token(1)}, False)

    gone = labels.label_map("app/db", as_of=between)
    assert (gone.arn, gone.labels, gone.deleted) == (first["ARN"], {}, True)

    now = labels.label_map("app/db")
    assert (now.arn, now.labels) == (second["ARN"], {AWSCURRENT: token(2)})

    # A full ARN always means its own secret, and a partial ARN works like the name.
    assert labels.label_map(first["ARN"]).deleted
    partial_arn = second["ARN"][: -len("-XXXXXX")]
    assert labels.label_map(partial_arn, as_of=while_first).arn == first["ARN"]

    with pytest.raises(SecretNotFoundError, match="No secret named 'app/db' existed as of"):
        labels.label_map("app/db", as_of=before_anything)
    with pytest.raises(SecretNotFoundError, match="did not exist as of"):
        labels.label_map(second["ARN"], as_of=between)


def test_history_lists_every_move_with_who_made_it(ledger: Ledger) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="one")
    ledger.tick()
    ledger.call(
        "PutSecretValue",
        SecretId="app/db",
        ClientRequestToken=token(2),
        SecretString="two",
        VersionStages=[AWSPENDING],
        principal=ROTATOR,
    )
    promoted_at = ledger.tick()
    ledger.call(
        "UpdateSecretVersionStage",
        SecretId="app/db",
        VersionStage=AWSCURRENT,
        MoveToVersionId=token(2),
        RemoveFromVersionId=token(1),
        principal=ROTATOR,
    )
    labels = ledger.caught_up().labels

    moves = [
        (move.label, move.from_version_id, move.to_version_id, move.principal_arn, move.operation)
        for move in labels.history("app/db")
    ]
    assert moves == [
        (AWSCURRENT, None, token(1), ALICE, "CreateSecret"),
        (AWSPENDING, None, token(2), ROTATOR, "PutSecretValue"),
        (AWSCURRENT, token(1), token(2), ROTATOR, "UpdateSecretVersionStage"),
        (AWSPREVIOUS, None, token(1), ROTATOR, "UpdateSecretVersionStage"),
    ]
    only_current = labels.history("app/db", label=AWSCURRENT, since=promoted_at)
    assert [(move.from_version_id, move.to_version_id) for move in only_current] == [
        (token(1), token(2))
    ]
    positions = [move.position for move in labels.history("app/db")]
    assert positions == sorted(positions)


def test_a_deletion_ends_every_label_interval(ledger: Ledger) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="one")
    ledger.tick()
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="2")
    ledger.tick()
    ledger.call("DeleteSecret", SecretId="app/db", RecoveryWindowInDays=7)
    ledger.clock.advance(timedelta(days=8))
    # The first call after the window purges the secret, as the service.
    assert ledger.attempt("GetSecretValue", SecretId="app/db") == "ResourceNotFoundException"
    labels = ledger.caught_up().labels

    intervals = labels.intervals("app/db")
    assert {interval.label for interval in intervals if interval.to_position is None} == set()
    detachments = [move for move in labels.history("app/db") if move.to_version_id is None]
    assert [(move.label, move.principal_arn) for move in detachments] == [
        (AWSCURRENT, "secretsmanager.amazonaws.com"),
        (AWSPREVIOUS, "secretsmanager.amazonaws.com"),
    ]
    assert labels.label_map("app/db").deleted


def test_destruction_and_deletion_end_intervals_at_their_own_detachments(
    ledger: Ledger,
) -> None:
    """R-6 and D-1: the log takes each label off by an event of its own (before the
    ``VersionDestroyed`` events), and each interval ends exactly there."""
    created = ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="one"
    )
    ledger.call(
        "UpdateSecretVersionStage", SecretId="app/db", VersionStage="blue", MoveToVersionId=token(1)
    )
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="2")
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(3), SecretString="3")
    ledger.call("DestroySecretVersion", SecretId="app/db", VersionId=token(1))
    before_deletion = ledger.secrets.recorder.max_notification_id()
    ledger.call("DeleteSecret", SecretId="app/db", ForceDeleteWithoutRecovery=True)
    labels = ledger.caught_up().labels

    detachments = [move for move in labels.history(created["ARN"]) if move.to_version_id is None]
    assert [(move.label, move.operation, move.reason) for move in detachments] == [
        ("blue", "DestroySecretVersion", "detached-by-destroy"),
        (AWSCURRENT, "DeleteSecret", "detached-by-deletion"),
        (AWSPREVIOUS, "DeleteSecret", "detached-by-deletion"),
    ]
    assert len({move.position for move in detachments}) == len(detachments)
    closed = {
        (interval.label, interval.to_position)
        for interval in labels.intervals(created["ARN"])
        if interval.to_position in {move.position for move in detachments}
    }
    assert closed == {(move.label, move.position) for move in detachments}
    assert all(interval.to_position is not None for interval in labels.intervals(created["ARN"]))
    remaining = labels.label_map(created["ARN"], position=before_deletion, include_deprecated=True)
    assert list(remaining.versions) == [token(2), token(3)]
    assert labels.label_map(created["ARN"]).deleted


def test_the_history_table_has_one_row_per_interval_a_label_sat_on_a_version(
    ledger: Ledger,
) -> None:
    created = ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="one"
    )
    ledger.tick()
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="2")
    ledger.tick()
    ledger.call("DeleteSecret", SecretId="app/db", ForceDeleteWithoutRecovery=True)
    model = ledger.caught_up()

    with model.store.read() as cursor:
        rows = cursor.execute(
            "SELECT secret_arn, label, version_id, from_position, to_position, "
            "from_principal, to_principal, from_request_id, to_request_id "
            "FROM projection_label_intervals ORDER BY label, from_position"
        ).fetchall()

    intervals = model.labels.intervals(created["ARN"])
    assert rows == [
        (
            interval.secret_arn,
            interval.label,
            interval.version_id,
            interval.from_position,
            interval.to_position,
            interval.from_principal,
            interval.to_principal,
            interval.from_request_id,
            interval.to_request_id,
        )
        for interval in intervals
    ]
    assert [(row[1], row[2]) for row in rows] == [
        (AWSCURRENT, token(1)),
        (AWSCURRENT, token(2)),
        (AWSPREVIOUS, token(1)),
    ]
    assert all(row[4] is not None for row in rows), "the deletion ended every interval"


def test_diff_names_the_labels_that_changed_between_two_instants(ledger: Ledger) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="one")
    first = ledger.quiet_moment()
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="2")
    ledger.call(
        "UpdateSecretVersionStage", SecretId="app/db", VersionStage="blue", MoveToVersionId=token(1)
    )
    second = ledger.quiet_moment()
    labels = ledger.caught_up().labels

    changes = [
        (change.label, change.before_version_id, change.after_version_id)
        for change in labels.diff("app/db", first, second)
    ]
    assert changes == [
        (AWSCURRENT, token(1), token(2)),
        (AWSPREVIOUS, None, token(1)),
        ("blue", None, token(1)),
    ]
    assert labels.diff("app/db", second, second) == []


def test_versions_removed_by_retention_leave_the_map_but_stay_in_the_past(
    ledger: Ledger,
) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="v1")
    for number in range(2, 101):
        ledger.call(
            "PutSecretValue", SecretId="app/db", ClientRequestToken=token(number), SecretString="v"
        )
    ledger.clock.advance(timedelta(hours=25))
    with_a_hundred = ledger.quiet_moment()
    ledger.call(
        "PutSecretValue", SecretId="app/db", ClientRequestToken=token(101), SecretString="v101"
    )
    labels = ledger.caught_up().labels

    now = labels.label_map("app/db", include_deprecated=True)
    assert token(1) not in now.versions
    assert len(now.versions) == 100
    then = labels.label_map("app/db", as_of=with_a_hundred, include_deprecated=True)
    assert token(1) in then.versions
    assert then.versions[token(1)] == ()
    assert_agrees_with_the_ledger(ledger, "app/db")


def test_an_as_of_query_is_answered_by_index_seeks_not_scans(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(database)
    try:
        ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="v")
        ledger.caught_up()
    finally:
        ledger.close()
    statements = {
        NAME_HOLDER_AS_OF: ("app/db", 1),
        NAME_HOLDER_AT: ("app/db", 1),
        SECRET_POSITION_AS_OF: (3, 1),
        SECRET_TIME_AT: (3, 1),
        LABELS_BEFORE: (64, 3),
        LATEST_LABELS: (3,),
        VERSION_CREATED_AT: (3, "version"),
        VERSIONS_AT: (3, 1, 1),
    }
    with sqlite3.connect(database) as connection:
        for statement, parameters in statements.items():
            plan = connection.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            details = " | ".join(row[3] for row in plan)
            assert "SCAN" not in details, (statement, details)
