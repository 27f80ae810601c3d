"""Rotation functions run by `serve --rotation-function` (rules RF-1 to RF-9 and RO-5
to RO-8 of docs/rotation.md): a function written like AWS's rotation template,
immediately and on schedule (an injected clock), its failures in each step and the
rotation that follows, and a test playing Lambda for a server with no function."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from http_harness import ACCOUNT_ID, ALICE, REGION, RunningServer, start_server
from ledger_helpers import StandIn

from ledger import rotation
from ledger.application import Secrets
from ledger.auth import Principals
from ledger.rotation import RotationRunner, RunnerSettings
from projections import ReadModel
from projections.audit import AuditFilter

pytestmark = pytest.mark.slow

FUNCTIONS_DIRECTORY = Path(__file__).parent / "rotation_functions"
FUNCTION_NAME = "template"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{FUNCTION_NAME}"
ROTATION_PRINCIPAL = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/secretledger-rotation/{FUNCTION_NAME}"
WAIT_SECONDS = 60
POLL_SECONDS = 0.1
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
FIRST_VALUE = "first-value-not-a-canary"
INCOMPLETE = "A previous rotation isn't complete. That rotation will be reattempted."
CLOCK_START = datetime(2025, 3, 19, 9, 0, tzinfo=UTC)


def runner_options(*extra: str) -> list[str]:
    return [
        "--rotation-function",
        f"{FUNCTION_NAME}=template_rotation:lambda_handler",
        "--rotation-step-timeout",
        "20",
        "--rotation-retry-delay",
        "0.2",
        "--rotation-scan-interval",
        "0.2",
        "--rotation-attempts",
        "2",
        *extra,
    ]


def function_environment(state: Path) -> dict[str, str]:
    python_path = os.pathsep.join(
        part for part in (str(FUNCTIONS_DIRECTORY), os.environ.get("PYTHONPATH", "")) if part
    )
    return {"PYTHONPATH": python_path, "ROTATION_TEST_STATE_DIR": str(state)}


def write_plan(state: Path, plan: dict[str, Any]) -> None:
    (state / "plan.json").write_text(json.dumps(plan))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    return directory


@pytest.fixture
def server(tmp_path: Path, state: Path) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path / "server", options=runner_options(), environment=function_environment(state)
    )
    try:
        yield running
    finally:
        running.stop()


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out waiting for {what}")


def rotated_to(client: Any, name: str, token: str) -> Callable[[], dict[str, Any] | None]:
    def done() -> dict[str, Any] | None:
        described: dict[str, Any] = client.describe_secret(SecretId=name)
        stages = described.get("VersionIdsToStages", {})
        if stages.get(token) == ["AWSCURRENT"] and "LastRotatedDate" in described:
            return described
        return None

    return done


def pending_versions(client: Any, name: str) -> list[str]:
    stages = client.describe_secret(SecretId=name)["VersionIdsToStages"]
    return [version for version, labels in stages.items() if labels == ["AWSPENDING"]]


def service_events(server: RunningServer, name: str) -> list[tuple[str, str | None]]:
    with ReadModel.open(str(server.database)) as model:
        model.catch_up()
        return [
            (record.event_name, record.record.get("errorMessage"))
            for record in model.audit.records(AuditFilter(secret=name))
            if record.record["eventType"] == "AwsServiceEvent"
        ]


def test_template_function_rotates_at_once_as_the_rotation_principal(
    server: RunningServer, state: Path
) -> None:
    client = server.client()
    created = client.create_secret(Name="db/app", SecretString=FIRST_VALUE)
    token = str(uuid.uuid4())
    response = client.rotate_secret(
        SecretId="db/app",
        ClientRequestToken=token,
        RotationLambdaARN=FUNCTION_ARN,
        RotationRules={"AutomaticallyAfterDays": 30},
    )
    assert response["VersionId"] == token
    described = wait_for(rotated_to(client, "db/app", token), "the rotation")
    assert described["VersionIdsToStages"] == {
        created["VersionId"]: ["AWSPREVIOUS"],
        token: ["AWSCURRENT"],
    }
    assert described["RotationEnabled"] is True
    assert described["RotationRules"] == {"AutomaticallyAfterDays": 30}
    assert described["NextRotationDate"] > described["LastRotatedDate"]
    new_value = client.get_secret_value(SecretId="db/app")["SecretString"]
    assert new_value != FIRST_VALUE
    assert service_events(server, "db/app") == [
        ("RotationStarted", None),
        ("RotationSucceeded", None),
    ]
    with ReadModel.open(str(server.database)) as model:
        model.catch_up()
        by_function = [
            record.event_name
            for record in model.audit.records(AuditFilter(principal_arn=ROTATION_PRINCIPAL))
        ]
    assert {"GetRandomPassword", "PutSecretValue", "UpdateSecretVersionStage"} <= set(
        by_function
    ), "the function's calls are the rotation principal's"
    assert new_value not in server.log()


@pytest.mark.parametrize("step", STEPS)
def test_a_failed_step_is_retried_with_the_same_token(
    server: RunningServer, state: Path, step: str
) -> None:
    write_plan(state, {"fail": {step: 1}})
    client = server.client()
    name = f"db/{step}"
    client.create_secret(Name=name, SecretString=FIRST_VALUE)
    token = str(uuid.uuid4())
    client.rotate_secret(SecretId=name, ClientRequestToken=token, RotationLambdaARN=FUNCTION_ARN)
    wait_for(rotated_to(client, name, token), "the second attempt")
    message = f"Error when executing lambda {FUNCTION_ARN} during {step} step (exit status 1)"
    assert service_events(server, name) == [
        ("RotationStarted", None),
        ("RotationFailed", message),
        ("RotationStarted", None),
        ("RotationSucceeded", None),
    ]


def test_a_rotation_that_keeps_failing_waits_for_an_operator_then_the_next_one_succeeds(
    server: RunningServer, state: Path, tmp_path: Path
) -> None:
    write_plan(state, {"fail": {"testSecret": 2}})
    client = server.client()
    created = client.create_secret(Name="db/stuck", SecretString=FIRST_VALUE)
    stuck = str(uuid.uuid4())
    client.rotate_secret(SecretId="db/stuck", ClientRequestToken=stuck,
                         RotationLambdaARN=FUNCTION_ARN)  # fmt: skip
    wait_for(
        lambda: (
            [name for name, _ in service_events(server, "db/stuck")].count("RotationFailed") == 2
        ),
        "two failed attempts",
    )
    staged_at = datetime.now(UTC)
    time.sleep(1)  # more scans: no third attempt
    assert [name for name, _ in service_events(server, "db/stuck")].count("RotationStarted") == 2
    described = client.describe_secret(SecretId="db/stuck")
    assert described["VersionIdsToStages"] == {
        created["VersionId"]: ["AWSCURRENT"],
        stuck: ["AWSPENDING"],
    }
    with pytest.raises(client.exceptions.InvalidRequestException, match="isn't complete"):
        client.rotate_secret(SecretId="db/stuck", ClientRequestToken=str(uuid.uuid4()))
    labels = subprocess.run(
        [sys.executable, "-c", "import sys; from ledger.cli import main; sys.exit(main())",
         "labels", "--secret-id", "db/stuck", "--as-of", staged_at.isoformat(),
         "--db", str(server.database), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(labels.stdout)["VersionIdsToStages"][stuck] == ["AWSPENDING"]

    client.update_secret_version_stage(
        SecretId="db/stuck", VersionStage="AWSPENDING", RemoveFromVersionId=stuck
    )
    fresh = str(uuid.uuid4())
    client.rotate_secret(SecretId="db/stuck", ClientRequestToken=fresh)
    wait_for(rotated_to(client, "db/stuck", fresh), "the next rotation")
    audit = subprocess.run(
        [sys.executable, "-c", "import sys; from ledger.cli import main; sys.exit(main())",
         "audit", "query", "--secret-id", "db/stuck", "--json", "--db", str(server.database)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records = [json.loads(line) for line in audit.stdout.splitlines()]
    names = [record["eventName"] for record in records if record["eventType"] == "AwsServiceEvent"]
    assert names == ["RotationStarted", "RotationFailed"] * 2 + [
        "RotationStarted",
        "RotationSucceeded",
    ]


def test_timeouts_and_too_much_output_fail_the_step(tmp_path: Path, state: Path) -> None:
    write_plan(state, {"sleep": {"setSecret": 60}, "spam": {"createSecret": 2 * 1024 * 1024}})
    server = start_server(
        tmp_path / "server",
        options=runner_options("--rotation-step-timeout", "3", "--rotation-attempts", "1"),
        environment=function_environment(state),
    )
    try:
        client = server.client()
        client.create_secret(Name="db/slow", SecretString=FIRST_VALUE)
        client.rotate_secret(SecretId="db/slow", ClientRequestToken=str(uuid.uuid4()),
                             RotationLambdaARN=FUNCTION_ARN)  # fmt: skip
        failed = wait_for(
            lambda: [m for n, m in service_events(server, "db/slow") if n == "RotationFailed"],
            "the failure",
        )
        assert failed == [
            f"Error when executing lambda {FUNCTION_ARN} during createSecret step "
            "(more than 1048576 bytes of output)"
        ]
        write_plan(state, {"sleep": {"setSecret": 60}})
        client.update_secret_version_stage(
            SecretId="db/slow",
            VersionStage="AWSPENDING",
            RemoveFromVersionId=pending_versions(client, "db/slow")[0],
        )
        client.rotate_secret(SecretId="db/slow", ClientRequestToken=str(uuid.uuid4()))
        failed = wait_for(
            lambda: [m for n, m in service_events(server, "db/slow") if n == "RotationFailed"][1:],
            "the timeout",
        )
        assert failed == [
            f"Error when executing lambda {FUNCTION_ARN} during setSecret step "
            "(timed out after 3 seconds)"
        ]
    finally:
        server.stop()


def test_the_function_may_print_values_the_server_never_logs(
    server: RunningServer, state: Path
) -> None:
    write_plan(state, {"leak": True, "fail": {"testSecret": 1}})
    client = server.client()
    client.create_secret(Name="db/leaky", SecretString=FIRST_VALUE)
    token = str(uuid.uuid4())
    client.rotate_secret(SecretId="db/leaky", ClientRequestToken=token,
                         RotationLambdaARN=FUNCTION_ARN)  # fmt: skip
    wait_for(rotated_to(client, "db/leaky", token), "the rotation")
    value = client.get_secret_value(SecretId="db/leaky")["SecretString"]
    log = server.log()
    assert value not in log
    assert "testSecret failed: exit status 1" in log
    assert "bytes of output (not shown: it may hold secret values)" in log


def test_an_exec_function_and_an_unknown_function(tmp_path: Path, state: Path) -> None:
    command = (
        f"exec:{sys.executable} -c 'import json, sys; from template_rotation import "
        "lambda_handler; lambda_handler(json.load(sys.stdin), None)'"
    )
    server = start_server(
        tmp_path / "server",
        options=["--rotation-function", f"shell-rotation={command}",
                 "--rotation-scan-interval", "0.2"],
        environment=function_environment(state),
    )  # fmt: skip
    try:
        client = server.client()
        client.create_secret(Name="db/exec", SecretString=FIRST_VALUE)
        with pytest.raises(client.exceptions.ClientError, match="cannot invoke"):
            client.rotate_secret(SecretId="db/exec", RotationLambdaARN=FUNCTION_ARN)
        assert "RotationEnabled" not in client.describe_secret(SecretId="db/exec")
        token = str(uuid.uuid4())
        client.rotate_secret(
            SecretId="db/exec",
            ClientRequestToken=token,
            RotationLambdaARN=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:shell-rotation",
        )
        wait_for(rotated_to(client, "db/exec", token), "the rotation")
    finally:
        server.stop()


def set_clock(path: Path, moment: datetime) -> None:
    path.write_text(moment.isoformat())


def test_scheduled_rotation_starts_when_its_window_opens(tmp_path: Path, state: Path) -> None:
    clock = tmp_path / "clock"
    set_clock(clock, CLOCK_START)
    server = start_server(
        tmp_path / "server",
        options=runner_options("--clock-file", str(clock)),
        environment=function_environment(state),
    )
    try:
        client = server.client()
        client.create_secret(Name="db/scheduled", SecretString=FIRST_VALUE)
        client.rotate_secret(
            SecretId="db/scheduled",
            RotationLambdaARN=FUNCTION_ARN,
            RotationRules={"ScheduleExpression": "cron(0 6 * * ? *)", "Duration": "2h"},
            RotateImmediately=False,
        )
        described = client.describe_secret(SecretId="db/scheduled")
        assert described["NextRotationDate"] == datetime(2025, 3, 20, 8, tzinfo=UTC)
        time.sleep(1)
        assert "LastRotatedDate" not in client.describe_secret(SecretId="db/scheduled")
        set_clock(clock, datetime(2025, 3, 20, 6, 30, tzinfo=UTC))
        rotated = wait_for(
            lambda: client.describe_secret(SecretId="db/scheduled").get("LastRotatedDate"),
            "the scheduled rotation",
        )
        assert rotated == datetime(2025, 3, 20, 6, 30, tzinfo=UTC)
        described = client.describe_secret(SecretId="db/scheduled")
        assert described["NextRotationDate"] == datetime(2025, 3, 21, 8, tzinfo=UTC)
        assert described["RotationRules"] == {
            "ScheduleExpression": "cron(0 6 * * ? *)",
            "Duration": "2h",
            "AutomaticallyAfterDays": 1,
        }
    finally:
        server.stop()


def play_lambda(server: RunningServer, arn: str, token: str, state: Path) -> None:
    """The test harness as Lambda: the template's four steps, in this process, with
    alice's credentials (no function is configured on the server)."""
    sys.path.insert(0, str(FUNCTIONS_DIRECTORY))
    try:
        import template_rotation

        variables = {
            "AWS_ENDPOINT_URL": server.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEALICE0001",
            "AWS_SECRET_ACCESS_KEY": "alice-secret-access-key-0000000000000000",
            "ROTATION_TEST_STATE_DIR": str(state),
        }
        with pytest.MonkeyPatch.context() as patch:
            for key, value in variables.items():
                patch.setenv(key, value)
            for step in STEPS:
                template_rotation.lambda_handler(
                    {"Step": step, "SecretId": arn, "ClientRequestToken": token}, None
                )
    finally:
        sys.path.remove(str(FUNCTIONS_DIRECTORY))


