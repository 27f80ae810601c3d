"""`secretledger report` (docs/report.md, CR-1 to CR-17): a history written through the
API with a stepping clock, read back as JSON, Markdown and HTML, every finding and
figure asserted; the report as of an instant on a later ledger; the HTML page in
headless Chromium (no network request, no console error, a chart and a table drawn).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import is_running_in_ci

from ledger.api import Caller, SecretsManagerApi
from ledger.application import Secrets
from ledger.cli import main
from ledger.domain import AWSCURRENT, AWSPENDING
from ledger.errors import (
    AccessDeniedException,
    SecretsManagerError,
    UnrecognizedClientException,
)
from ledger.policies import Policy, check_identity_policy
from ledger.refusals import RefusalCount


def identity_policy(*statements: dict[str, Any]) -> Policy:
    check = check_identity_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    assert check.policy is not None, check.findings
    return check.policy


START = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
CANARY = "canary-report-4d1c"
ALICE = Caller(principal_arn=f"arn:aws:iam::{ACCOUNT}:user/alice", access_key_id="AKIAALICE")
ROTATOR = Caller(principal_arn=f"arn:aws:iam::{ACCOUNT}:role/rotator", access_key_id="AKIAROT")
MALLORY = Caller(principal_arn="", access_key_id="AKIAMALLORY")
NEWCOMER = Caller(principal_arn=f"arn:aws:iam::{ACCOUNT}:user/newcomer", access_key_id="AKIANEW")
ROBOT = Caller(
    principal_arn=f"arn:aws:iam::{ACCOUNT}:role/robot",
    access_key_id="AKIAROBOT",
    policy=identity_policy(
        {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"},
        {
            "Sid": "NotDb",
            "Effect": "Deny",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "arn:aws:secretsmanager:*:*:secret:db-*",
        },
    ),
)
SINCE = "2025-03-01T00:00:00Z"
CUT = "2025-04-01T00:00:00Z"


def token(number: int) -> str:
    return f"00000000-0000-0000-0000-{number:012d}"


class Story:
    def __init__(self, database: str, keyring: Path) -> None:
        self.now = START
        self.secrets = Secrets(database, keyring_path=keyring, clock=lambda: self.now)
        self.api = SecretsManagerApi(self.secrets)
        self.tokens = 0

    def at(self, moment: datetime) -> None:
        assert moment >= self.now
        self.now = moment

    def call(self, caller: Caller, request_id: str, operation: str, **members: Any) -> Any:
        return self.api.call(operation, members, dataclasses.replace(caller, request_id=request_id))

    def put(self, caller: Caller, request_id: str, secret: str, value: str, **members: Any) -> str:
        self.tokens += 1
        self.call(
            caller,
            request_id,
            "PutSecretValue",
            SecretId=secret,
            ClientRequestToken=token(self.tokens),
            SecretString=value,
            **members,
        )
        return token(self.tokens)


def write_history(database: str, keyring: Path, snapshot: Path) -> None:
    """The story below; ``snapshot``: a copy of the ledger as it stood at CUT."""
    s = Story(database, keyring)
    for number, name in enumerate(("db", "stale", "burst", "shared"), start=100):
        s.call(
            ALICE,
            f"c-{name}",
            "CreateSecret",
            Name=name,
            ClientRequestToken=token(number),
            SecretString=f"{CANARY}-{name}" if name != "shared" else f"{CANARY}-db",
        )
    # db: a completed rotation (Feb), then in March: a completed rotation, an abandoned
    # one, a failed stage move, a rollback, reads of old versions and a new reader.
    s.at(START + timedelta(days=40))
    pending = s.put(ROTATOR, "r1-pending", "db", f"{CANARY}-r1", VersionStages=[AWSPENDING])
    s.call(
        ROTATOR,
        "r1-finish",
        "UpdateSecretVersionStage",
        SecretId="db",
        VersionStage=AWSCURRENT,
        MoveToVersionId=pending,
        RemoveFromVersionId=token(100),
    )
    march = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
    s.at(march)
    s.call(ALICE, "read-1", "GetSecretValue", SecretId="db")
    pending2 = s.put(ROTATOR, "r2-pending", "db", f"{CANARY}-r2", VersionStages=[AWSPENDING])
    s.call(
        ROTATOR,
        "r2-finish",
        "UpdateSecretVersionStage",
        SecretId="db",
        VersionStage=AWSCURRENT,
        MoveToVersionId=pending2,
        RemoveFromVersionId=pending,
    )
    s.at(march + timedelta(days=1))
    manual = s.put(ALICE, "r3-dropped", "db", f"{CANARY}-manual")
    s.at(march + timedelta(days=2))
    pending3 = s.put(ROTATOR, "r3-pending", "db", f"{CANARY}-r3", VersionStages=[AWSPENDING])
    s.at(march + timedelta(days=3))
    with contextlib.suppress(SecretsManagerError):
        s.call(
            ROTATOR,
            "r4-fails",
            "UpdateSecretVersionStage",
            SecretId="db",
            VersionStage=AWSCURRENT,
            MoveToVersionId=pending3,
            RemoveFromVersionId=token(1),
        )
    s.at(march + timedelta(days=4))
    s.call(
        ALICE,
        "rollback",
        "UpdateSecretVersionStage",
        SecretId="db",
        VersionStage=AWSCURRENT,
        MoveToVersionId=pending2,
        RemoveFromVersionId=manual,
    )
    s.at(march + timedelta(days=5))
    s.call(NEWCOMER, "read-old", "GetSecretValue", SecretId="db", VersionId=pending)
    # burst: three puts five minutes apart
    for minute in (0, 5, 10):
        s.at(march + timedelta(days=6, minutes=minute))
        s.put(ALICE, f"burst-{minute}", "burst", f"{CANARY}-b{minute}")
    # denials: a refused signature on db
    s.at(march + timedelta(days=7))
    s.api.record_denial(
        "GetSecretValue",
        {"SecretId": "db"},
        dataclasses.replace(MALLORY, request_id="denied-1"),
        UnrecognizedClientException("The security token included in the request is invalid."),
    )
    with sqlite3.connect(database) as source, sqlite3.connect(snapshot) as target:
        source.backup(target)
    # after the cut: more of everything
    s.at(datetime(2025, 5, 1, tzinfo=UTC))
    s.put(ALICE, "late-put", "stale", f"{CANARY}-late")
    s.put(ALICE, "late-reuse", "burst", f"{CANARY}-late")
    s.put(ROTATOR, "late-restage", "db", f"{CANARY}-r5", VersionStages=[AWSPENDING])
    # denials after the cut: an identity policy refusing db (CR-10, AZ-12, AZ-13), and
    # a summary of refusals counted, not recorded one by one (DR-2)
    with contextlib.suppress(AccessDeniedException):
        s.call(ROBOT, "late-denied", "GetSecretValue", SecretId="db")
    batch = s.call(ROBOT, "late-batch", "BatchGetSecretValue", SecretIdList=["db", "stale"])
    assert [error["ErrorCode"] for error in batch["Errors"]] == ["AccessDeniedException"]
    window = datetime(2025, 5, 1, 0, 1, tzinfo=UTC)
    s.api.record_refusals_counted(
        RefusalCount("203.0.113.9", "InvalidSignatureException", 7, window, window)
    )
    s.call(NEWCOMER, "late-read", "GetSecretValue", SecretId="stale")
    s.secrets.close()


def run_report(database: str, *arguments: str) -> str:
    result = CliRunner().invoke(main, ["report", "--db", database, *arguments])
    assert result.exit_code == 0, result.output
    return result.output


@dataclass(frozen=True)
class Written:
    database: str
    keyring: Path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    directory = tmp_path_factory.mktemp("report")
    database = str(directory / "ledger.db")
    keyring = directory / "ledger.db.keyring"
    write_history(database, keyring, directory / "at-cut.db")
    yield Written(database, keyring)


def report_json(written: Written, *arguments: str) -> dict[str, Any]:
    text = run_report(written.database, "--max-age", "60d", "--since", SINCE, *arguments)
    assert CANARY not in text, "no value in a report"
    document: dict[str, Any] = json.loads(text)
    return document


EXPECTED_FINDINGS = [
    ("value-reuse", "high", "db", None, ["c-db", "c-shared"]),
    ("value-reuse", "high", "shared", None, ["c-db", "c-shared"]),
    ("stale-value", "high", "stale", None, ["c-stale"]),
    ("stale-value", "high", "shared", None, ["c-shared"]),
    ("rotation-failed", "high", "db", ROTATOR.principal_arn, ["r4-fails"]),
    ("rotation-abandoned", "medium", "db", ROTATOR.principal_arn, ["r3-pending"]),
    ("rolled-back", "medium", "db", ALICE.principal_arn, ["rollback"]),
    ("access-denied", "medium", "~db", "", ["denied-1"]),
    ("read-non-current", "low", "db", NEWCOMER.principal_arn, ["read-old"]),
    ("write-burst", "low", "burst", ALICE.principal_arn, ["burst-0", "burst-5", "burst-10"]),
    ("first-time-reader", "info", "db", ALICE.principal_arn, ["read-1"]),
    ("first-time-reader", "info", "db", NEWCOMER.principal_arn, ["read-old"]),
]


def finding_tuple(finding: dict[str, Any]) -> tuple[Any, ...]:
    """(kind, severity, secret, principal, request ids); the secret is its name, from
    the ARN, or the caller's words for a call that resolved none (``~`` before them)."""
    arn, reference = finding["SecretARN"], finding["SecretReference"]
    assert (arn is None) or (reference is None), "one or the other"
    name = arn.rpartition(":")[2].rsplit("-", 1)[0] if arn is not None else None
    name = f"~{reference}" if reference is not None else name
    request_ids = [item["RequestId"] for item in finding["Evidence"]]
    return (finding["Kind"], finding["Severity"], name, finding["Principal"], request_ids)


