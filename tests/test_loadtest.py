"""`tools/loadtest.py`, CI-sized: a few seconds of clients against real servers on
SQLite, on PostgreSQL with two servers and a follower, and with the servers killed
and restarted meanwhile; each run's check must pass with nothing lost. And the
check itself, fed acknowledgements the ledger does not hold, must fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.api import SecretsManagerApi

REPOSITORY = Path(__file__).resolve().parent.parent
LOADTEST = REPOSITORY / "tools" / "loadtest.py"
RUN_TIMEOUT_SECONDS = 300
SMALL = ["--clients", "3", "--secrets", "12", "--hot", "2", "--json"]

sys.path.insert(0, str(LOADTEST.parent))
import loadtest  # noqa: E402


def run_loadtest(*arguments: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(LOADTEST), *SMALL, *arguments],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    assert completed.stdout, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    assert completed.returncode == 0, report["problems"]
    assert report["check"] == "passed"
    assert report["lost"] == 0
    assert report["acknowledged_puts"] > 0
    assert report["verify"] == {"exit_code": 0, "passed": True}
    assert report["projections_caught_up_seconds"] is not None
    return report


@pytest.mark.slow
def test_a_short_run_on_sqlite_passes_its_check() -> None:
    report = run_loadtest("--duration", "3")
    assert report["engine"] == "sqlite"
    assert report["latency_ms"]["get"]["count"] > 0
    assert report["server_cpu_ms_per_request"] > 0
    timeline = report["throughput_timeline"]
    assert timeline["stretch_seconds"] == 1
    assert timeline["per_second"] and all(rate > 0 for rate in timeline["per_second"])


def test_the_timeline_leaves_out_the_first_and_last_seconds_and_splits_the_rest() -> None:
    first = loadtest.ClientResult(0, answered_by_second={"100": 1, "101": 10, "102": 20})
    second = loadtest.ClientResult(1, answered_by_second={"102": 5, "103": 30, "125": 2})
    stretch_seconds, rates = loadtest.throughput_timeline([first, second])
    assert stretch_seconds == 3  # seconds 101 to 124: 24 seconds in stretches of 3
    assert rates[:2] == [(10 + 25 + 30) / 3, 0.0]
    assert len(rates) == 8
    assert loadtest.throughput_timeline([loadtest.ClientResult(0)]) == (0, [])


@pytest.mark.slow
@pytest.mark.postgres
def test_a_short_run_on_postgres_with_two_servers_passes_its_check(
    postgres_server_url: str,
) -> None:
    report = run_loadtest("--duration", "4", "--postgres", "2")
    assert (report["engine"], report["servers"]) == ("postgresql", 2)


@pytest.mark.slow
def test_servers_killed_during_a_run_lose_no_acknowledged_put() -> None:
    report = run_loadtest("--duration", "7", "--kill-every", "2")
    assert report["kill_rounds_survived"] >= 1


def test_the_check_fails_for_an_acknowledgement_the_ledger_does_not_hold(
    tmp_path: Path,
) -> None:
    ledger = loadtest.Ledger(str(tmp_path / "ledger.db"), tmp_path)
    names = loadtest.secret_names(2)
    loadtest.create_secrets(ledger, names)
    secrets = ledger.open()
    try:
        SecretsManagerApi(secrets).call(
            "PutSecretValue",
            {
                "SecretId": names[0],
                "ClientRequestToken": "lt-kept-" + "0" * 32,
                "SecretString": loadtest.value_for("lt-kept-" + "0" * 32),
                "VersionStages": ["AWSPENDING"],
            },
        )
    finally:
        secrets.close()
    kept = {"name": names[0], "token": "lt-kept-" + "0" * 32, "request_id": "r1"}
    missing = {"name": names[1], "token": "lt-never-" + "0" * 32, "request_id": "r2"}
    passing = loadtest.check_ledger(ledger, names, [loadtest.ClientResult(0, puts=[kept])])
    assert passing == {"problems": [], "lost": 0}
    failing = loadtest.check_ledger(ledger, names, [loadtest.ClientResult(0, puts=[missing])])
    assert failing["lost"] == 1
    assert failing["problems"] == [
        f"acknowledged put {missing['token']} of {names[1]} is not in the log"
    ]


def test_the_label_model_follows_the_rules_of_puts_and_moves() -> None:
    labels = loadtest.labels_after_put({}, "v1", None)
    assert labels == {"AWSCURRENT": "v1"}
    labels = loadtest.labels_after_put(labels, "v2", ["AWSPENDING"])
    assert labels == {"AWSCURRENT": "v1", "AWSPENDING": "v2"}
    labels = loadtest.labels_after_move(
        labels,
        {"versionStage": "AWSCURRENT", "moveToVersionId": "v2", "removeFromVersionId": "v1"},
    )
    assert labels == {"AWSCURRENT": "v2", "AWSPENDING": "v2", "AWSPREVIOUS": "v1"}
    labels = loadtest.labels_after_put(labels, "v3", None)
    assert labels == {"AWSCURRENT": "v3", "AWSPREVIOUS": "v2"}