def test_without_a_function_a_harness_plays_lambda(tmp_path: Path, state: Path) -> None:
    clock = tmp_path / "clock"
    set_clock(clock, CLOCK_START)
    server = start_server(
        tmp_path / "server",
        options=["--clock-file", str(clock), "--rotation-scan-interval", "0.2"],
    )
    try:
        client = server.client()
        arn = client.create_secret(Name="db/external", SecretString=FIRST_VALUE)["ARN"]
        token = str(uuid.uuid4())
        client.rotate_secret(
            SecretId="db/external",
            ClientRequestToken=token,
            RotationLambdaARN=FUNCTION_ARN,
            RotationRules={"AutomaticallyAfterDays": 1},
        )
        time.sleep(1)  # nobody runs it
        assert client.describe_secret(SecretId="db/external")["VersionIdsToStages"][token] == [
            "AWSPENDING"
        ]
        play_lambda(server, arn, token, state)
        described = client.describe_secret(SecretId="db/external")
        assert described["VersionIdsToStages"][token] == ["AWSCURRENT"]
        assert described["LastRotatedDate"] == CLOCK_START
        # The schedule stages the next one for the harness too.
        set_clock(clock, CLOCK_START + timedelta(days=1, hours=1))
        staged = wait_for(lambda: pending_versions(client, "db/external"), "the scheduled staging")
        play_lambda(server, arn, staged[0], state)
        assert service_events(server, "db/external") == [
            ("RotationStarted", None),
            ("RotationSucceeded", None),
            ("RotationStarted", None),
            ("RotationSucceeded", None),
        ]
    finally:
        server.stop()


