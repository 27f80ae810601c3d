"""The read-side commands: labels, history, diff, audit query/export, replay, follow.

A SQLite ledger is written through the API (as `secretledger put` would), then the
commands read it, each bringing the projections up to date first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_projections_support import ALICE, ROTATOR, Ledger, projection_rows, token

from ledger.cli import main
from ledger.domain import AWSCURRENT, AWSPENDING, AWSPREVIOUS
from projections import ReadModel
from projections.writer import WriterProcessError


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A ledger with one rotation: created at 09:00:00, v2 pending at 09:00:10 and
    promoted at 09:00:20; the projections are not built yet."""
    path = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(path)
    try:
        ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="a")
        ledger.tick(10)
        ledger.call(
            "PutSecretValue",
            SecretId="app/db",
            ClientRequestToken=token(2),
            SecretString="b",
            VersionStages=[AWSPENDING],
            principal=ROTATOR,
        )
        ledger.tick(10)
        ledger.call(
            "UpdateSecretVersionStage",
            SecretId="app/db",
            VersionStage=AWSCURRENT,
            MoveToVersionId=token(2),
            RemoveFromVersionId=token(1),
            principal=ROTATOR,
        )
        ledger.attempt("GetSecretValue", SecretId="app/missing")
    finally:
        ledger.close()
    yield path


def run(database: str, *arguments: str) -> Result:
    return CliRunner().invoke(main, [*arguments, "--db", database])


def test_labels_as_of_a_time_prints_a_describe_secret_shaped_object(database: str) -> None:
    result = run(
        database, "labels", "--secret-id", "app/db", "--as-of", "2025-03-19T09:00:15Z", "--json"
    )

    assert result.exit_code == 0, result.output
    shaped = json.loads(result.stdout)
    assert set(shaped) == {"ARN", "Name", "AsOf", "Position", "VersionIdsToStages"}
    assert shaped["Name"] == "app/db"
    assert shaped["AsOf"] == "2025-03-19T09:00:15.000000Z"
    assert shaped["VersionIdsToStages"] == {token(1): [AWSCURRENT], token(2): [AWSPENDING]}


def test_labels_now_and_at_a_position(database: str) -> None:
    now = json.loads(run(database, "labels", "--secret-id", "app/db", "--json").stdout)
    assert now["VersionIdsToStages"] == {
        token(1): [AWSPREVIOUS],
        token(2): [AWSCURRENT, AWSPENDING],
    }
    first = json.loads(
        run(database, "labels", "--secret-id", "app/db", "--at-position", "5", "--json").stdout
    )
    assert first["VersionIdsToStages"] == {token(1): [AWSCURRENT]}
    assert first["Position"] == 5

    table = run(database, "labels", "--secret-id", "app/db", "--as-of", "2025-03-19T09:00:00")
    assert table.exit_code == 0
    assert f"{token(1)}  {AWSCURRENT}" in table.stdout


def test_labels_refuses_two_cuts_and_unknown_secrets(database: str) -> None:
    both = run(
        database,
        "labels",
        "--secret-id",
        "app/db",
        "--as-of",
        "2025-03-19T09:00:00Z",
        "--at-position",
        "3",
    )
    assert both.exit_code == 2
    assert "not both" in both.output

    bad_time = run(database, "labels", "--secret-id", "app/db", "--as-of", "last tuesday")
    assert bad_time.exit_code == 2
    assert "not an ISO 8601 time" in bad_time.output

    before = run(
        database, "labels", "--secret-id", "app/db", "--as-of", "2025-03-19T08:00:00Z", "--json"
    )
    assert before.exit_code == 1
    assert json.loads(before.stderr)["__type"] == "ResourceNotFoundException"

    unknown = run(database, "labels", "--secret-id", "nothing")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("ResourceNotFoundException: No secret named 'nothing'")


def test_history_prints_every_move_in_order(database: str) -> None:
    result = run(database, "history", "--secret-id", "app/db", "--json")

    moves = json.loads(result.stdout)
    assert [
        (move["Label"], move["FromVersionId"], move["ToVersionId"], move["Reason"])
        for move in moves
    ] == [
        (AWSCURRENT, None, token(1), "default-current"),
        (AWSPENDING, None, token(2), "requested"),
        (AWSCURRENT, token(1), token(2), "requested"),
        (AWSPREVIOUS, None, token(1), "demoted"),
    ]
    assert [move["Principal"] for move in moves] == [ALICE, ROTATOR, ROTATOR, ROTATOR]

    since = run(
        database, "history", "--secret-id", "app/db", "--label", AWSCURRENT, "--since", "09:00:01Z"
    )
    assert since.exit_code == 2, "a time needs a date"
    later = run(
        database,
        "history",
        "--secret-id",
        "app/db",
        "--label",
        AWSCURRENT,
        "--since",
        "2025-03-19T09:00:01Z",
    )
    lines = later.stdout.splitlines()
    assert lines[0].split() == [
        "POSITION",
        "TIME",
        "LABEL",
        "FROM",
        "TO",
        "REASON",
        "OPERATION",
        "PRINCIPAL",
        "REQUEST",
        "ID",
    ]
    assert len(lines) == 2
    assert "UpdateSecretVersionStage" in lines[1]
    assert lines[1].split()[5] == "requested"


