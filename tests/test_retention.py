"""Retention of deprecated versions and the version cap (docs/semantics.md
§2.7; issue item 2), driven by the injected clock.

Unlabelled versions are removed (a `VersionRemoved` event, in the same
transaction as the put that caused it) only when a secret has more than 100
versions, and only those older than 24 hours; past the hard cap
(`Secrets(version_count_max=...)`) PutSecretValue fails with
LimitExceededException and changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ledger_helpers import (
    AWSCURRENT,
    AWSPREVIOUS,
    Harness,
    open_harness,
    token,
    token_in_use_message,
)

from ledger.domain import Secret
from ledger.errors import version_destroyed

NAME = "busy/secret"
THRESHOLD = 100
DAY = timedelta(hours=24)


@pytest.fixture
def secret_arn(manager: Harness) -> str:
    arn: str = manager.create(NAME)["ARN"]
    return arn


def put_many(manager: Harness, first: int, last: int) -> None:
    for number in range(first, last + 1):
        manager.put(NAME, token(number), f"value {number}")


def listed(manager: Harness) -> list[str]:
    return [entry["VersionId"] for entry in manager.all_versions(NAME)]


def cap_message(secret_arn: str, cap: int) -> str:
    return (
        f"You can't create more than {cap} versions of secret {secret_arn}: "
        "deprecated versions are removed only when they are older than 24 hours."
    )


def removed_version_ids(manager: Harness, log_length: int) -> list[str]:
    return [
        event.version_id
        for event in manager.events_since(log_length)
        if isinstance(event, Secret.VersionRemoved)
    ]


def test_nothing_is_removed_while_a_secret_has_at_most_100_versions(
    manager: Harness, secret_arn: str
) -> None:
    put_many(manager, 1, 99)
    manager.clock.advance(30 * DAY)
    log_before = manager.log_length()
    manager.put(NAME, token(100), "value 100")
    assert removed_version_ids(manager, log_before) == []
    assert len(listed(manager)) == THRESHOLD


def test_past_100_versions_the_oldest_old_deprecated_version_is_removed(
    manager: Harness, secret_arn: str
) -> None:
    put_many(manager, 1, 100)
    manager.clock.advance(DAY + timedelta(seconds=1))
    log_before = manager.log_length()
    manager.put(NAME, token(101), "value 101")
    events = manager.events_since(log_before)
    assert [type(event).__qualname__ for event in events] == [
        "Secret.VersionCreated",
        "Secret.LabelMoved",
        "Secret.LabelMoved",
        "Secret.VersionRemoved",
    ]
    removed = events[-1]
    assert (removed.version_id, removed.reason) == (token(1), "retention")
    assert listed(manager) == [token(n) for n in range(101, 1, -1)]
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionId": token(1)},
        "ResourceNotFoundException",
        version_destroyed(token(1)).message,
        [secret_arn],
    )
    assert manager.quietly("GetSecretValue", SecretId=NAME, VersionId=token(2))["SecretString"] == (
        "value 2"
    )


def test_each_further_put_removes_one_old_version_and_the_count_stays_at_100(
    manager: Harness, secret_arn: str
) -> None:
    put_many(manager, 1, 100)
    manager.clock.advance(2 * DAY)
    log_before = manager.log_length()
    put_many(manager, 101, 105)
    assert removed_version_ids(manager, log_before) == [token(n) for n in range(1, 6)]
    assert len(listed(manager)) == THRESHOLD


def test_labelled_versions_are_never_removed(manager: Harness, secret_arn: str) -> None:
    manager.put(NAME, token(1), "value 1")
    manager.put(NAME, token(2), "value 2", ["keep"])
    put_many(manager, 3, 100)
    manager.clock.advance(2 * DAY)
    log_before = manager.log_length()
    put_many(manager, 101, 102)
    # v1 is deprecated; v2 holds "keep"; v99 holds AWSPREVIOUS before the first put.
    assert removed_version_ids(manager, log_before) == [token(1), token(3)]
    labels = manager.labels(NAME)
    assert labels[token(2)] == ["keep"]
    assert labels[token(102)] == [AWSCURRENT]
    assert labels[token(101)] == [AWSPREVIOUS]


def test_versions_younger_than_24_hours_are_never_removed(
    manager: Harness, secret_arn: str
) -> None:
    put_many(manager, 1, 100)
    manager.clock.advance(DAY - timedelta(seconds=1))
    labels_before = manager.labels(NAME)
    manager.assert_refused(
        "PutSecretValue",
        {"SecretId": NAME, "ClientRequestToken": token(101), "SecretString": "value 101"},
        "LimitExceededException",
        cap_message(secret_arn, THRESHOLD),
        [secret_arn],
    )
    assert manager.labels(NAME) == labels_before
    manager.clock.advance(timedelta(seconds=1))
    manager.put(NAME, token(101), "value 101")
    assert token(1) not in listed(manager)


def test_above_a_higher_cap_young_versions_are_all_kept_and_listed(backend: str) -> None:
    cap = 120
    with open_harness(backend, version_count_max=cap) as manager:
        arn = manager.create(NAME)["ARN"]
        log_before = manager.log_length()
        put_many(manager, 1, 100)
        manager.clock.advance(DAY - timedelta(hours=1))
        put_many(manager, 101, cap)  # nothing is 24 hours old yet: every version is kept
        assert removed_version_ids(manager, log_before) == []
        assert listed(manager) == [token(n) for n in range(cap, 0, -1)]
        manager.assert_refused(
            "PutSecretValue",
            {"SecretId": NAME, "ClientRequestToken": token(121), "SecretString": "value 121"},
            "LimitExceededException",
            cap_message(arn, cap),
            [arn],
        )
        manager.clock.advance(timedelta(hours=1))  # v1..v100 are 24 hours old now
        log_before = manager.log_length()
        manager.put(NAME, token(121), "value 121")
        # Back down to 100 versions, oldest first; the younger v101..v121 all stay.
        assert removed_version_ids(manager, log_before) == [token(n) for n in range(1, 22)]
        assert listed(manager) == [token(n) for n in range(121, 21, -1)]


def test_past_a_small_cap_put_secret_value_fails_and_changes_nothing(backend: str) -> None:
    with open_harness(backend, version_count_max=3) as manager:
        arn = manager.create(NAME, token(1), "value 1")["ARN"]
        put_many(manager, 2, 3)
        manager.clock.advance(365 * DAY)  # age alone removes nothing below 100 versions
        labels_before = manager.labels(NAME)
        error = manager.assert_refused(
            "PutSecretValue",
            {"SecretId": NAME, "ClientRequestToken": token(4), "SecretString": "value 4"},
            "LimitExceededException",
            cap_message(arn, 3),
            [arn],
        )
        assert error.http_status == 400
        assert manager.labels(NAME) == labels_before
        assert manager.put(NAME, token(3), "value 3")["VersionId"] == token(3)  # a replay
        manager.stage(NAME, AWSCURRENT, token(1), token(3))  # labels still move
        assert manager.current_value(NAME) == "value 1"


def test_the_token_of_a_removed_version_cannot_be_reused(manager: Harness, secret_arn: str) -> None:
    put_many(manager, 1, 100)
    manager.clock.advance(2 * DAY)
    manager.put(NAME, token(101), "value 101")
    assert token(1) not in listed(manager)
    for value in ("value 1", "a different value"):
        manager.assert_refused(
            "PutSecretValue",
            {"SecretId": NAME, "ClientRequestToken": token(1), "SecretString": value},
            "ResourceExistsException",
            token_in_use_message(token(1), secret_arn),
            [secret_arn],
        )