def terraform_unique_id(counter: int) -> str:
    """The token Terraform's `create.UniqueId` makes: "terraform-", a timestamp, a counter."""
    return f"terraform-{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}{counter:06d}"[:36]


def terraform_read(client: Any, arn: str) -> dict[str, Any]:
    """resourceSecretRotationRead: DescribeSecret, flattened as the provider does."""
    described = client.describe_secret(SecretId=arn)
    enabled = bool(described.get("RotationEnabled"))
    state: dict[str, Any] = {"rotation_enabled": enabled, "secret_id": arn}
    if not enabled:
        return state | {"rotation_lambda_arn": "", "rotation_rules": []}
    rules = described["RotationRules"]
    flattened: dict[str, Any] = {}
    if rules.get("ScheduleExpression"):
        flattened["schedule_expression"] = rules["ScheduleExpression"]
    elif rules.get("AutomaticallyAfterDays"):
        flattened["automatically_after_days"] = rules["AutomaticallyAfterDays"]
    if "Duration" in rules:
        flattened["duration"] = rules["Duration"]
    return state | {
        "rotation_lambda_arn": described["RotationLambdaARN"],
        "rotation_rules": [flattened],
    }


def test_terraform_secret_rotation_call_sequence(server: RunningServer, state: Path) -> None:
    """aws_secretsmanager_secret_rotation (internal/service/secretsmanager/
    secret_rotation.go): create = RotateSecret with its own token, then read; a
    refresh = read; update = RotateSecret with a new token; rotation_enabled = false
    and destroy = CancelRotateSecret."""
    client = server.client()
    arn = client.create_secret(Name="tf/rotated", SecretString=FIRST_VALUE)["ARN"]
    created = client.rotate_secret(
        ClientRequestToken=terraform_unique_id(1),
        RotateImmediately=True,
        RotationRules={"AutomaticallyAfterDays": 7},
        SecretId=arn,
        RotationLambdaARN=FUNCTION_ARN,
    )
    assert created["ARN"] == arn
    assert terraform_read(client, arn) == {
        "rotation_enabled": True,
        "secret_id": arn,
        "rotation_lambda_arn": FUNCTION_ARN,
        "rotation_rules": [{"automatically_after_days": 7}],
    }
    wait_for(lambda: "LastRotatedDate" in client.describe_secret(SecretId=arn), "rotation")
    client.rotate_secret(
        ClientRequestToken=terraform_unique_id(2),
        RotateImmediately=False,
        RotationRules={"ScheduleExpression": "rate(10 days)", "Duration": "3h"},
        SecretId=arn,
        RotationLambdaARN=FUNCTION_ARN,
    )
    refreshed = terraform_read(client, arn)
    assert refreshed["rotation_rules"] == [
        {"schedule_expression": "rate(10 days)", "duration": "3h"}
    ], "no diff on the next plan"
    assert client.describe_secret(SecretId=arn)["RotationRules"]["AutomaticallyAfterDays"] == 10
    client.cancel_rotate_secret(SecretId=arn)
    assert terraform_read(client, arn)["rotation_enabled"] is False
    client.cancel_rotate_secret(SecretId=arn)  # destroy
    assert terraform_read(client, arn)["rotation_enabled"] is False


