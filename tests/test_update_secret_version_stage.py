"""UpdateSecretVersionStage: rules U1-U14 and the worked examples
(docs/semantics.md §7). Every refusal changes nothing at all."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    MARKED_FOR_DELETION_MESSAGE,
    NOT_FOUND_MESSAGE,
    Harness,
    Oracle,
    Step,
    case,
    label,
    labelled_only,
    open_oracle,
    outcome_of,
    run_step,
    short_label_map,
    token,
    version,
)

from ledger.domain import Secret

NAME = "orders/db"


@pytest.fixture
def secret_arn(manager: Harness) -> str:
    arn: str = manager.create(NAME)["ARN"]
    return arn


def stage_request(
    stage: str, move_to: str | None = None, remove_from: str | None = None
) -> dict[str, Any]:
    request: dict[str, Any] = {"SecretId": NAME, "VersionStage": stage}
    if move_to is not None:
        request["MoveToVersionId"] = move_to
    if remove_from is not None:
        request["RemoveFromVersionId"] = remove_from
    return request


def remove_from_required_message(stage: str, holder: str) -> str:
    return (
        f"The parameter RemoveFromVersionId can't be empty. Staging label {stage} is currently "
        f"attached to version {holder}, so you must explicitly reference that version in "
        "RemoveFromVersionId."
    )


# --------------------------------------------------------------------------------------
# Worked examples, as a table
# --------------------------------------------------------------------------------------

WORKED_EXAMPLES: list[tuple[str, list[Step], Step, dict[str, list[str]]]] = [
    (
        "promotion of a pending version",
        [("put", "v1", None), ("put", "v2", ["PEND"])],
        ("stage", "CUR", "v2", "v1"),
        {"v2": ["CUR", "PEND"], "v1": ["PREV"]},
    ),
    (
        "rollback",
        [("put", "v1", None), ("put", "v2", None)],
        ("stage", "CUR", "v1", "v2"),
        {"v1": ["CUR"], "v2": ["PREV"]},
    ),
    (
        "removing a custom label keeps the others",
        [("put", "v1", ["CUR", "blue"]), ("put", "v2", None)],
        ("stage", "blue", None, "v1"),
        {"v2": ["CUR"], "v1": ["PREV"]},
    ),
    (
        "the demoted version keeps its custom labels",
        [("put", "v1", None), ("put", "v2", ["CUR", "blue"])],
        ("stage", "CUR", "v1", "v2"),
        {"v1": ["CUR"], "v2": ["PREV", "blue"]},
    ),
    (
        "only AWSCURRENT moves trigger AWSPREVIOUS",
        [("put", "v1", None), ("put", "v2", None), ("stage", "CUR", "v1", "v2")],
        ("stage", "green", "v2", None),
        {"v1": ["CUR"], "v2": ["PREV", "green"]},
    ),
    (
        "U1: a free label is added to the target's labels",
        [("put", "v1", None), ("put", "v2", ["PEND"])],
        ("stage", "blue", "v2", None),
        {"v1": ["CUR"], "v2": ["PEND", "blue"]},
    ),
    (
        "U2: a label moves from its holder, which keeps its other labels",
        [("put", "v1", ["CUR", "blue", "green"]), ("put", "v2", ["PEND"])],
        ("stage", "blue", "v2", "v1"),
        {"v1": ["CUR", "green"], "v2": ["PEND", "blue"]},
    ),
    (
        "U6: removing the last label deprecates the version",
        [("put", "v1", None), ("put", "v2", ["PEND"])],
        ("stage", "PEND", None, "v2"),
        {"v1": ["CUR"], "v2": []},
    ),
    (
        "U8: AWSPREVIOUS leaves its old holder when AWSCURRENT moves",
        [("put", "v1", None), ("put", "v2", None), ("put", "v3", ["PEND"])],
        ("stage", "CUR", "v3", "v2"),
        {"v3": ["CUR", "PEND"], "v2": ["PREV"], "v1": []},
    ),
    (
        "U8: promoting a deprecated version",
        [("put", "v1", None), ("put", "v2", None), ("put", "v3", None)],
        ("stage", "CUR", "v1", "v3"),
        {"v1": ["CUR"], "v3": ["PREV"], "v2": []},
    ),
    (
        "U9 (open): a label already on the target is a no-op",
        [("put", "v1", None), ("put", "v2", ["PEND"])],
        ("stage", "PEND", "v2", None),
        {"v1": ["CUR"], "v2": ["PEND"]},
    ),
    (
        "U9 (open): AWSCURRENT already on the target is a no-op",
        [("put", "v1", None), ("put", "v2", None)],
        ("stage", "CUR", "v2", None),
        {"v2": ["CUR"], "v1": ["PREV"]},
    ),
    (
        "moving AWSPREVIOUS by hand is an ordinary move",
        [("put", "v1", None), ("put", "v2", None), ("put", "v3", None)],
        ("stage", "PREV", "v1", "v2"),
        {"v3": ["CUR"], "v1": ["PREV"], "v2": []},
    ),
]


def test_worked_examples(manager: Harness) -> None:
    for index, (title, setup, call, expected) in enumerate(WORKED_EXAMPLES):
        with case(title):
            secret_id = f"example-{index}"
            arn = manager.create(secret_id)["ARN"]
            for step in setup:
                run_step(manager, secret_id, step)
            response = run_step(manager, secret_id, call)
            assert response == {"ARN": arn, "Name": secret_id}
            assert short_label_map(manager.labels(secret_id)) == expected


def test_a_promotion_changes_the_default_read(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "old")
    manager.put(NAME, token(2), "new", [AWSPENDING])
    manager.stage(NAME, AWSCURRENT, token(2), token(1))
    assert manager.current_value(NAME) == "new"
    manager.stage(NAME, AWSCURRENT, token(1), token(2))
    assert manager.current_value(NAME) == "old"


def test_a_promotion_appends_one_event_per_moved_label(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "one")
    manager.put(NAME, token(2), "two")
    manager.put(NAME, token(3), "three", [AWSPENDING])
    log_before = manager.log_length()
    manager.stage(NAME, AWSCURRENT, token(3), token(2))
    events = manager.events_since(log_before)
    assert all(isinstance(event, Secret.LabelMoved) for event in events)
    assert {(e.label, e.from_version_id, e.to_version_id) for e in events} == {
        (AWSCURRENT, token(2), token(3)),
        (AWSPREVIOUS, token(1), token(2)),
    }


def test_a_no_op_appends_only_the_call_record(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "one")
    stream_before = manager.stream_length(secret_arn)
    log_before = manager.log_length()
    manager.stage(NAME, AWSCURRENT, token(1))
    assert manager.event_types_since(log_before) == ["ApiCall.Recorded"]
    assert manager.stream_length(secret_arn) == stream_before


def test_a_secret_can_hold_a_label_on_a_version_until_the_quota(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one", [f"label-{n:02}" for n in range(18)])
    manager.put(NAME, token(2), "two", [AWSPENDING])
    assert sum(len(labels) for labels in manager.labels(NAME).values()) == 20


# --------------------------------------------------------------------------------------
# Refusals (U3-U5, U7, U10-U14): each one changes nothing
# --------------------------------------------------------------------------------------


@pytest.fixture
def three_versions(manager: Harness, secret_arn: str) -> dict[str, list[str]]:
    """v3[CUR, blue] v2[PREV] v1[green]; returns the label map."""
    manager.put(NAME, token(1), "one", [AWSCURRENT, "green"])
    manager.put(NAME, token(2), "two")
    manager.put(NAME, token(3), "three", [AWSCURRENT, "blue"])
    return manager.labels(NAME)


REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "U3: AWSCURRENT held elsewhere without RemoveFromVersionId",
        stage_request(AWSCURRENT, move_to=token(1)),
        "InvalidParameterException",
        remove_from_required_message(AWSCURRENT, token(3)),
    ),
    (
        "U4 (open): another label held elsewhere without RemoveFromVersionId",
        stage_request("blue", move_to=token(2)),
        "InvalidParameterException",
        remove_from_required_message("blue", token(3)),
    ),
    (
        "U5 (open): RemoveFromVersionId lacks the label",
        stage_request("blue", move_to=token(1), remove_from=token(2)),
        "InvalidParameterException",
        f"Staging label blue is not attached to version {token(2)}, "
        "so you can't remove it from that version.",
    ),
    (
        "U5 (open): removing a label nobody holds",
        stage_request("purple", remove_from=token(2)),
        "InvalidParameterException",
        f"Staging label purple is not attached to version {token(2)}, "
        "so you can't remove it from that version.",
    ),
    (
        "U7 (open): unknown MoveToVersionId",
        stage_request(AWSCURRENT, move_to=token(99), remove_from=token(3)),
        "InvalidParameterException",
        f"The version {token(99)} doesn't exist for this secret.",
    ),
    (
        "U7 (open): unknown RemoveFromVersionId",
        stage_request("blue", remove_from=token(98)),
        "InvalidParameterException",
        f"The version {token(98)} doesn't exist for this secret.",
    ),
    (
        "U10 (open): removing AWSCURRENT without moving it",
        stage_request(AWSCURRENT, remove_from=token(3)),
        "InvalidParameterException",
        "You can't remove the staging label AWSCURRENT without moving it to another version: "
        "a secret with versions always has exactly one AWSCURRENT version.",
    ),
    (
        "U11 (open): neither version id",
        stage_request("blue"),
        "InvalidParameterException",
        "You must specify MoveToVersionId, RemoveFromVersionId, or both.",
    ),
    (
        "U14: moto's half-applied move (known remove, unknown target)",
        stage_request(AWSCURRENT, move_to=token(97), remove_from=token(3)),
        "InvalidParameterException",
        f"The version {token(97)} doesn't exist for this secret.",
    ),
    (
        "constraint: a version id of the wrong length",
        stage_request("blue", move_to="short"),
        "ValidationException",
        "1 validation error detected: Value 'short' at 'moveToVersionId' failed to satisfy "
        "constraint: Member must have length greater than or equal to 32",
    ),
    (
        "constraint: an empty label",
        stage_request("", move_to=token(1)),
        "ValidationException",
        "1 validation error detected: Value '' at 'versionStage' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1",
    ),
]


def test_refusals_change_nothing(
    manager: Harness, secret_arn: str, three_versions: dict[str, list[str]]
) -> None:
    for title, request_members, code, message in REFUSALS:
        with case(title):
            manager.assert_refused(
                "UpdateSecretVersionStage", request_members, code, message, [secret_arn]
            )
            assert manager.labels(NAME) == three_versions
            assert manager.current_value(NAME) == "three"


def test_u12_a_move_past_twenty_attachments_changes_nothing(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one", [f"label-{n:02}" for n in range(18)])
    manager.put(NAME, token(2), "two", [AWSPENDING])  # 20 attachments
    labels_before = manager.labels(NAME)
    manager.assert_refused(
        "UpdateSecretVersionStage",
        stage_request("one-more", move_to=token(2)),
        "LimitExceededException",
        f"You can't attach more than 20 staging labels to the versions of secret {secret_arn}; "
        "this request would attach 21.",
        [secret_arn],
    )
    assert manager.labels(NAME) == labels_before
    manager.stage(NAME, "label-00", token(2), token(1))  # a move keeps the count
    assert "label-00" in manager.labels(NAME)[token(2)]


def test_u12_a_promotion_that_adds_awsprevious_past_the_quota_is_refused(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one", [f"label-{n:02}" for n in range(17)])
    manager.put(NAME, token(2), "two", [AWSPENDING, "extra"])  # 20, no AWSPREVIOUS yet
    manager.assert_refused(
        "UpdateSecretVersionStage",
        stage_request(AWSCURRENT, move_to=token(2), remove_from=token(1)),
        "LimitExceededException",
        secret_arns=[secret_arn],
    )


def test_u13_a_secret_scheduled_for_deletion_refuses_label_moves(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one")
    manager.put(NAME, token(2), "two", [AWSPENDING])
    manager.call("DeleteSecret", SecretId=NAME)
    manager.assert_refused(
        "UpdateSecretVersionStage",
        stage_request(AWSCURRENT, move_to=token(2), remove_from=token(1)),
        "InvalidRequestException",
        MARKED_FOR_DELETION_MESSAGE,
        [secret_arn],
    )


def test_an_unknown_secret_is_not_found(manager: Harness) -> None:
    manager.assert_refused(
        "UpdateSecretVersionStage",
        stage_request("blue", move_to=token(1)),
        "ResourceNotFoundException",
        NOT_FOUND_MESSAGE,
    )


def test_moving_awscurrent_on_a_secret_without_versions_is_refused(
    manager: Harness, secret_arn: str
) -> None:
    manager.assert_refused(
        "UpdateSecretVersionStage",
        stage_request(AWSCURRENT, move_to=token(1)),
        "InvalidParameterException",
        f"The version {token(1)} doesn't exist for this secret.",
        [secret_arn],
    )


def test_invariants_hold_after_a_rotation_story(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "one")
    for number in range(2, 6):
        manager.put(NAME, token(number), f"candidate {number}", [AWSPENDING])
        manager.stage(NAME, AWSCURRENT, token(number), token(number - 1))
        manager.stage(NAME, AWSPENDING, None, token(number))
        labels = manager.labels(NAME)
        holders = [version_id for version_id, items in labels.items() if AWSCURRENT in items]
        assert holders == [token(number)]
        assert AWSPREVIOUS in labels[token(number - 1)]
        assert not any(AWSPENDING in items for items in labels.values())


# --------------------------------------------------------------------------------------
# moto as a differential oracle: promotion, rollback, U3 (label maps only)
# --------------------------------------------------------------------------------------

DIFFERENTIAL_STORIES: list[tuple[str, list[Step]]] = [
    (
        "promotion",
        [("put", "v1", None), ("put", "v2", ["PEND"]), ("stage", "CUR", "v2", "v1")],
    ),
    ("rollback", [("put", "v1", None), ("put", "v2", None), ("stage", "CUR", "v1", "v2")]),
    (
        "promotion then rollback",
        [
            ("put", "v1", None),
            ("put", "v2", None),
            ("put", "v3", ["PEND"]),
            ("stage", "CUR", "v3", "v2"),
            ("stage", "CUR", "v2", "v3"),
        ],
    ),
    ("U3", [("put", "v1", None), ("put", "v2", ["PEND"]), ("stage", "CUR", "v2", None)]),
]


def test_promotion_and_rollback_agree_with_moto(manager: Harness) -> None:
    with open_oracle() as oracle:
        for index, (title, steps) in enumerate(DIFFERENTIAL_STORIES):
            with case(title):
                secret_id = f"story-{index}"
                manager.create(secret_id)
                oracle.call("CreateSecret", Name=secret_id)
                for step in steps:
                    compare_step(manager, oracle, secret_id, step)


def compare_step(manager: Harness, oracle: Oracle, secret_id: str, step: Step) -> None:
    """Run a step on both; compare errors and label maps (never a default read: moto's
    deviation 1)."""
    if step[0] == "put":
        _, short_version, stages = step
        members: dict[str, Any] = {
            "SecretId": secret_id,
            "ClientRequestToken": version(short_version),
            "SecretString": short_version,
        }
        if stages is not None:
            members["VersionStages"] = [label(item) for item in stages]
        run_step(manager, secret_id, step)
        oracle.call("PutSecretValue", **members)
        return
    _, short_label, move_to, remove_from = step
    members = {"SecretId": secret_id, "VersionStage": label(short_label)}
    if move_to is not None:
        members["MoveToVersionId"] = version(move_to)
    if remove_from is not None:
        members["RemoveFromVersionId"] = version(remove_from)
    ours = outcome_of(manager, "UpdateSecretVersionStage", **members)
    theirs = oracle.call("UpdateSecretVersionStage", **members)
    assert ours.get("Error") == theirs.get("Error")
    assert labelled_only(manager.labels(secret_id)) == labelled_only(oracle.labels(secret_id))