def test_every_finding_with_its_evidence(written: Written) -> None:
    document = report_json(written, "--as-of", CUT, "--keyring", str(written.keyring))
    assert [finding_tuple(item) for item in document["Findings"]] == [
        (kind, severity, name, principal, ids)
        for kind, severity, name, principal, ids in EXPECTED_FINDINGS
    ]
    positions = [item["Position"] for f in document["Findings"] for item in f["Evidence"]]
    assert all(isinstance(position, int) and position > 0 for position in positions)
    assert [len(shared["Versions"]) for shared in document["ValueReuse"]["SharedValues"]] == [2]


def test_a_rotation_abandoned_by_restaging_and_one_left_behind(written: Written) -> None:
    """CR-5: AWSPENDING moved off a version that never became AWSCURRENT (r3-pending,
    by late-restage), and the new one still pending a month later."""
    document = report_json(written, "--as-of", "2025-06-01T00:00:00Z")
    abandoned = [
        (finding_tuple(item), item["Summary"])
        for item in document["Findings"]
        if item["Kind"] == "rotation-abandoned"
    ]
    assert abandoned == [
        (
            (
                "rotation-abandoned",
                "medium",
                "db",
                ROTATOR.principal_arn,
                ["r3-pending", "late-restage"],
            ),
            f"AWSPENDING dropped from {token(4)}",
        ),
        (
            ("rotation-abandoned", "medium", "db", ROTATOR.principal_arn, ["late-restage"]),
            f"AWSPENDING left on {token(10)} for 31d",
        ),
    ]