def test_stopping_the_server_kills_a_step_without_spending_the_attempt(
    tmp_path: Path, state: Path
) -> None:
    write_plan(state, {"sleep": {"setSecret": 60}})
    server = start_server(
        tmp_path / "server", options=runner_options(), environment=function_environment(state)
    )
    client = server.client()
    client.create_secret(Name="db/busy", SecretString=FIRST_VALUE)
    token = str(uuid.uuid4())
    client.rotate_secret(SecretId="db/busy", ClientRequestToken=token,
                         RotationLambdaARN=FUNCTION_ARN)  # fmt: skip
    sleeping = state / "sleeping-setSecret"
    wait_for(sleeping.exists, "setSecret to begin")
    step_pid = int(sleeping.read_text())

    started = time.monotonic()
    server.stop_cleanly()  # the step would sleep for 60 s, its timeout is 20 s

    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(step_pid, 0)  # killed with its process group, not left to run on
    assert service_events(server, "db/busy") == [("RotationStarted", None)]  # not failed
    secrets = Secrets(str(server.database))
    try:
        secret = secrets.find_secret("db/busy")
        assert secret.rotation_in_progress() == token  # taken up again after its lease
        assert secret.rotation is not None and secret.rotation["attempt_failed_date"] is None
    finally:
        secrets.close()


