"""PutSecretValue: label rules P1-P9, the order of checks, idempotency T1-T10, the
value rules and quotas (docs/semantics.md §2), on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from ledger_helpers import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    BOTH_VALUES_MESSAGE,
    MARKED_FOR_DELETION_MESSAGE,
    NOT_FOUND_MESSAGE,
    TOKEN_REQUIRED_MESSAGE,
    VALUE_REQUIRED_MESSAGE,
    Harness,
    Oracle,
    Step,
    case,
    label,
    labelled_only,
    open_oracle,
    run_step,
    short_label_map,
    token,
    token_in_use_message,
    version,
)

from ledger.domain import ApiCall, Secret

NAME = "payments/api-key"


@pytest.fixture
def secret_arn(manager: Harness) -> str:
    """A secret created without a value."""
    arn: str = manager.create(NAME)["ARN"]
    return arn


def put_request(client_request_token: str | None = None, **members: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"SecretId": NAME, **members}
    if client_request_token is not None:
        request["ClientRequestToken"] = client_request_token
    return request


# --------------------------------------------------------------------------------------
# Label rules: the worked examples of section 2.3, as a table
# --------------------------------------------------------------------------------------

WORKED_EXAMPLES: list[tuple[str, list[Step], Step, dict[str, list[str]]]] = [
    ("P1 P2: the first version becomes current", [], ("put", "v1", None), {"v1": ["CUR"]}),
    (
        "P2: the first version is current even when staged elsewhere",
        [],
        ("put", "v1", ["PEND"]),
        {"v1": ["CUR", "PEND"]},
    ),
    (
        "P1 P4: a default put demotes the current version to previous",
        [("put", "v1", None)],
        ("put", "v2", None),
        {"v2": ["CUR"], "v1": ["PREV"]},
    ),
    (
        "P4: the version that was previous becomes deprecated",
        [("put", "v1", None), ("put", "v2", None)],
        ("put", "v3", None),
        {"v3": ["CUR"], "v2": ["PREV"], "v1": []},
    ),
    (
        "P5: a put staged without AWSCURRENT moves neither current nor previous",
        [("put", "v1", None)],
        ("put", "v2", ["PEND"]),
        {"v2": ["PEND"], "v1": ["CUR"]},
    ),
    (
        "P3: a staged label leaves its old holder",
        [("put", "v1", None), ("put", "v2", ["PEND"])],
        ("put", "v3", ["PEND"]),
        {"v3": ["PEND"], "v2": [], "v1": ["CUR"]},
    ),
    (
        "P3: the old holder keeps its other labels",
        [("put", "v1", None), ("put", "v2", ["one", "two", "three"])],
        ("put", "v3", ["one", "two", "four"]),
        {"v3": ["four", "one", "two"], "v2": ["three"], "v1": ["CUR"]},
    ),
    (
        "P3 P4: AWSCURRENT with a custom label",
        [("put", "v1", None)],
        ("put", "v2", ["CUR", "blue"]),
        {"v2": ["CUR", "blue"], "v1": ["PREV"]},
    ),
    (
        "P4 P6: a default put after a finished rotation drops AWSPENDING",
        [("put", "v1", None), ("put", "v2", ["PEND"]), ("stage", "CUR", "v2", "v1")],
        ("put", "v3", None),
        {"v3": ["CUR"], "v2": ["PREV"], "v1": []},
    ),
    (
        "P7 (open): custom labels on the demoted version survive the P6 case",
        [
            ("put", "v1", None),
            ("put", "v2", ["PEND", "blue"]),
            ("stage", "CUR", "v2", "v1"),
        ],
        ("put", "v3", None),
        {"v3": ["CUR"], "v2": ["PREV", "blue"], "v1": []},
    ),
    (
        "P8 (open): AWSPENDING on a third version stays in place",
        [("put", "v1", None), ("put", "v2", None), ("put", "v3", ["PEND"])],
        ("put", "v4", None),
        {"v4": ["CUR"], "v3": ["PEND"], "v2": ["PREV"], "v1": []},
    ),
    (
        "an explicit AWSPENDING moves with AWSCURRENT instead of being dropped",
        [("put", "v1", None), ("put", "v2", ["PEND"]), ("stage", "CUR", "v2", "v1")],
        ("put", "v3", ["CUR", "PEND"]),
        {"v3": ["CUR", "PEND"], "v2": ["PREV"], "v1": []},
    ),
    (
        "a label named twice in VersionStages is one label",
        [("put", "v1", None)],
        ("put", "v2", ["blue", "blue"]),
        {"v2": ["blue"], "v1": ["CUR"]},
    ),
    (
        "P4: AWSPREVIOUS staged explicitly with AWSCURRENT stays on the new version",
        [("put", "v1", None)],
        ("put", "v2", ["CUR", "PREV"]),
        {"v2": ["CUR", "PREV"], "v1": []},
    ),
]


def test_worked_examples_of_the_label_rules(manager: Harness) -> None:
    for index, (title, setup, call, expected) in enumerate(WORKED_EXAMPLES):
        with case(title):
            secret_id = f"example-{index}"
            manager.create(secret_id)
            for step in setup:
                run_step(manager, secret_id, step)
            response = run_step(manager, secret_id, call)
            labels = manager.labels(secret_id)
            assert short_label_map(labels) == expected
            assert response["VersionId"] == version(call[1])
            assert response["VersionStages"] == sorted(labels[version(call[1])])


def test_a_put_staged_without_awscurrent_leaves_the_default_read_on_the_old_value(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "old password")
    manager.put(NAME, token(2), "candidate password", [AWSPENDING])
    assert manager.current_value(NAME) == "old password"
    pending = manager.quietly("GetSecretValue", SecretId=NAME, VersionStage=AWSPENDING)
    assert pending["SecretString"] == "candidate password"


def test_the_response_names_the_secret_and_the_new_version_with_sorted_labels(
    manager: Harness, secret_arn: str
) -> None:
    response = manager.put(NAME, token(1), "x", ["zeta", AWSCURRENT, "alpha"])
    assert response == {
        "ARN": secret_arn,
        "Name": NAME,
        "VersionId": token(1),
        "VersionStages": [AWSCURRENT, "alpha", "zeta"],
    }


def test_a_put_appends_the_version_and_one_event_per_label_move_in_one_go(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one")
    manager.put(NAME, token(2), "two", [AWSPENDING, "blue"])
    log_before = manager.log_length()
    manager.put(NAME, token(3), "three", [AWSCURRENT, "blue"])
    events = manager.events_since(log_before)
    assert [type(event) for event in events] == [Secret.VersionCreated] + [Secret.LabelMoved] * 3
    moves = {(e.label, e.from_version_id, e.to_version_id) for e in events[1:]}
    assert moves == {
        (AWSCURRENT, token(1), token(3)),
        (AWSPREVIOUS, None, token(1)),
        ("blue", token(2), token(3)),
    }


def test_the_value_is_sealed_before_it_reaches_the_log(manager: Harness, secret_arn: str) -> None:
    log_before = manager.log_length()
    manager.put(NAME, token(1), "correct horse battery staple")
    created = manager.events_since(log_before)[0]
    assert isinstance(created, Secret.VersionCreated)
    assert b"correct horse battery staple" not in created.ciphertext
    assert (created.version_id, created.kind) == (token(1), "string")


# --------------------------------------------------------------------------------------
# ClientRequestToken and idempotency (section 2.4)
# --------------------------------------------------------------------------------------


def test_t1_the_token_becomes_the_version_id(manager: Harness, secret_arn: str) -> None:
    client_request_token = "0123456789abcdef0123456789abcdef"  # 32 characters, the minimum
    manager.put(NAME, client_request_token, "x")
    got = manager.quietly("GetSecretValue", SecretId=NAME)
    assert got["VersionId"] == client_request_token
    longest = "t" * 64
    assert manager.put(NAME, longest, "y")["VersionId"] == longest


def test_t2_a_raw_request_without_a_token_is_refused(manager: Harness, secret_arn: str) -> None:
    manager.assert_refused(
        "PutSecretValue",
        put_request(SecretString="x"),
        "InvalidRequestException",
        TOKEN_REQUIRED_MESSAGE,
        [secret_arn],
    )


def test_t3_tokens_are_scoped_to_one_secret(manager: Harness, secret_arn: str) -> None:
    other_arn = manager.create("other")["ARN"]
    manager.put(NAME, token(1), "first secret's value")
    response = manager.put("other", token(1), "another value entirely")
    assert response["ARN"] == other_arn
    assert manager.current_value("other") == "another value entirely"
    assert manager.current_value(NAME) == "first secret's value"


def test_t5_a_replay_with_the_same_value_changes_nothing_and_answers_the_same(
    manager: Harness, secret_arn: str
) -> None:
    first = manager.put(NAME, token(1), "same")
    log_before = manager.log_length()
    stream_before = manager.stream_length(secret_arn)
    replay = manager.put(NAME, token(1), "same")
    assert replay == first
    assert manager.stream_length(secret_arn) == stream_before
    [record] = manager.events_since(log_before)
    assert isinstance(record, ApiCall.Recorded)
    assert record.error_code is None
    assert record.resources == [{"secret_arn": secret_arn, "version_id": token(1)}]


def test_t5_a_replay_with_the_same_bytes_changes_nothing(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), b"\x00\x01binary")
    log_before = manager.log_length()
    manager.quiet_api.call("PutSecretValue", put_request(token(1), SecretBinary=b"\x00\x01binary"))
    assert manager.log_length() == log_before


def test_t6_switching_from_string_to_binary_is_a_different_value(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "abc")
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), SecretBinary=b"abc"),
        "ResourceExistsException",
        token_in_use_message(token(1), secret_arn),
        [secret_arn],
    )


def test_t7_a_token_reused_with_different_data_is_refused(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one")
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), SecretString="two"),
        "ResourceExistsException",
        token_in_use_message(token(1), secret_arn),
        [secret_arn],
    )


def test_t7_holds_for_a_version_that_carries_awspending(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "one")
    manager.put(NAME, token(2), "pending", [AWSPENDING])
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(2), SecretString="overwrite", VersionStages=[AWSPENDING]),
        "ResourceExistsException",
        token_in_use_message(token(2), secret_arn),
        [secret_arn],
    )
    pending = manager.quietly("GetSecretValue", SecretId=NAME, VersionStage=AWSPENDING)
    assert pending["SecretString"] == "pending"


def test_t8_a_replay_ignores_new_stages_and_answers_with_the_current_labels(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one")
    manager.put(NAME, token(2), "two")
    log_before = manager.log_length()
    replay = manager.put(NAME, token(1), "one", ["blue"])
    assert replay["VersionStages"] == [AWSPREVIOUS]
    assert manager.labels(NAME) == {token(2): [AWSCURRENT], token(1): [AWSPREVIOUS]}
    assert manager.event_types_since(log_before) == ["ApiCall.Recorded"]


def test_t8_a_replay_of_a_deprecated_version_omits_version_stages(
    manager: Harness, secret_arn: str
) -> None:
    for number in (1, 2, 3):
        manager.put(NAME, token(number), f"value {number}")
    replay = manager.put(NAME, token(1), "value 1")
    assert replay == {"ARN": secret_arn, "Name": NAME, "VersionId": token(1)}


def test_t9_the_token_of_create_secret_replays_through_put(manager: Harness) -> None:
    created = manager.create("db", token(7), "first")
    log_before = manager.log_length()
    replay = manager.put("db", token(7), "first")
    assert replay == {**created, "VersionStages": [AWSCURRENT]}
    assert manager.event_types_since(log_before) == ["ApiCall.Recorded"]


@pytest.mark.parametrize("length", [31, 65])
def test_t10_a_token_of_the_wrong_length_is_a_validation_error(
    manager: Harness, secret_arn: str, length: int
) -> None:
    bound = "greater than or equal to 32" if length < 32 else "less than or equal to 64"
    manager.assert_refused(
        "PutSecretValue",
        put_request("t" * length, SecretString="x"),
        "ValidationException",
        f"1 validation error detected: Value '{'t' * length}' at 'clientRequestToken' failed "
        f"to satisfy constraint: Member must have length {bound}",
        [secret_arn],
    )


# --------------------------------------------------------------------------------------
# Value rules (section 2.5)
# --------------------------------------------------------------------------------------


def test_neither_value_is_refused(manager: Harness, secret_arn: str) -> None:
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(1)),
        "InvalidRequestException",
        VALUE_REQUIRED_MESSAGE,
        [secret_arn],
    )


def test_both_values_are_refused(manager: Harness, secret_arn: str) -> None:
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), SecretString="x", SecretBinary=b"x"),
        "InvalidParameterException",
        BOTH_VALUES_MESSAGE,
        [secret_arn],
    )


def test_a_string_of_65536_utf8_bytes_is_accepted(manager: Harness, secret_arn: str) -> None:
    largest = "é" * 32_768  # two UTF-8 bytes each
    manager.put(NAME, token(1), largest)
    assert manager.current_value(NAME) == largest


def test_a_string_over_65536_utf8_bytes_is_refused_without_echoing_it(
    manager: Harness, secret_arn: str
) -> None:
    too_large = "é" * 32_768 + "x"  # 32,769 characters, 65,537 bytes
    error = manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), SecretString=too_large),
        "ValidationException",
        "1 validation error detected: Value at 'secretString' failed to satisfy constraint: "
        "Member must have length less than or equal to 65536",
        [secret_arn],
    )
    assert "é" not in error.message


def test_binary_values_are_limited_to_65536_bytes(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), b"\xff" * 65_536)
    assert manager.current_value(NAME) == b"\xff" * 65_536
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(2), SecretBinary=b"\xff" * 65_537),
        "ValidationException",
        "1 validation error detected: Value at 'secretBinary' failed to satisfy constraint: "
        "Member must have length less than or equal to 65536",
        [secret_arn],
    )


@pytest.mark.parametrize(
    ("member", "empty", "path"),
    [("SecretString", "", "secretString"), ("SecretBinary", b"", "secretBinary")],
)
def test_an_empty_value_is_a_validation_error(
    manager: Harness, secret_arn: str, member: str, empty: str | bytes, path: str
) -> None:
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), **{member: empty}),
        "ValidationException",
        f"1 validation error detected: Value at '{path}' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
        [secret_arn],
    )


def test_the_value_is_opaque(manager: Harness, secret_arn: str) -> None:
    not_json = '{"user": "admin", "password": '
    manager.put(NAME, token(1), not_json)
    assert manager.current_value(NAME) == not_json


def test_a_rotation_token_is_accepted_and_never_logged(manager: Harness, secret_arn: str) -> None:
    rotation_token = "rotation-" + "7" * 40
    log_before = manager.log_length()
    manager.call(
        "PutSecretValue", **put_request(token(1), SecretString="x", RotationToken=rotation_token)
    )
    for event in manager.events_since(log_before):
        assert rotation_token not in repr(event.__dict__)


# --------------------------------------------------------------------------------------
# Quotas (sections 2.6, P9)
# --------------------------------------------------------------------------------------


def test_p9_twenty_label_attachments_are_allowed(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "one", [f"label-{n:02}" for n in range(19)])
    assert len(manager.labels(NAME)[token(1)]) == 20  # 19 custom labels and AWSCURRENT


def test_p9_a_put_that_would_exceed_twenty_attachments_changes_nothing(
    manager: Harness, secret_arn: str
) -> None:
    manager.put(NAME, token(1), "one", [f"label-{n:02}" for n in range(19)])
    labels_before = manager.labels(NAME)
    error = manager.assert_refused(
        "PutSecretValue",
        put_request(token(2), SecretString="two"),  # adds AWSPREVIOUS: 21 attachments
        "LimitExceededException",
        f"You can't attach more than 20 staging labels to the versions of secret {secret_arn}; "
        "this request would attach 21.",
        [secret_arn],
    )
    assert error.http_status == 400
    assert manager.labels(NAME) == labels_before


def test_p9_aws_managed_labels_count_toward_the_quota(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "one", [f"label-{n:02}" for n in range(18)])
    manager.put(NAME, token(2), "two", [AWSPENDING])  # 20 attachments
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(3), SecretString="three", VersionStages=["one-more"]),
        "LimitExceededException",
        secret_arns=[secret_arn],
    )


def test_more_than_twenty_stages_in_one_request_is_a_validation_error(
    manager: Harness, secret_arn: str
) -> None:
    stages = [f"label-{n:02}" for n in range(21)]
    error = manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), SecretString="x", VersionStages=stages),
        "ValidationException",
        secret_arns=[secret_arn],
    )
    assert error.message.startswith("1 validation error detected: ")
    assert "at 'versionStages' failed to satisfy constraint: " in error.message
    assert error.message.endswith("Member must have length less than or equal to 20")


def test_a_label_longer_than_256_characters_is_a_validation_error(
    manager: Harness, secret_arn: str
) -> None:
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), SecretString="x", VersionStages=["l" * 257]),
        "ValidationException",
        f"1 validation error detected: Value '{'l' * 257}' at 'versionStages.1.member' failed "
        "to satisfy constraint: Member must have length less than or equal to 256",
        [secret_arn],
    )


# --------------------------------------------------------------------------------------
# Unknown and scheduled secrets, and the order of checks (sections 2.2, 2.8)
# --------------------------------------------------------------------------------------


def test_an_unknown_secret_is_not_found(manager: Harness) -> None:
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(1), SecretString="x"),
        "ResourceNotFoundException",
        NOT_FOUND_MESSAGE,
    )


def test_a_secret_scheduled_for_deletion_refuses_a_put(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "one")
    manager.call("DeleteSecret", SecretId=NAME)
    manager.assert_refused(
        "PutSecretValue",
        put_request(token(2), SecretString="two"),
        "InvalidRequestException",
        MARKED_FOR_DELETION_MESSAGE,
        [secret_arn],
    )
    manager.assert_refused(  # a replay, too: step 4 comes before step 6
        "PutSecretValue",
        put_request(token(1), SecretString="one"),
        "InvalidRequestException",
        MARKED_FOR_DELETION_MESSAGE,
        [secret_arn],
    )


CHECK_ORDER_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "1 shape before 2 token",
        {"SecretId": "unknown", "SecretString": ""},
        "ValidationException",
    ),
    (
        "2 token before 3 resolution",
        {"SecretId": "unknown", "SecretString": "x"},
        "InvalidRequestException",
    ),
    (
        "3 resolution before 5 value",
        {"SecretId": "unknown", "ClientRequestToken": token(1)},
        "ResourceNotFoundException",
    ),
    (
        "3 resolution before 5 both values",
        {
            "SecretId": "unknown",
            "ClientRequestToken": token(1),
            "SecretString": "x",
            "SecretBinary": b"x",
        },
        "ResourceNotFoundException",
    ),
    (
        "4 scheduled before 5 value",
        {"SecretId": "scheduled", "ClientRequestToken": token(1)},
        "InvalidRequestException",
    ),
    (
        "4 scheduled before 5 both values",
        {
            "SecretId": "scheduled",
            "ClientRequestToken": token(1),
            "SecretString": "x",
            "SecretBinary": b"x",
        },
        "InvalidRequestException",
    ),
    (
        "5 both values before 6 replay",
        {
            "SecretId": NAME,
            "ClientRequestToken": token(1),
            "SecretString": "x",
            "SecretBinary": b"x",
        },
        "InvalidParameterException",
    ),
    (
        "6 replay before 7 quota",
        {
            "SecretId": NAME,
            "ClientRequestToken": token(1),
            "SecretString": "other",
            "VersionStages": ["extra"],
        },
        "ResourceExistsException",
    ),
]


def test_the_order_of_checks(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "x", [f"label-{n:02}" for n in range(19)])  # 20 attachments
    manager.create("scheduled")
    manager.call("DeleteSecret", SecretId="scheduled")
    for title, request_members, code in CHECK_ORDER_CASES:
        with case(title):
            error = manager.assert_refused("PutSecretValue", request_members, code)
            if request_members["SecretId"] == "scheduled":
                assert error.message == MARKED_FOR_DELETION_MESSAGE


# --------------------------------------------------------------------------------------
# moto as a differential oracle (section 13: label moves P1-P5, replay, first version)
# --------------------------------------------------------------------------------------

DIFFERENTIAL_SEQUENCES: list[tuple[str, list[Step]]] = [
    ("first put", [("put", "v1", None)]),
    ("first put staged pending", [("put", "v1", ["PEND"])]),
    ("three default puts", [("put", "v1", None), ("put", "v2", None), ("put", "v3", None)]),
    ("pending candidate", [("put", "v1", None), ("put", "v2", ["PEND"])]),
    (
        "pending replaced",
        [("put", "v1", None), ("put", "v2", ["PEND"]), ("put", "v3", ["PEND"])],
    ),
    (
        "custom labels move",
        [
            ("put", "v1", None),
            ("put", "v2", ["one", "two", "three"]),
            ("put", "v3", ["one", "two", "four"]),
        ],
    ),
    ("current with custom", [("put", "v1", None), ("put", "v2", ["CUR", "blue"])]),
    ("replay", [("put", "v1", None), ("put", "v2", None), ("put", "v2", None)]),
]


def test_label_moves_agree_with_moto(manager: Harness) -> None:
    with open_oracle() as oracle:
        for index, (title, steps) in enumerate(DIFFERENTIAL_SEQUENCES):
            with case(title):
                secret_id = f"sequence-{index}"
                manager.create(secret_id)
                oracle.call("CreateSecret", Name=secret_id)
                for step in steps:
                    compare_put(manager, oracle, secret_id, step)
                ours = manager.quietly("GetSecretValue", SecretId=secret_id)
                theirs = oracle.call("GetSecretValue", SecretId=secret_id)
                assert ours["VersionId"] == theirs["VersionId"]
                assert ours["SecretString"] == theirs["SecretString"]


def compare_put(manager: Harness, oracle: Oracle, secret_id: str, step: Step) -> None:
    ours = run_step(manager, secret_id, step)
    _, short_version, stages = step
    members: dict[str, Any] = {
        "SecretId": secret_id,
        "ClientRequestToken": version(short_version),
        "SecretString": f"value of {short_version}",
    }
    if stages is not None:
        members["VersionStages"] = [label(item) for item in stages]
    theirs = oracle.call("PutSecretValue", **members)
    assert ours["VersionId"] == theirs["VersionId"]
    assert ours["VersionStages"] == sorted(theirs["VersionStages"])
    assert labelled_only(manager.labels(secret_id)) == labelled_only(oracle.labels(secret_id))


def test_a_put_looks_its_secret_up_once_and_again_only_after_a_conflict(
    manager: Harness, secret_arn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt acts on the secret authorization resolved (AZ-10); a write
    conflict makes the retry read the secret afresh."""
    manager.put(NAME, token(2), "two")  # the name is remembered from here on
    secrets = manager.secrets
    looked_up: list[object] = []
    original_get = secrets.repository.get

    def counting_get(aggregate_id: Any, **options: Any) -> Any:
        looked_up.append(aggregate_id)
        return original_get(aggregate_id, **options)

    monkeypatch.setattr(secrets.repository, "get", counting_get)
    manager.put(NAME, token(3), "three")
    assert len(looked_up) == 1

    original_save = secrets.save
    conflicts = [IntegrityError("a concurrent writer")]

    def save_once_in_conflict(*objects: Any, **options: Any) -> Any:
        if conflicts:
            raise conflicts.pop()
        return original_save(*objects, **options)

    monkeypatch.setattr(secrets, "save", save_once_in_conflict)
    looked_up.clear()
    manager.put(NAME, token(4), "four")
    assert len(looked_up) == 2
    assert manager.call("GetSecretValue", SecretId=NAME)["SecretString"] == "four"
