"""LastAccessedDate (docs/api.md LA-1 to LA-5): midnight UTC of the last read, set by
GetSecretValue and BatchGetSecretValue, written as at most one `Secret.Accessed` per
version per UTC day, shown in DescribeSecret, ListSecrets and ListSecretVersionIds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError
from ledger_helpers import Harness, open_harness, token

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.crypto import Keyring
from ledger.domain import ApiCall, RequestContext, Secret, secret_id_for_arn, start_of_utc_day

NAME = "app/db"
OTHER = "app/cache"
LATE_EVENING = datetime(2030, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)


def midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def read(manager: Harness, secret_id: str = NAME, **members: str) -> None:
    manager.call("GetSecretValue", SecretId=secret_id, **members)


def accessed_events(manager: Harness, log_before: int) -> list[Secret.Accessed]:
    return [
        event for event in manager.events_since(log_before) if isinstance(event, Secret.Accessed)
    ]


def test_the_date_is_midnight_utc_of_the_read() -> None:
    east = datetime(2030, 3, 2, 1, 30, tzinfo=UTC).astimezone()
    assert start_of_utc_day(east) == datetime(2030, 3, 2, tzinfo=UTC)
    assert start_of_utc_day(LATE_EVENING) == datetime(2030, 3, 1, tzinfo=UTC)


def test_absent_until_the_first_read(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    described = manager.call("DescribeSecret", SecretId=NAME)
    assert "LastAccessedDate" not in described
    [entry] = manager.call("ListSecrets")["SecretList"]
    assert "LastAccessedDate" not in entry
    [version] = manager.call("ListSecretVersionIds", SecretId=NAME)["Versions"]
    assert "LastAccessedDate" not in version


def test_a_read_sets_it_everywhere_at_date_precision(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "v1")["ARN"]
    manager.clock.advance(timedelta(hours=5, minutes=7))
    read(manager)
    today = midnight(manager.clock())
    assert manager.call("DescribeSecret", SecretId=NAME)["LastAccessedDate"] == today
    [entry] = manager.call("ListSecrets")["SecretList"]
    assert entry["LastAccessedDate"] == today
    [version] = manager.call("ListSecretVersionIds", SecretId=arn)["Versions"]
    assert version["LastAccessedDate"] == today


def test_reads_on_one_day_append_one_event_per_version(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    manager.put(NAME, token(2), "v2")
    log_before = manager.log_length()
    for _ in range(3):
        read(manager)
        read(manager, VersionId=token(1))
    accessed = accessed_events(manager, log_before)
    assert [(event.version_id, event.accessed_date) for event in accessed] == [
        (token(2), midnight(manager.clock())),
        (token(1), midnight(manager.clock())),
    ]
    assert accessed[0].request["operation"] == "GetSecretValue"


def test_the_next_utc_day_appends_again(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    manager.clock.current = LATE_EVENING
    read(manager)
    log_before = manager.log_length()
    manager.clock.advance(timedelta(microseconds=1))
    read(manager)
    read(manager)
    [accessed] = accessed_events(manager, log_before)
    assert accessed.accessed_date == datetime(2030, 3, 2, tzinfo=UTC)
    described = manager.call("DescribeSecret", SecretId=NAME)
    assert described["LastAccessedDate"] == datetime(2030, 3, 2, tzinfo=UTC)


def test_only_read_versions_carry_it(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    manager.put(NAME, token(2), "v2")
    manager.put(NAME, token(3), "v3")
    read(manager, VersionId=token(1))
    manager.clock.advance(timedelta(days=2))
    read(manager)
    versions = manager.call("ListSecretVersionIds", SecretId=NAME, IncludeDeprecated=True)
    dates = {entry["VersionId"]: entry.get("LastAccessedDate") for entry in versions["Versions"]}
    assert dates == {
        token(3): midnight(manager.clock()),
        token(2): None,
        token(1): midnight(manager.clock() - timedelta(days=2)),
    }
    described = manager.call("DescribeSecret", SecretId=NAME)
    assert described["LastAccessedDate"] == midnight(manager.clock())


def test_other_calls_and_failed_reads_set_nothing(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    log_before = manager.log_length()
    manager.call("DescribeSecret", SecretId=NAME)
    manager.call("ListSecretVersionIds", SecretId=NAME)
    manager.call("ListSecrets")
    manager.put(NAME, token(2), "v2")
    manager.assert_refused(
        "GetSecretValue", {"SecretId": NAME, "VersionStage": "NOPE"}, "ResourceNotFoundException"
    )
    assert accessed_events(manager, log_before) == []
    assert "LastAccessedDate" not in manager.call("DescribeSecret", SecretId=NAME)


def test_a_read_does_not_change_last_changed_date(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    changed = manager.call("DescribeSecret", SecretId=NAME)["LastChangedDate"]
    manager.clock.advance(timedelta(days=1))
    read(manager)
    assert manager.call("DescribeSecret", SecretId=NAME)["LastChangedDate"] == changed
    manager.clock.advance(timedelta(hours=1))
    manager.put(NAME, token(2), "v2")
    assert manager.call("DescribeSecret", SecretId=NAME)["LastChangedDate"] == manager.clock()


def test_batch_get_sets_it_for_each_secret_returned(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    manager.create(OTHER, token(2), "v2")
    manager.create("app/unread", token(3), "v3")
    answer = manager.call("BatchGetSecretValue", SecretIdList=[NAME, OTHER, "app/missing"])
    assert len(answer["SecretValues"]) == 2 and len(answer["Errors"]) == 1
    today = midnight(manager.clock())
    dates = {
        entry["Name"]: entry.get("LastAccessedDate")
        for entry in manager.call("ListSecrets")["SecretList"]
    }
    assert dates == {NAME: today, OTHER: today, "app/unread": None}


def test_sorting_by_last_accessed_date(manager: Harness) -> None:
    """LA-5: never-read secrets count as the oldest; equal dates sort by name."""
    for number, name in enumerate(["b", "a", "c", "never"], start=1):
        manager.create(name, token(number), "value")
    read(manager, "c")
    manager.clock.advance(timedelta(days=1))
    read(manager, "b")
    read(manager, "a")

    def names(order: str) -> list[str]:
        listing = manager.call("ListSecrets", SortBy="last-accessed-date", SortOrder=order)
        return [entry["Name"] for entry in listing["SecretList"]]

    assert names("asc") == ["never", "c", "a", "b"]
    assert names("desc") == ["b", "a", "c", "never"]


def test_dates_survive_snapshots_and_reopening(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.sqlite")
    keyring = Keyring.in_memory()
    with open_harness(database, keyring=keyring) as manager:
        arn = manager.create(NAME, token(1), "v1")["ARN"]
        read(manager)
        manager.secrets.take_snapshot(secret_id_for_arn(arn))
        expected = manager.call("DescribeSecret", SecretId=NAME)["LastAccessedDate"]
    reopened = Secrets(database, keyring=keyring)
    try:
        api = SecretsManagerApi(reopened, record_calls=False)
        assert api.call("DescribeSecret", {"SecretId": NAME})["LastAccessedDate"] == expected
        [version] = api.call("ListSecretVersionIds", {"SecretId": NAME})["Versions"]
        assert version["LastAccessedDate"] == expected
    finally:
        reopened.close()


def test_a_conflicting_write_is_retried_against_the_stored_secret(tmp_path: Path) -> None:
    """Two processes read one version on one day: the second, holding a copy from
    before the first's note, conflicts, re-reads the secret and appends nothing."""
    database = str(tmp_path / "ledger.sqlite")
    keyring = Keyring.in_memory()
    with open_harness(database, keyring=keyring) as first:
        first.create(NAME, token(1), "v1")
        second = Secrets(database, keyring=keyring, clock=first.clock)
        try:
            stale = second.find_secret(NAME)
            read(first)
            log_before = first.log_length()
            context = RequestContext(
                request_id="second-read",
                principal_arn="arn:aws:iam::123456789012:user/bob",
                access_key_id="",
                source_ip="127.0.0.1",
                user_agent="test",
                region="us-east-1",
                account_id="123456789012",
                operation="GetSecretValue",
            )
            second._note_access(stale, token(1), context)
            assert first.log_length() == log_before
        finally:
            second.close()