def test_a_step_that_fails_once_the_server_is_stopping_spends_no_attempt(
    tmp_path: Path, state: Path
) -> None:
    """SIGTERM closes the listener at once, but the graceful shutdown (and so the
    runner's stop) waits for the requests in flight: a step failing meanwhile failed
    because the server went away, not by itself."""
    write_plan(state, {"sleep": {"setSecret": 1.5}, "exit": {"setSecret": 3}})
    server = start_server(
        tmp_path / "server", options=runner_options(), environment=function_environment(state)
    )
    client = server.client()
    client.create_secret(Name="db/late", SecretString=FIRST_VALUE)
    client.rotate_secret(SecretId="db/late", ClientRequestToken=str(uuid.uuid4()),
                         RotationLambdaARN=FUNCTION_ARN)  # fmt: skip
    wait_for((state / "sleeping-setSecret").exists, "setSecret to begin")
    with socket.create_connection(("127.0.0.1", server.port)) as in_flight:
        in_flight.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")
        time.sleep(0.2)  # the request is in progress: the shutdown waits for it
        server.process.send_signal(signal.SIGTERM)
        time.sleep(3)  # the step wakes at 1.5 s and fails
        in_flight.sendall(b"{}")
        in_flight.recv(65536)
    server.stop_cleanly()

    assert service_events(server, "db/late") == [("RotationStarted", None)]


class SilentLedger(StandIn):
    """A ledger whose listing of secrets does not come back: a database that stopped
    answering in the middle of a scan."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.asked = threading.Event()
        self.answer = threading.Event()

    def iterate_secrets(self) -> Iterator[object]:
        self.asked.set()
        self.answer.wait(30)
        return iter(())


def test_a_scan_waiting_for_a_silent_database_does_not_hold_the_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rotation, "STOP_SECONDS_MAX", 0.5)
    silent = SilentLedger(Secrets("memory:"))
    runner = RotationRunner(
        silent,  # type: ignore[arg-type]
        Principals.of([ALICE]),
        [],
        RunnerSettings(endpoint_url="http://127.0.0.1:1"),
    )
    runner.start()
    assert silent.asked.wait(5)
    started = time.monotonic()
    runner.stop()
    assert time.monotonic() - started < 2
    silent.answer.set()
