"""ListSecretVersionIds and ListSecrets (docs/semantics.md §5 and §6)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from ledger_helpers import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    NOT_FOUND_MESSAGE,
    START,
    Harness,
    case,
    open_harness,
    token,
)

from ledger.crypto import Keyring
from ledger.domain import secret_id_for_arn

NAME = "billing/ledger"
INVALID_TOKEN_MESSAGE = "The NextToken value is not valid."


@pytest.fixture
def five_versions(manager: Harness) -> str:
    """v1..v5, one minute apart: v5[CUR] v4[PREV] v3[blue] v2[] v1[]; returns the ARN."""
    arn: str = manager.create(NAME, token(1), "1")["ARN"]
    for number in range(2, 6):
        manager.clock.advance(timedelta(minutes=1))
        manager.put(NAME, token(number), str(number))
    manager.stage(NAME, "blue", token(3))
    return arn


def version_ids(response: dict[str, Any]) -> list[str]:
    return [entry["VersionId"] for entry in response["Versions"]]


# --------------------------------------------------------------------------------------
# ListSecretVersionIds (section 5)
# --------------------------------------------------------------------------------------


def test_versions_are_listed_newest_first_without_deprecated_ones(
    manager: Harness, five_versions: str
) -> None:
    response = manager.call("ListSecretVersionIds", SecretId=NAME)
    assert (response["ARN"], response["Name"]) == (five_versions, NAME)
    assert "NextToken" not in response
    assert response["Versions"] == [
        {
            "VersionId": token(5),
            "VersionStages": [AWSCURRENT],
            "CreatedDate": START + timedelta(minutes=4),
            "KmsKeyIds": ["DefaultEncryptionKey"],
        },
        {
            "VersionId": token(4),
            "VersionStages": [AWSPREVIOUS],
            "CreatedDate": START + timedelta(minutes=3),
            "KmsKeyIds": ["DefaultEncryptionKey"],
        },
        {
            "VersionId": token(3),
            "VersionStages": ["blue"],
            "CreatedDate": START + timedelta(minutes=2),
            "KmsKeyIds": ["DefaultEncryptionKey"],
        },
    ]


def test_deprecated_versions_are_listed_on_request_without_version_stages(
    manager: Harness, five_versions: str
) -> None:
    response = manager.call("ListSecretVersionIds", SecretId=NAME, IncludeDeprecated=True)
    assert version_ids(response) == [token(n) for n in (5, 4, 3, 2, 1)]
    deprecated = response["Versions"][3:]
    assert all("VersionStages" not in entry for entry in deprecated)
    assert [entry["CreatedDate"] for entry in deprecated] == [
        START + timedelta(minutes=1),
        START,
    ]


def test_versions_created_at_the_same_instant_are_listed_in_reverse_creation_order(
    manager: Harness,
) -> None:
    manager.create(NAME)
    for number in (3, 1, 2):
        manager.put(NAME, token(number), str(number), [f"label-{number}"])
    response = manager.call("ListSecretVersionIds", SecretId=NAME)
    assert version_ids(response) == [token(2), token(1), token(3)]


def test_the_kms_key_id_of_the_secret_is_reported(manager: Harness) -> None:
    manager.create(NAME, token(1), "x", KmsKeyId="alias/billing")
    [entry] = manager.call("ListSecretVersionIds", SecretId=NAME)["Versions"]
    assert entry["KmsKeyIds"] == ["alias/billing"]


def test_a_secret_without_versions_lists_none(manager: Harness) -> None:
    arn = manager.create(NAME)["ARN"]
    assert manager.call("ListSecretVersionIds", SecretId=NAME) == {
        "Versions": [],
        "ARN": arn,
        "Name": NAME,
    }


def test_a_scheduled_secret_can_be_listed(manager: Harness, five_versions: str) -> None:
    manager.call("DeleteSecret", SecretId=NAME)
    response = manager.call("ListSecretVersionIds", SecretId=NAME)
    assert version_ids(response) == [token(5), token(4), token(3)]


@pytest.mark.parametrize("include_deprecated", [False, True])
def test_pages_of_max_results_cover_the_listing_once(
    manager: Harness, five_versions: str, include_deprecated: bool
) -> None:
    full = manager.call("ListSecretVersionIds", SecretId=NAME, IncludeDeprecated=include_deprecated)
    pages: list[list[str]] = []
    request: dict[str, Any] = {"SecretId": NAME, "MaxResults": 2}
    if include_deprecated:
        request["IncludeDeprecated"] = True
    while True:
        response = manager.call("ListSecretVersionIds", **request)
        pages.append(version_ids(response))
        if "NextToken" not in response:
            break
        assert len(pages) <= 3, "paging does not end"
        request["NextToken"] = response["NextToken"]
    assert [len(page) for page in pages] == ([2, 2, 1] if include_deprecated else [2, 1])
    assert [item for page in pages for item in page] == version_ids(full)


def forged_token(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")


def token_for_other_listing(manager: Harness) -> str:
    response = manager.quietly("ListSecretVersionIds", SecretId=NAME, MaxResults=1)
    next_token: str = response["NextToken"]
    return next_token


TAMPERED_TOKENS: list[tuple[str, str]] = [
    ("garbage", "not a token"),
    ("not base64", "%%%"),
    ("not an object", forged_token(["offset", 1])),
    ("negative offset", forged_token({"offset": -1, "scope": "anything"})),
    ("foreign scope", forged_token({"offset": 1, "scope": "versions:elsewhere:False"})),
]


def test_a_tampered_next_token_is_refused(manager: Harness, five_versions: str) -> None:
    for title, next_token in TAMPERED_TOKENS:
        with case(title):
            manager.assert_refused(
                "ListSecretVersionIds",
                {"SecretId": NAME, "NextToken": next_token},
                "InvalidNextTokenException",
                INVALID_TOKEN_MESSAGE,
                [five_versions],
            )


def test_a_next_token_from_another_listing_is_refused(manager: Harness, five_versions: str) -> None:
    other_token = token_for_other_listing(manager)
    manager.assert_refused(
        "ListSecretVersionIds",
        {"SecretId": NAME, "NextToken": other_token, "IncludeDeprecated": True},
        "InvalidNextTokenException",
        INVALID_TOKEN_MESSAGE,
        [five_versions],
    )
    manager.create("other", token(1), "x")
    manager.assert_refused(
        "ListSecretVersionIds",
        {"SecretId": "other", "NextToken": other_token},
        "InvalidNextTokenException",
        INVALID_TOKEN_MESSAGE,
    )


PAGING_VIOLATIONS: list[tuple[dict[str, Any], str]] = [
    (
        {"MaxResults": 0},
        "1 validation error detected: Value '0' at 'maxResults' failed to satisfy "
        "constraint: Member must have value greater than or equal to 1",
    ),
    (
        {"MaxResults": 101},
        "1 validation error detected: Value '101' at 'maxResults' failed to satisfy "
        "constraint: Member must have value less than or equal to 100",
    ),
    (
        {"NextToken": ""},
        "1 validation error detected: Value '' at 'nextToken' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1",
    ),
]


def test_paging_members_out_of_range_are_validation_errors(
    manager: Harness, five_versions: str
) -> None:
    for members, message in PAGING_VIOLATIONS:
        with case(repr(members)):
            manager.assert_refused(
                "ListSecretVersionIds",
                {"SecretId": NAME, **members},
                "ValidationException",
                message,
                [five_versions],
            )


def test_versions_of_an_unknown_secret_are_not_found(manager: Harness) -> None:
    manager.assert_refused(
        "ListSecretVersionIds", {"SecretId": NAME}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


# --------------------------------------------------------------------------------------
# ListSecrets (section 6)
# --------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(manager: Harness) -> dict[str, str]:
    """Four secrets created a minute apart; 'legacy/ftp' is scheduled for deletion.
    Returns name -> ARN."""
    arns: dict[str, str] = {}
    specifications: list[tuple[str, dict[str, Any]]] = [
        ("prod/db", {"Description": "Orders database", "Tags": [{"Key": "Team", "Value": "Core"}]}),
        ("prod/api", {"Description": "public API key", "Tags": [{"Key": "team", "Value": "edge"}]}),
        ("Staging/db", {"Tags": [{"Key": "env", "Value": "staging"}]}),
        ("legacy/ftp", {"Description": "old FTP password"}),
    ]
    for number, (name, members) in enumerate(specifications, start=1):
        arns[name] = manager.create(name, token(number), f"value {number}", **members)["ARN"]
        manager.clock.advance(timedelta(minutes=1))
    manager.put("prod/db", token(10), "rotated", [AWSPENDING])
    manager.call("DeleteSecret", SecretId="legacy/ftp", RecoveryWindowInDays=7)
    return arns


def listed_names(manager: Harness, **members: Any) -> list[str]:
    response = manager.call("ListSecrets", **members)
    assert "NextToken" not in response
    return [entry["Name"] for entry in response["SecretList"]]


def test_secrets_scheduled_for_deletion_are_hidden_by_default(
    manager: Harness, catalogue: dict[str, str]
) -> None:
    assert sorted(listed_names(manager)) == ["Staging/db", "prod/api", "prod/db"]
    shown = manager.call("ListSecrets", IncludePlannedDeletion=True)["SecretList"]
    [legacy] = [entry for entry in shown if entry["Name"] == "legacy/ftp"]
    assert legacy["DeletedDate"] == START + timedelta(minutes=4, days=7)
    assert legacy["ARN"] == catalogue["legacy/ftp"]


def test_each_entry_carries_the_labelled_versions(
    manager: Harness, catalogue: dict[str, str]
) -> None:
    entries = {entry["Name"]: entry for entry in manager.call("ListSecrets")["SecretList"]}
    prod_db = entries["prod/db"]
    assert prod_db["SecretVersionsToStages"] == {token(1): [AWSCURRENT], token(10): [AWSPENDING]}
    assert (
        prod_db["SecretVersionsToStages"]
        == manager.quietly("DescribeSecret", SecretId="prod/db")["VersionIdsToStages"]
    )
    assert prod_db["Description"] == "Orders database"
    assert prod_db["Tags"] == [{"Key": "Team", "Value": "Core"}]
    assert "VersionIdsToStages" not in prod_db
    assert "DeletedDate" not in prod_db
    assert not {"SecretString", "SecretBinary"} & set(prod_db)


def test_a_secret_without_versions_has_no_version_map_in_the_list(manager: Harness) -> None:
    manager.create("empty")
    [entry] = manager.call("ListSecrets")["SecretList"]
    assert "SecretVersionsToStages" not in entry


def test_the_default_order_is_newest_first(manager: Harness, catalogue: dict[str, str]) -> None:
    assert listed_names(manager) == ["Staging/db", "prod/api", "prod/db"]
    assert listed_names(manager, SortOrder="desc") == ["Staging/db", "prod/api", "prod/db"]
    assert listed_names(manager, SortOrder="asc") == ["prod/db", "prod/api", "Staging/db"]


def test_sorting_by_name(manager: Harness, catalogue: dict[str, str]) -> None:
    assert listed_names(manager, SortBy="name", SortOrder="asc") == [
        "Staging/db",
        "prod/api",
        "prod/db",
    ]
    assert listed_names(manager, SortBy="name", SortOrder="desc") == [
        "prod/db",
        "prod/api",
        "Staging/db",
    ]


def test_sorting_by_last_changed_date(manager: Harness, catalogue: dict[str, str]) -> None:
    # prod/db changed last (its AWSPENDING put came after every create).
    assert listed_names(manager, SortBy="last-changed-date", SortOrder="desc")[0] == "prod/db"


FILTER_CASES: list[tuple[str, list[dict[str, Any]], list[str]]] = [
    ("name prefix", [{"Key": "name", "Values": ["prod/"]}], ["prod/api", "prod/db"]),
    ("name is case-sensitive", [{"Key": "name", "Values": ["staging"]}], []),
    ("name, exact case", [{"Key": "name", "Values": ["Staging"]}], ["Staging/db"]),
    ("name is a prefix, not a substring", [{"Key": "name", "Values": ["db"]}], []),
    (
        "name values are alternatives",
        [{"Key": "name", "Values": ["prod/a", "Stag"]}],
        ["Staging/db", "prod/api"],
    ),
    ("name negated", [{"Key": "name", "Values": ["!prod/"]}], ["Staging/db"]),
    (
        "values are alternatives, negated ones too (LF-1)",
        [{"Key": "name", "Values": ["prod/", "!prod/api"]}],
        ["Staging/db", "prod/api", "prod/db"],
    ),
    (
        "two filters of one key are combined with and",
        [{"Key": "name", "Values": ["prod/"]}, {"Key": "name", "Values": ["!prod/api"]}],
        ["prod/db"],
    ),
    (
        "description is case-insensitive",
        [{"Key": "description", "Values": ["orders"]}],
        ["prod/db"],
    ),
    ("description, upper case", [{"Key": "description", "Values": ["PUBLIC"]}], ["prod/api"]),
    (
        "description negated",
        [{"Key": "description", "Values": ["!orders"]}],
        ["Staging/db", "prod/api"],
    ),
    ("tag-key is case-sensitive", [{"Key": "tag-key", "Values": ["team"]}], ["prod/api"]),
    ("tag-key prefix", [{"Key": "tag-key", "Values": ["Te", "te"]}], ["prod/api", "prod/db"]),
    ("tag-value", [{"Key": "tag-value", "Values": ["stag"]}], ["Staging/db"]),
    ("tag-value is case-sensitive", [{"Key": "tag-value", "Values": ["core"]}], []),
    ("all, any attribute, any case", [{"Key": "all", "Values": ["DATABASE"]}], ["prod/db"]),
    (
        "all matches names and tags",
        [{"Key": "all", "Values": ["edge", "staging"]}],
        ["Staging/db", "prod/api"],
    ),
    (
        "filters are combined with and",
        [{"Key": "name", "Values": ["prod/"]}, {"Key": "tag-key", "Values": ["Team"]}],
        ["prod/db"],
    ),
    ("primary-region: no replicas", [{"Key": "primary-region", "Values": ["us-east-1"]}], []),
]


def test_filters(manager: Harness, catalogue: dict[str, str]) -> None:
    for title, filters, expected in FILTER_CASES:
        with case(title):
            assert sorted(listed_names(manager, Filters=filters)) == expected


def test_filters_apply_to_planned_deletions_when_included(
    manager: Harness, catalogue: dict[str, str]
) -> None:
    filters = [{"Key": "description", "Values": ["old"]}]
    assert listed_names(manager, Filters=filters) == []
    assert listed_names(manager, Filters=filters, IncludePlannedDeletion=True) == ["legacy/ftp"]


def test_an_unknown_filter_key_is_a_validation_error(
    manager: Harness, catalogue: dict[str, str]
) -> None:
    manager.assert_refused(
        "ListSecrets",
        {"Filters": [{"Key": "colour", "Values": ["blue"]}]},
        "ValidationException",
        "1 validation error detected: Value 'colour' at 'filters.1.member.key' failed to "
        "satisfy constraint: Member must satisfy enum value set: "
        "[description, name, tag-key, tag-value, primary-region, owning-service, all]",
    )


def test_more_than_ten_filters_is_a_validation_error(
    manager: Harness, catalogue: dict[str, str]
) -> None:
    filters = [{"Key": "name", "Values": [f"n{n}"]} for n in range(11)]
    error = manager.assert_refused("ListSecrets", {"Filters": filters}, "ValidationException")
    assert error.message.endswith(
        "at 'filters' failed to satisfy constraint: Member must have length less than or equal "
        "to 10"
    )


def test_list_secrets_pages(manager: Harness, catalogue: dict[str, str]) -> None:
    request: dict[str, Any] = {"MaxResults": 2, "SortOrder": "asc", "IncludePlannedDeletion": True}
    first = manager.call("ListSecrets", **request)
    assert [entry["Name"] for entry in first["SecretList"]] == ["prod/db", "prod/api"]
    second = manager.call("ListSecrets", **request, NextToken=first["NextToken"])
    assert [entry["Name"] for entry in second["SecretList"]] == ["Staging/db", "legacy/ftp"]
    assert "NextToken" not in second


def test_list_secrets_refuses_a_token_of_another_listing(
    manager: Harness, catalogue: dict[str, str]
) -> None:
    next_token = manager.quietly("ListSecrets", MaxResults=1, SortOrder="asc")["NextToken"]
    for request in (
        {"NextToken": next_token, "SortOrder": "desc"},
        {"NextToken": next_token, "SortOrder": "asc", "IncludePlannedDeletion": True},
        {"NextToken": "garbage"},
    ):
        manager.assert_refused(
            "ListSecrets", request, "InvalidNextTokenException", INVALID_TOKEN_MESSAGE
        )
    resumed = manager.call("ListSecrets", MaxResults=1, SortOrder="asc", NextToken=next_token)
    assert [entry["Name"] for entry in resumed["SecretList"]] == ["prod/api"]


def test_an_empty_ledger_lists_nothing(manager: Harness) -> None:
    assert manager.call("ListSecrets") == {"SecretList": []}


def test_secrets_created_by_another_process_are_listed_after_those_read_before(
    persistent_backend: str,
) -> None:
    """The ids read from the log are kept, and each listing reads only what came
    after: secrets another process creates meanwhile (among many other events)
    are still found, in creation order, each once."""
    keyring = Keyring.in_memory()
    with (
        open_harness(persistent_backend, keyring=keyring) as first,
        open_harness(persistent_backend, keyring=keyring) as second,
    ):
        first.create("a", token(1), "one")
        assert names_listed(first) == ["a"]
        second.create("b", token(2), "two")
        for _ in range(3):
            second.call("GetSecretValue", SecretId="b")  # call records between creations
        second.create("c", token(3), "three")
        assert sorted(names_listed(first)) == ["a", "b", "c"]
        assert sorted(names_listed(first)) == ["a", "b", "c"]
        in_creation_order = [
            first.secrets.stored_secret(i).name for i in first.secrets.secret_ids()
        ]
        assert in_creation_order == ["a", "b", "c"]


def names_listed(manager: Harness) -> list[str]:
    return [entry["Name"] for entry in manager.call("ListSecrets")["SecretList"]]


def test_a_listing_checks_its_cached_secrets_in_one_read_and_sees_changes_made_elsewhere(
    persistent_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger that is not the sole writer checks its cached secrets against the
    log's newest versions in one read: only a secret another process changed is
    read again, and the listing shows the change."""
    keyring = Keyring.in_memory()
    with (
        open_harness(persistent_backend, keyring=keyring) as first,
        open_harness(persistent_backend, keyring=keyring) as second,
    ):
        arns = [first.create(f"s{number}", token(number + 1), "v")["ARN"] for number in range(3)]
        first.call("ListSecrets")
        second.call("UpdateSecret", SecretId="s1", Description="changed elsewhere")
        read_again: list[object] = []
        original_get = first.secrets.repository.get

        def counting_get(aggregate_id: Any, **options: Any) -> Any:
            read_again.append(aggregate_id)
            return original_get(aggregate_id, **options)

        monkeypatch.setattr(first.secrets.repository, "get", counting_get)
        listed = {entry["Name"]: entry for entry in first.call("ListSecrets")["SecretList"]}
        assert listed["s1"]["Description"] == "changed elsewhere"
        assert read_again == [secret_id_for_arn(arns[1])]