def test_denials_refused_calls_batch_entries_and_counted_refusals(written: Written) -> None:
    """CR-10: AccessDeniedException (a refused call, and a BatchGetSecretValue entry),
    a refused signature naming a secret that never resolved, and a summary of 7."""
    document = report_json(written, "--as-of", "2025-06-01T00:00:00Z")
    denied = [
        (finding_tuple(item), item["Summary"])
        for item in document["Findings"]
        if item["Kind"] == "access-denied"
    ]
    counted = ("access-denied", "medium", None, "", [denied[-1][0][4][0]])
    assert denied == [
        (
            ("access-denied", "medium", "~db", "", ["denied-1"]),
            "1 denied calls (UnrecognizedClientException)",
        ),
        (
            ("access-denied", "medium", "db", ROBOT.principal_arn, ["late-denied", "late-batch"]),
            "2 denied calls (AccessDeniedException)",
        ),
        (counted, "7 denied calls (InvalidSignatureException)"),
    ]
    assert document["DeniedByPrincipal"] == {"": 8, ROBOT.principal_arn: 2}


def test_value_reuse_counts_versions_created_by_the_cut(written: Written) -> None:
    """CR-11: a value shared only after the cut is not in the report as of the cut
    (above), and is in a later one."""
    document = report_json(
        written, "--as-of", "2025-06-01T00:00:00Z", "--keyring", str(written.keyring)
    )
    reuse = [finding_tuple(item) for item in document["Findings"] if item["Kind"] == "value-reuse"]
    assert reuse == [
        ("value-reuse", "high", "db", None, ["c-db", "c-shared"]),
        ("value-reuse", "high", "shared", None, ["c-db", "c-shared"]),
        ("value-reuse", "high", "burst", None, ["late-reuse", "late-put"]),
        ("value-reuse", "high", "stale", None, ["late-reuse", "late-put"]),
    ]


