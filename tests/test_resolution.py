"""ARNs and the resolution of SecretId: names, full ARNs and partial ARNs
(docs/semantics.md §10), for every operation that takes a SecretId."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from ledger_helpers import (
    AWSCURRENT,
    AWSPENDING,
    NOT_FOUND_MESSAGE,
    Harness,
    case,
    open_harness,
    open_oracle,
    outcome_of,
    token,
)

from ledger.crypto import Keyring

HIERARCHICAL_NAME = "team/app/db"
PARTIAL_PREFIX = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"


@pytest.fixture
def secret_arn(manager: Harness) -> str:
    arn: str = manager.create(HIERARCHICAL_NAME, token(1), "one")["ARN"]
    manager.put(HIERARCHICAL_NAME, token(2), "two", [AWSPENDING])
    return arn


def identifiers(arn: str) -> dict[str, str]:
    return {"name": HIERARCHICAL_NAME, "full ARN": arn, "partial ARN": arn[:-7]}


# Every operation that takes a SecretId, as a request that succeeds on the secret.
OPERATIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "GetSecretValue": lambda secret_id: {"SecretId": secret_id},
    "DescribeSecret": lambda secret_id: {"SecretId": secret_id},
    "ListSecretVersionIds": lambda secret_id: {"SecretId": secret_id},
    "PutSecretValue": lambda secret_id: {
        "SecretId": secret_id,
        "ClientRequestToken": token(3),
        "SecretString": "three",
    },
    "UpdateSecret": lambda secret_id: {"SecretId": secret_id, "Description": "d"},
    "UpdateSecretVersionStage": lambda secret_id: {
        "SecretId": secret_id,
        "VersionStage": AWSCURRENT,
        "MoveToVersionId": token(2),
        "RemoveFromVersionId": token(1),
    },
    "DeleteSecret": lambda secret_id: {"SecretId": secret_id},
    "RestoreSecret": lambda secret_id: {"SecretId": secret_id},  # not scheduled: a no-op
}


def test_every_operation_resolves_names_and_arns(manager: Harness) -> None:
    for operation in sorted(OPERATIONS):
        for form in ("name", "full ARN", "partial ARN"):
            with case(f"{operation} by {form}"):
                name = f"team/{operation}/{form.replace(' ', '-')}"
                arn = manager.create(name, token(1), "one")["ARN"]
                manager.put(name, token(2), "two", [AWSPENDING])
                secret_id = {"name": name, "full ARN": arn, "partial ARN": arn[:-7]}[form]
                response = manager.call(operation, **OPERATIONS[operation](secret_id))
                assert (response["ARN"], response["Name"]) == (arn, name)


@pytest.mark.parametrize("form", ["name", "full ARN", "partial ARN"])
def test_restore_resolves_names_and_arns(manager: Harness, secret_arn: str, form: str) -> None:
    manager.call("DeleteSecret", SecretId=HIERARCHICAL_NAME)
    response = manager.call("RestoreSecret", SecretId=identifiers(secret_arn)[form])
    assert response == {"ARN": secret_arn, "Name": HIERARCHICAL_NAME}


def test_arns_carry_region_account_name_and_a_six_character_suffix(backend: str) -> None:
    with open_harness(backend, region="eu-west-1", account_id="111122223333") as manager:
        arn = manager.create("payments/api-key")["ARN"]
        assert re.fullmatch(
            r"arn:aws:secretsmanager:eu-west-1:111122223333:secret:payments/api-key-[A-Za-z0-9]{6}",
            arn,
        )
        assert manager.call("DescribeSecret", SecretId=arn)["Name"] == "payments/api-key"


NOT_FOUND_CASES: list[tuple[str, Callable[[str], str]]] = [
    ("wrong suffix", lambda arn: arn[:-6] + ("zzzzzz" if arn[-6:] != "zzzzzz" else "yyyyyy")),
    ("wrong region", lambda arn: arn.replace(":us-east-1:", ":eu-west-1:")),
    ("wrong account", lambda arn: arn.replace(":123456789012:", ":210987654321:")),
    ("wrong service", lambda arn: arn.replace(":secretsmanager:", ":ssm:")),
    ("not a secret resource", lambda arn: arn.replace(":secret:", ":parameter:")),
    ("partial ARN of another region", lambda arn: arn[:-7].replace(":us-east-1:", ":us-west-2:")),
    ("name prefix as partial ARN", lambda arn: arn[:-10]),
    ("name with a different case", lambda arn: HIERARCHICAL_NAME.upper()),
    ("name prefix", lambda arn: HIERARCHICAL_NAME[:-1]),
    ("truncated ARN", lambda arn: "arn:aws:secretsmanager:us-east-1"),
]


def test_identifiers_that_do_not_match_exactly_are_not_found(
    manager: Harness, secret_arn: str
) -> None:
    for title, mangle in NOT_FOUND_CASES:
        with case(title):
            manager.assert_refused(
                "GetSecretValue",
                {"SecretId": mangle(secret_arn)},
                "ResourceNotFoundException",
                NOT_FOUND_MESSAGE,
                [secret_arn],
            )


def test_a_partial_arn_of_a_name_ending_in_dash_and_six_characters_is_not_found(
    manager: Harness,
) -> None:
    for name in ("my-secret", "db-Prod01", "app-ABCDEF"):
        with case(name):
            arn = manager.create(name, token(1), "x")["ARN"]
            manager.assert_refused(
                "GetSecretValue",
                {"SecretId": PARTIAL_PREFIX + name},
                "ResourceNotFoundException",
                NOT_FOUND_MESSAGE,
                [arn],
            )
            assert manager.call("GetSecretValue", SecretId=name)["ARN"] == arn
            assert manager.call("GetSecretValue", SecretId=arn)["ARN"] == arn


def test_a_partial_arn_of_a_name_that_does_not_look_complete_resolves(manager: Harness) -> None:
    for name in ("db-prod1", "x-ab/cde", "secret-with-dash"):
        with case(name):
            arn = manager.create(name, token(1), "x")["ARN"]
            assert manager.call("GetSecretValue", SecretId=PARTIAL_PREFIX + name)["ARN"] == arn


def test_a_secret_id_over_2048_characters_is_a_validation_error(
    manager: Harness, secret_arn: str
) -> None:
    secret_id = PARTIAL_PREFIX + "n" * (2049 - len(PARTIAL_PREFIX))
    manager.assert_refused(
        "DescribeSecret",
        {"SecretId": secret_id},
        "ValidationException",
        f"1 validation error detected: Value '{secret_id}' at 'secretId' failed to satisfy "
        "constraint: Member must have length less than or equal to 2048",
        [secret_arn],
    )


def test_names_that_share_a_prefix_resolve_to_their_own_secret(manager: Harness) -> None:
    short = manager.create("app", token(1), "short")["ARN"]
    long = manager.create("app/db", token(2), "long")["ARN"]
    assert manager.current_value("app") == "short"
    assert manager.current_value(PARTIAL_PREFIX + "app") == "short"
    assert manager.current_value(PARTIAL_PREFIX + "app/db") == "long"
    assert (manager.current_value(short), manager.current_value(long)) == ("short", "long")


def test_a_scheduled_secret_still_resolves_by_name_and_arn(
    manager: Harness, secret_arn: str
) -> None:
    manager.call("DeleteSecret", SecretId=secret_arn)
    for identifier in identifiers(secret_arn).values():
        description = manager.call("DescribeSecret", SecretId=identifier)
        assert description["ARN"] == secret_arn


def test_the_old_arn_of_a_recreated_name_is_not_found(manager: Harness, secret_arn: str) -> None:
    manager.call("DeleteSecret", SecretId=secret_arn, ForceDeleteWithoutRecovery=True)
    new_arn = manager.create(HIERARCHICAL_NAME, token(1), "new")["ARN"]
    assert new_arn != secret_arn
    manager.assert_refused(
        "DescribeSecret", {"SecretId": secret_arn}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )
    assert manager.call("DescribeSecret", SecretId=secret_arn[:-7])["ARN"] == new_arn
    assert manager.call("DescribeSecret", SecretId=HIERARCHICAL_NAME)["ARN"] == new_arn


def test_an_arn_resolves_across_a_reopened_sqlite_ledger(tmp_path: Any) -> None:
    database = str(tmp_path / "ledger.sqlite")
    keyring = Keyring.in_memory()
    with open_harness(database, keyring=keyring) as first:
        arn = first.create(HIERARCHICAL_NAME, token(1), "durable")["ARN"]
    with open_harness(database, keyring=keyring) as second:
        assert second.current_value(arn) == "durable"
        assert second.current_value(arn[:-7]) == "durable"


def test_an_unknown_secret_is_not_found_by_every_operation(
    manager: Harness, secret_arn: str
) -> None:
    for operation, request in sorted(OPERATIONS.items()):
        with case(operation):
            manager.assert_refused(
                operation,
                request("nowhere"),
                "ResourceNotFoundException",
                NOT_FOUND_MESSAGE,
                [secret_arn],
            )


# --------------------------------------------------------------------------------------
# moto as a differential oracle: the not-found message and the ARN format
# --------------------------------------------------------------------------------------


def test_resolution_agrees_with_moto_where_moto_matches_aws(manager: Harness) -> None:
    with open_oracle() as oracle:
        ours_arn = manager.create(HIERARCHICAL_NAME, token(1), "x")["ARN"]
        theirs_arn = oracle.call(
            "CreateSecret", Name=HIERARCHICAL_NAME, ClientRequestToken=token(1), SecretString="x"
        )["ARN"]
        assert ours_arn[:-6] == theirs_arn[:-6]
        assert re.fullmatch("[A-Za-z0-9]{6}", theirs_arn[-6:])
        for secret_id in (
            HIERARCHICAL_NAME,
            ours_arn[:-7],
            "unknown",
            PARTIAL_PREFIX + "unknown",
        ):
            ours = outcome_of(manager, "DescribeSecret", SecretId=secret_id)
            theirs = oracle.call("DescribeSecret", SecretId=secret_id)
            assert ours.get("Name") == theirs.get("Name")
            assert ours.get("Error") == (
                None
                if "Error" not in theirs
                else {key: theirs["Error"][key] for key in ("Code", "Message")}
            )
