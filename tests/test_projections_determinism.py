"""The views are a function of the log: following it while it is written, in small
pages that cut requests in half, gives the very rows and the very export bytes that
a rebuild from position zero gives."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from test_projections_support import Ledger, projection_rows, token

from ledger.domain import AWSCURRENT, AWSPENDING
from projections import start_in_background

CATCH_UP_TIMEOUT_SECONDS = 60.0


def run_workload(ledger: Ledger, rounds: int) -> None:
    """A mixed day of calls on a few secrets, successful and failing, spread over hours."""
    names = [f"team-{number}/db" for number in range(3)]
    version = 0
    for name in names:
        version += 1
        ledger.call("CreateSecret", Name=name, ClientRequestToken=token(version), SecretString="v")
    for round_number in range(rounds):
        name = names[round_number % len(names)]
        ledger.clock.advance(timedelta(minutes=7))
        version += 1
        stages = [AWSPENDING] if round_number % 4 == 0 else None
        members: dict[str, Any] = {
            "SecretId": name,
            "ClientRequestToken": token(version),
            "SecretString": "v",
        }
        if stages:
            members["VersionStages"] = stages
        ledger.attempt("PutSecretValue", **members)
        if stages:
            ledger.attempt(
                "UpdateSecretVersionStage",
                SecretId=name,
                VersionStage=AWSCURRENT,
                MoveToVersionId=token(version),
                RemoveFromVersionId=current_version(ledger, name),
            )
        ledger.attempt("GetSecretValue", SecretId=name)
        ledger.attempt("GetSecretValue", SecretId="missing")
        if round_number % 9 == 8:
            ledger.attempt("DeleteSecret", SecretId=name, RecoveryWindowInDays=7)
            ledger.attempt("RestoreSecret", SecretId=name)
    ledger.attempt("DeleteSecret", SecretId=names[0], ForceDeleteWithoutRecovery=True)
    ledger.attempt(
        "CreateSecret", Name=names[0], ClientRequestToken=token(version + 1), SecretString="again"
    )
    ledger.attempt("DeleteSecret", SecretId=names[1], RecoveryWindowInDays=7)
    ledger.clock.advance(timedelta(days=8))
    ledger.attempt("DescribeSecret", SecretId=names[1])


def current_version(ledger: Ledger, name: str) -> str:
    described = ledger.call("DescribeSecret", SecretId=name)
    for version_id, labels in described["VersionIdsToStages"].items():
        if AWSCURRENT in labels:
            return str(version_id)
    raise AssertionError(f"{name} has no AWSCURRENT")


def exported_files(directory: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of the bytes, for every exported file."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*.json.gz"))
    }


def test_following_the_log_and_rebuilding_it_give_identical_views_and_files(
    backend: str, tmp_path: Path
) -> None:
    ledger = Ledger(backend)
    application = ledger.secrets if backend == "memory:" else None
    running = start_in_background(
        backend,
        application=application,
        poll_interval_seconds=0.01,
        page_size=3,
        transaction_events_max=3,
    )
    try:
        run_workload(ledger, rounds=40)
        last_position = ledger.secrets.recorder.max_notification_id() or 0
        assert running.wait_until(last_position, CATCH_UP_TIMEOUT_SECONDS)
        followed = running.read_model
        followed_rows = projection_rows(followed.store)
        followed.audit.export(tmp_path / "followed")
    finally:
        running.stop()
    try:
        rebuilt = ledger.read_model
        rebuilt.rebuild()
        rebuilt_rows = projection_rows(rebuilt.store)
        rebuilt.audit.export(tmp_path / "rebuilt")
    finally:
        ledger.close()

    assert followed_rows == rebuilt_rows
    assert len(rebuilt_rows["projection_audit_records"]) > 100
    assert len(rebuilt_rows["projection_label_intervals"]) > 50
    followed_files = exported_files(tmp_path / "followed")
    assert followed_files == exported_files(tmp_path / "rebuilt")
    assert len(followed_files) >= 5