def test_figures_per_secret_and_in_total(written: Written) -> None:
    document = report_json(written, "--as-of", CUT)
    by_name = {entry["Name"]: entry for entry in document["Secrets"]}
    db = by_name["db"]
    assert db["Rotations"] == {"Completed": 1, "Failed": 1, "Abandoned": 1, "RolledBack": 1}
    assert db["LastRotation"]["RequestId"] == "r2-finish"
    assert db["LastRotation"]["Time"] == "2025-03-02T09:00:00.000000Z"
    assert db["Current"]["VersionId"] == token(2)
    assert db["Current"]["AgeSeconds"] == 2_559_600
    assert db["Churn"] == {
        "Puts": 3,
        "WriteBursts": 0,
        "Versions": 5,
        "VersionCap": 100,
        "VersionsBelowCap": 95,
        "RemovedByRetention": 0,
        "Destroyed": 0,
    }
    assert db["DeprecatedVersions"] == 2
    assert db["Access"]["Reads"] == [
        {"Principal": ALICE.principal_arn, "VersionId": token(1), "Count": 1},
        {"Principal": NEWCOMER.principal_arn, "VersionId": token(1), "Count": 1},
    ]
    assert db["Access"]["FirstTimeReaders"] == [ALICE.principal_arn, NEWCOMER.principal_arn]
    assert by_name["burst"]["Churn"]["WriteBursts"] == 1
    assert by_name["stale"]["Current"]["AgeSeconds"] == 7_743_600
    assert document["DeniedByPrincipal"] == {"": 1}
    totals = document["Totals"]
    assert (totals["Secrets"], totals["Puts"], totals["NonCurrentReads"]) == (4, 6, 1)
    assert document["Integrity"] == {
        "Intact": True,
        "Problem": None,
        "Keys": "no checkpoint to check",
        "LatestCheckpoint": None,
    }


def test_as_of_on_a_later_ledger_equals_the_report_at_that_instant(written: Written) -> None:
    """CR-1: the ledger went on after CUT; its copy taken at CUT gives the same bytes."""
    at_cut = str(Path(written.database).with_name("at-cut.db"))
    arguments = ("--since", SINCE, "--max-age", "60d", "--as-of", CUT)
    assert run_report(written.database, *arguments) == run_report(at_cut, *arguments)
    later = run_report(written.database, "--since", SINCE, "--as-of", "2025-06-01T00:00:00Z")
    assert "late-read" in later and "late-read" not in run_report(at_cut, *arguments)