def test_diff_shows_what_changed_between_two_instants(database: str) -> None:
    result = run(
        database, "diff", "--secret-id", "app/db", "2025-03-19T09:00:05Z", "2025-03-19T09:00:25Z"
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        f"{AWSCURRENT}   {token(1)}  {token(2)}",
        f"{AWSPENDING}   -                                     {token(2)}",
        f"{AWSPREVIOUS}  -                                     {token(1)}",
    ]
    same = run(
        database, "diff", "--secret-id", "app/db", "2025-03-19T09:00:25Z", "2025-03-19T09:00:26Z"
    )
    assert same.stdout == "no label changed\n"


@pytest.mark.parametrize(
    ("command", "times"),
    [("labels", []), ("history", []), ("diff", ["2025-03-19T09:00:05Z", "2025-03-19T09:00:25Z"])],
)
def test_the_secret_is_named_with_secret_id_only(
    database: str, command: str, times: list[str]
) -> None:
    positional = run(database, command, "app/db", *times)
    assert positional.exit_code == 2, positional.output
    assert "Usage:" in positional.stderr

    named = run(database, command, "--secret-id", "app/db", *times, "--json")
    assert named.exit_code == 0, named.output

    shown = CliRunner().invoke(main, [command, "--help"])
    assert shown.exit_code == 0
    assert f"  secretledger {command} --secret-id payments/api-key" in shown.stdout


def test_the_secret_id_may_be_a_full_or_partial_arn(database: str) -> None:
    by_name = run(database, "labels", "--secret-id", "app/db", "--json")
    arn = json.loads(by_name.stdout)["ARN"]
    partial = arn.rsplit("-", 1)[0]  # without AWS's random suffix

    for secret_id in (arn, partial):
        labels = run(database, "labels", "--secret-id", secret_id, "--json")
        assert labels.stdout == by_name.stdout, secret_id
        history = run(database, "history", "--secret-id", secret_id, "--json")
        assert len(json.loads(history.stdout)) == 4, secret_id
        changes = run(
            database,
            "diff",
            "--secret-id",
            secret_id,
            "2025-03-19T09:00:05Z",
            "2025-03-19T09:00:25Z",
        )
        assert changes.exit_code == 0, changes.output
        assert len(changes.stdout.splitlines()) == 4, secret_id


def test_audit_query_prints_json_lines_or_a_table(database: str) -> None:
    lines = run(database, "audit", "query", "--json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [record["eventName"] for record in records] == [
        "CreateSecret",
        "PutSecretValue",
        "UpdateSecretVersionStage",
        "GetSecretValue",
    ]

    filtered = run(
        database, "audit", "query", "--principal", ROTATOR, "--event-name", "PutSecretValue"
    )
    rows = filtered.stdout.splitlines()
    assert rows[0].split()[:3] == ["EVENT", "TIME", "EVENT"]
    assert len(rows) == 2
    missing = run(database, "audit", "query", "--secret-id", "app/missing", "--json")
    assert json.loads(missing.stdout)["errorCode"] == "ResourceNotFoundException"
    limited = run(database, "audit", "query", "--limit", "1", "--json")
    assert len(limited.stdout.splitlines()) == 1


def test_audit_export_writes_cloudtrail_files_and_lists_them(database: str, tmp_path: Path) -> None:
    result = run(database, "audit", "export", "--out", str(tmp_path / "trail"))

    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert len(paths) == 1
    assert paths[0].is_file()
    assert "AWSLogs/123456789012/CloudTrail/us-east-1/2025/03/19" in str(paths[0])
    again = run(database, "audit", "export", "--out", str(tmp_path / "again"))
    relative = Path(again.stdout.strip()).relative_to(tmp_path / "again")
    assert relative == paths[0].relative_to(tmp_path / "trail")


def test_replay_rebuilds_to_the_same_rows_with_progress_on_stderr(database: str) -> None:
    run(database, "labels", "--secret-id", "app/db")
    with ReadModel.open(database) as model:
        before = projection_rows(model.store)

    result = run(database, "replay", "--projection", "audit")

    assert result.exit_code == 0, result.output
    assert "rebuilding audit" in result.stderr
    assert "rebuilt up to log position" in result.stderr
    with ReadModel.open(database) as model:
        assert projection_rows(model.store) == before


def test_a_replay_whose_writer_fails_says_so_without_a_traceback(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_rebuild(self: ReadModel, *arguments: object, **options: object) -> int:
        raise WriterProcessError("the writer process ended")

    monkeypatch.setattr(ReadModel, "rebuild", failing_rebuild)
    result = run(database, "replay")

    assert result.exit_code == 1
    assert "the rebuild stopped: the writer process ended" in result.stderr
    assert "resume" in result.stderr and "Traceback" not in result.output


def test_follow_once_catches_up_and_exits(database: str) -> None:
    result = run(database, "follow", "--once")

    assert result.exit_code == 0, result.output
    with ReadModel.open(database) as model:
        last = model.log.last_position()
        assert set(model.runner.positions().values()) == {last}
    assert f"caught up to log position {last}" in result.stderr