def test_the_read_record_still_names_the_version_served(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    log_before = manager.log_length()
    read(manager)
    records = [e for e in manager.events_since(log_before) if isinstance(e, ApiCall.Recorded)]
    [record] = records
    assert record.resources[0]["version_id"] == token(1)


def test_a_clock_set_back_never_moves_the_secret_date_back(manager: Harness) -> None:
    manager.create(NAME, token(1), "v1")
    manager.put(NAME, token(2), "v2")
    manager.clock.current = LATE_EVENING
    read(manager)
    manager.clock.current = LATE_EVENING - timedelta(days=3)
    read(manager, VersionId=token(1))
    assert manager.call("DescribeSecret", SecretId=NAME)["LastAccessedDate"] == midnight(
        LATE_EVENING
    )
    versions = manager.call("ListSecretVersionIds", SecretId=NAME, IncludeDeprecated=True)
    assert versions["Versions"][1]["LastAccessedDate"] == midnight(LATE_EVENING) - timedelta(days=3)


def test_writers_winning_every_attempt_never_fail_the_read(
    manager: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LA-2: the access note loses every attempt to concurrent writers (simulated by a
    save that always conflicts): the value is answered, the date left for a later read."""
    manager.create(NAME, token(1), "v1")
    secrets = manager.secrets

    def always_conflicts(*objects: object, **kwargs: object) -> None:
        raise IntegrityError("a concurrent writer won")

    monkeypatch.setattr(secrets, "save", always_conflicts)
    answer = manager.call("GetSecretValue", SecretId=NAME)
    assert answer["SecretString"] == "v1"
    monkeypatch.undo()
    assert "LastAccessedDate" not in manager.call("DescribeSecret", SecretId=NAME)
    read(manager)
    assert manager.call("DescribeSecret", SecretId=NAME)["LastAccessedDate"] == midnight(
        manager.clock()
    )