def test_markdown_holds_the_findings_and_figures(written: Written) -> None:
    text = run_report(
        written.database, "--max-age", "60d", "--since", SINCE, "--as-of", CUT, "--format", "md"
    )
    assert CANARY not in text
    assert "| rotation-failed | high |" in text
    assert "#37 (r4-fails)" in text
    assert "| db | 29d 15h | 29d 15h | - | 1/1/1/1 | 3 | 0 | 5 (100) | 0/0 | 2 | - | 1 |" in text
    assert "| (unauthenticated) | 1 |" in text


def test_usage_errors(written: Written) -> None:
    result = CliRunner().invoke(main, ["report", "--db", written.database, "--max-age", "9x"])
    assert result.exit_code == 2
    result = CliRunner().invoke(
        main, ["report", "--db", written.database, "--since", CUT, "--as-of", SINCE]
    )
    assert result.exit_code == 2


# Rotation configured through RotateSecret (CR-15 to CR-17) -------------------------

FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:rotate-rot"
ROTATION_CUT = "2025-03-01T00:00:00Z"


def write_rotation_history(database: str, keyring: Path, snapshot: Path) -> None:
    """A rotation played by an external driver (RO-5: no runner), a failed attempt
    (recorded as the runner would, RO-7), its version's AWSPENDING dropped, and a
    schedule left to lapse; ``snapshot``: the ledger as it stood at ROTATION_CUT."""
    s = Story(database, keyring)
    s.call(
        ALICE,
        "rot-create",
        "CreateSecret",
        Name="rot",
        ClientRequestToken=token(200),
        SecretString=f"{CANARY}-rot",
    )
    s.at(START + timedelta(days=1))
    s.call(
        ROTATOR,
        "rot-start",
        "RotateSecret",
        SecretId="rot",
        ClientRequestToken=token(201),
        RotationLambdaARN=FUNCTION_ARN,
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=True,
    )
    s.at(START + timedelta(days=1, minutes=5))
    s.call(
        ROTATOR,
        "rot-fill",
        "PutSecretValue",
        SecretId="rot",
        ClientRequestToken=token(201),
        SecretString=f"{CANARY}-rot-2",
        VersionStages=[AWSPENDING],
    )
    s.at(START + timedelta(days=1, minutes=10))
    s.call(
        ROTATOR,
        "rot-finish",
        "UpdateSecretVersionStage",
        SecretId="rot",
        VersionStage=AWSCURRENT,
        MoveToVersionId=token(201),
        RemoveFromVersionId=token(200),
    )
    s.at(START + timedelta(days=9))
    s.call(ROTATOR, "rot-again", "RotateSecret", SecretId="rot", ClientRequestToken=token(202))
    s.at(START + timedelta(days=9, hours=1))
    secret = s.secrets.find_secret("rot")
    failing = s.secrets.rotation_context(secret.arn, "RotateSecret")
    assert not s.secrets.finish_rotation(secret.id, token(202), 1, failing)
    s.at(START + timedelta(days=10))
    s.call(
        ROTATOR,
        "rot-drop",
        "UpdateSecretVersionStage",
        SecretId="rot",
        VersionStage=AWSPENDING,
        RemoveFromVersionId=token(202),
    )
    with sqlite3.connect(database) as source, sqlite3.connect(snapshot) as target:
        source.backup(target)
    s.at(datetime(2025, 3, 10, tzinfo=UTC))
    s.call(ROTATOR, "rot-late", "RotateSecret", SecretId="rot", ClientRequestToken=token(203))
    s.secrets.close()


@pytest.fixture(scope="module")
def rotation_written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    directory = tmp_path_factory.mktemp("report-rotation")
    database = str(directory / "ledger.db")
    keyring = directory / "ledger.db.keyring"
    write_rotation_history(database, keyring, directory / "at-cut.db")
    yield Written(database, keyring)


