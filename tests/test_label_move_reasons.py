"""Every label move says why (docs/events.md R-1 to R-7, D-1): one case per reason
and per rule that produces it, read back from the log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ledger_helpers import AWSCURRENT, AWSPENDING, AWSPREVIOUS, Harness, token

from ledger.domain import (
    DEFAULT_CURRENT,
    DEMOTED,
    DETACHED_BY_DELETION,
    LABEL_MOVE_REASONS,
    PENDING_DROPPED,
    REQUESTED,
    Secret,
)

NAME = "reasons/app"

Move = tuple[str, str | None, str | None, str]


def moves_since(manager: Harness, log_length: int) -> list[Move]:
    """(label, from, to, reason) of every LabelMoved after ``log_length``."""
    return [
        (event.label, event.from_version_id, event.to_version_id, event.reason)
        for event in manager.events_since(log_length)
        if isinstance(event, Secret.LabelMoved)
    ]


def test_a_create_with_a_value_attaches_awscurrent_by_default(manager: Harness) -> None:
    manager.create(NAME, token(1), "one")

    assert moves_since(manager, 0) == [(AWSCURRENT, None, token(1), DEFAULT_CURRENT)]


def test_a_put_without_stages_attaches_awscurrent_by_default_and_demotes_the_old_one(
    manager: Harness,
) -> None:
    manager.create(NAME, token(1), "one")
    log_before = manager.log_length()

    manager.put(NAME, token(2), "two")

    assert moves_since(manager, log_before) == [
        (AWSCURRENT, token(1), token(2), DEFAULT_CURRENT),
        (AWSPREVIOUS, None, token(1), DEMOTED),
    ]


def test_labels_named_by_a_put_are_requested_even_awscurrent(manager: Harness) -> None:
    manager.create(NAME, token(1), "one")
    log_before = manager.log_length()

    manager.put(NAME, token(2), "two", [AWSCURRENT, "blue"])

    assert moves_since(manager, log_before) == [
        (AWSCURRENT, token(1), token(2), REQUESTED),
        (AWSPREVIOUS, None, token(1), DEMOTED),
        ("blue", None, token(2), REQUESTED),
    ]


def test_a_first_version_gets_awscurrent_by_default_beside_the_stages_it_names(
    manager: Harness,
) -> None:
    manager.create(NAME)
    log_before = manager.log_length()

    manager.put(NAME, token(1), "one", [AWSPENDING])

    assert moves_since(manager, log_before) == [
        (AWSCURRENT, None, token(1), DEFAULT_CURRENT),
        (AWSPENDING, None, token(1), REQUESTED),
    ]


def test_an_explicit_awsprevious_in_a_put_is_requested_not_demoted(manager: Harness) -> None:
    manager.create(NAME, token(1), "one")
    log_before = manager.log_length()

    manager.put(NAME, token(2), "two", [AWSCURRENT, AWSPREVIOUS])

    assert moves_since(manager, log_before) == [
        (AWSCURRENT, token(1), token(2), REQUESTED),
        (AWSPREVIOUS, None, token(2), REQUESTED),
    ]


def test_a_put_moving_awscurrent_drops_awspending_from_the_old_current(manager: Harness) -> None:
    manager.create(NAME, token(1), "one")
    manager.stage(NAME, AWSPENDING, move_to=token(1))
    log_before = manager.log_length()

    manager.put(NAME, token(2), "two")

    assert moves_since(manager, log_before) == [
        (AWSCURRENT, token(1), token(2), DEFAULT_CURRENT),
        (AWSPENDING, token(1), None, PENDING_DROPPED),
        (AWSPREVIOUS, None, token(1), DEMOTED),
    ]


def test_a_stage_update_moves_its_label_as_requested_and_awsprevious_follows(
    manager: Harness,
) -> None:
    manager.create(NAME, token(1), "one")
    manager.put(NAME, token(2), "two", [AWSPENDING])
    log_before = manager.log_length()

    manager.stage(NAME, AWSCURRENT, move_to=token(2), remove_from=token(1))
    manager.stage(NAME, AWSPENDING, remove_from=token(2))
    manager.stage(NAME, "blue", move_to=token(1))

    assert moves_since(manager, log_before) == [
        (AWSCURRENT, token(1), token(2), REQUESTED),
        (AWSPREVIOUS, None, token(1), DEMOTED),
        (AWSPENDING, token(2), None, REQUESTED),
        ("blue", None, token(1), REQUESTED),
    ]


def test_moving_awsprevious_itself_is_requested(manager: Harness) -> None:
    manager.create(NAME, token(1), "one")
    manager.put(NAME, token(2), "two")
    manager.put(NAME, token(3), "three")
    log_before = manager.log_length()

    manager.stage(NAME, AWSPREVIOUS, move_to=token(1), remove_from=token(2))

    assert moves_since(manager, log_before) == [(AWSPREVIOUS, token(2), token(1), REQUESTED)]


def test_a_forced_delete_detaches_every_label_before_destroying_and_deleted(
    manager: Harness,
) -> None:
    manager.create(NAME, token(1), "one")
    manager.put(NAME, token(2), "two", [AWSCURRENT, "blue"])
    log_before = manager.log_length()

    manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)

    events = manager.events_since(log_before)
    assert [type(event).__qualname__ for event in events] == [
        *["Secret.LabelMoved"] * 3,
        *["Secret.VersionDestroyed"] * 2,
        "Secret.Deleted",
        "SecretName.Released",
    ]
    assert moves_since(manager, log_before) == [
        (AWSCURRENT, token(2), None, DETACHED_BY_DELETION),
        (AWSPREVIOUS, token(1), None, DETACHED_BY_DELETION),
        ("blue", token(2), None, DETACHED_BY_DELETION),
    ]
    assert len({event.request["request_id"] for event in events}) == 1
    assert len({event.timestamp for event in events}) == 1


def test_the_purge_after_the_window_detaches_every_label(manager: Harness) -> None:
    manager.create(NAME, token(1), "one")
    manager.put(NAME, token(2), "two", [AWSPENDING])
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    manager.clock.advance(timedelta(days=7))
    log_before = manager.log_length()

    with pytest.raises(Exception, match="can't find"):
        manager.call("DescribeSecret", SecretId=NAME)

    assert moves_since(manager, log_before) == [
        (AWSCURRENT, token(1), None, DETACHED_BY_DELETION),
        (AWSPENDING, token(2), None, DETACHED_BY_DELETION),
    ]


def test_a_secret_without_a_value_is_deleted_with_no_label_move(manager: Harness) -> None:
    manager.create(NAME)
    log_before = manager.log_length()

    manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)

    assert moves_since(manager, log_before) == []
    assert manager.event_types_since(log_before) == ["Secret.Deleted", "SecretName.Released"]


def test_every_reason_written_is_in_the_vocabulary(manager: Harness) -> None:
    manager.create(NAME, token(1), "one")
    manager.put(NAME, token(2), "two", [AWSPENDING, "blue"])
    manager.stage(NAME, AWSCURRENT, move_to=token(2), remove_from=token(1))
    manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)

    reasons = {move[3] for move in moves_since(manager, 0)}
    assert reasons <= LABEL_MOVE_REASONS
    assert reasons == {DEFAULT_CURRENT, REQUESTED, DEMOTED, DETACHED_BY_DELETION}