def test_rotation_configuration_attempts_and_an_overdue_schedule(
    rotation_written: Written,
) -> None:
    """CR-15: the configuration at the cut; CR-16: one completed rotation (its
    AWSCURRENT move and its RotationSucceeded count once), one failed attempt;
    CR-17: the 30-day schedule lapsed on 2025-02-01 with no success since."""
    text = run_report(rotation_written.database, "--as-of", ROTATION_CUT)
    assert CANARY not in text
    document = json.loads(text)
    (entry,) = document["Secrets"]
    assert entry["Rotation"] == {
        "RotationEnabled": True,
        "RotationLambdaARN": FUNCTION_ARN,
        "RotationRules": {"AutomaticallyAfterDays": 30},
        "NextRotationDate": "2025-02-02T00:00:00.000000Z",
        "LastRotatedDate": "2025-01-02T09:10:00.000000Z",
        "Overdue": True,
    }
    assert entry["Rotations"] == {"Completed": 1, "Failed": 1, "Abandoned": 1, "RolledBack": 0}
    assert entry["LastRotation"]["RequestId"] == "rot-finish"
    # the staged versions are versions from their staging (RO-3); the fill is a put
    assert entry["Current"]["VersionId"] == token(201)
    assert (entry["Churn"]["Puts"], entry["Churn"]["Versions"]) == (1, 3)
    failing = next(f for f in document["Findings"] if f["Kind"] == "rotation-failed")
    assert failing["Summary"] == f"rotating to {token(202)} failed in the finishSecret step"
    assert failing["Evidence"][0]["RequestId"].startswith("Rotation-arn:aws:secretsmanager:")
    assert [finding_tuple(f)[:4] for f in document["Findings"]] == [
        ("rotation-overdue", "high", "rot", ROTATOR.principal_arn),
        ("rotation-failed", "high", "rot", "secretsmanager.amazonaws.com"),
        ("rotation-abandoned", "medium", "rot", ROTATOR.principal_arn),
    ]
    overdue = document["Findings"][0]
    assert [item["RequestId"] for item in overdue["Evidence"]] == ["rot-start", "rot-finish"]
    assert overdue["Summary"] == "rotation due by 2025-02-02T00:00:00.000000Z, 27d late"
    totals = document["Totals"]
    assert (totals["RotationsCompleted"], totals["RotationsFailed"]) == (1, 1)
    assert totals["FindingsByKind"] == {
        "rotation-overdue": 1,
        "rotation-failed": 1,
        "rotation-abandoned": 1,
    }
    before_due = json.loads(
        run_report(rotation_written.database, "--as-of", "2025-02-01T12:00:00Z")
    )
    assert before_due["Secrets"][0]["Rotation"]["Overdue"] is False
    assert "rotation-overdue" not in before_due["Totals"]["FindingsByKind"]
    markdown = run_report(rotation_written.database, "--as-of", ROTATION_CUT, "--format", "md")
    assert "| rotation-overdue | high |" in markdown
    assert (
        "| rot | 57d 15h | 57d 14h | 2025-02-02T00:00:00.000000Z (overdue) | 1/1/1/0 | 1 | 0 "
        "| 3 (100) | 0/0 | 1 | - | 0 |"
    ) in markdown
    assert f"#{overdue['Evidence'][0]['Position']} (rot-start)" in markdown


def test_rotation_as_of_on_a_later_ledger_equals_the_report_at_that_instant(
    rotation_written: Written,
) -> None:
    at_cut = str(Path(rotation_written.database).with_name("at-cut.db"))
    arguments = ("--as-of", ROTATION_CUT)
    assert run_report(rotation_written.database, *arguments) == run_report(at_cut, *arguments)
    later = json.loads(run_report(rotation_written.database, "--as-of", "2025-03-11T00:00:00Z"))
    # rot-late staged a rotation nobody finished: still overdue, now 37 days late
    overdue = next(f for f in later["Findings"] if f["Kind"] == "rotation-overdue")
    assert overdue["Summary"] == "rotation due by 2025-02-02T00:00:00.000000Z, 37d late"
    bars = [(bar["Label"], bar["VersionId"]) for bar in later["Secrets"][0]["LabelTimeline"]]
    assert (AWSPENDING, token(203)) in bars


# HTML in headless Chromium ---------------------------------------------------------


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if is_running_in_ci():
            pytest.fail(f"{reason} (CI is set, so the browser test must run, not skip)")
        pytest.skip(reason)
    return binary


@dataclass(frozen=True)
class Rendering:
    """What headless Chromium did with a page: its DOM, the console lines it logged and
    the URLs the page itself asked the network for."""

    dom: str
    console: list[str]
    page_requests: list[str]


# Chromium's own traffic (component updates, sign-in, time sync) starts with no
# document behind it: its initiator is "not an origin". Anything the page asks for
# carries the page's origin ("null" for a file:// page) as initiator.
BROWSER_INITIATOR = "not an origin"


def page_requests(net_log: Path) -> list[str]:
    """URLs the page requested through the network stack (file: and data: never get
    there), from Chromium's net log; the browser's own requests are left out."""
    document = json.loads(net_log.read_text())
    start_job = document["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in document["events"]:
        params = event.get("params") or {}
        from_browser = params.get("initiator") == BROWSER_INITIATOR
        if event["type"] == start_job and "url" in params and not from_browser:
            urls.append(str(params["url"]))
    return [url for url in urls if not url.startswith(("file:", "data:"))]


def render(binary: str, profile: Path, page: Path, *arguments: str) -> Rendering:
    """Headless, every host resolving nowhere and every request through a closed proxy,
    the network stack's log kept to see which requests the page made."""
    net_log = profile.with_suffix(".netlog.json")
    completed = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            f"--log-net-log={net_log}",
            "--virtual-time-budget=5000",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-domain-reliability",
            "--no-default-browser-check",
            "--window-size=1200,1600",
            *arguments,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(profile)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    console = [
        line for line in completed.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]
    return Rendering(completed.stdout, console, page_requests(net_log))


def table_rows(dom: str, table_id: str) -> int:
    """Body rows of one table of the rendered DOM."""
    match = re.search(f'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', dom, re.DOTALL)
    assert match is not None, f"table {table_id} rendered"
    return match.group(1).count("<tr>")


@pytest.mark.slow
def test_the_chromium_checks_see_a_request_and_a_console_error(tmp_path: Path) -> None:
    """The checks below can fail: a page that fetches and logs is caught."""
    binary = chromium_binary()
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="http://example.invalid/x.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    rendering = render(binary, tmp_path / "profile", page, "--dump-dom")
    assert rendering.page_requests == ["http://example.invalid/x.png"]
    assert len(rendering.console) == 1 and "boom" in rendering.console[0]


@pytest.mark.slow
def test_the_html_page_renders_offline_in_chromium(written: Written, tmp_path: Path) -> None:
    binary = chromium_binary()
    page = tmp_path / "report.html"
    run_report(
        written.database,
        "--max-age",
        "60d",
        "--since",
        SINCE,
        "--as-of",
        CUT,
        "--format",
        "html",
        "--out",
        str(page),
    )
    text = page.read_text()
    assert CANARY not in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text), "nothing fetched from elsewhere"
    assert text.count('class="chart"') == 4, "one timeline per secret"
    dom = render(binary, tmp_path / "profile-dom", page, "--dump-dom")
    without_reuse = [item for item in EXPECTED_FINDINGS if item[0] != "value-reuse"]
    assert table_rows(dom.dom, "findings") == len(without_reuse)
    assert table_rows(dom.dom, "secrets") == 4
    assert dom.dom.count('class="chart"') == 4
    screenshot = tmp_path / "shot.png"
    shot = render(binary, tmp_path / "profile-shot", page, f"--screenshot={screenshot}")
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000, "a screenshot that is not blank"
    for rendering in (dom, shot):
        assert rendering.console == [], "no console message"
        assert rendering.page_requests == [], "no network request"
