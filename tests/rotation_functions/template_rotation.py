"""A rotation function written like AWS's rotation template (aws-samples'
SecretsManagerRotationTemplate): the same boto3 calls in the same four steps.

It knows nothing of secret-ledger: boto3 finds the endpoint, region and credentials
in the environment the runner gives it (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``).

Test controls, in the directory ``ROTATION_TEST_STATE_DIR`` names:

* ``plan.json``: ``{"fail": {"setSecret": 2}}`` makes the next two setSecret steps
  raise; ``{"sleep": {"testSecret": 60}}`` sleeps first (having written its process
  id to ``sleeping-testSecret``); ``{"exit": {"setSecret": 3}}`` then exits with that
  status (a step that failed because the server went away); ``{"spam": {"createSecret":
  N}}`` prints N bytes; ``{"leak": true}`` prints the pending value to stderr (as a
  careless function might). Counts go down as they are used.
* ``target.json``: the "database" whose password setSecret sets and testSecret
  checks (the template leaves both steps to the user).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import boto3

AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    arn = event["SecretId"]
    token = event["ClientRequestToken"]
    step = event["Step"]
    service_client = boto3.client("secretsmanager")
    metadata = service_client.describe_secret(SecretId=arn)
    if not metadata["RotationEnabled"]:
        raise ValueError(f"Secret {arn} is not enabled for rotation")
    versions = metadata["VersionIdsToStages"]
    if token not in versions:
        raise ValueError(f"Secret version {token} has no stage for rotation of secret {arn}.")
    if AWSCURRENT in versions[token]:
        return
    if AWSPENDING not in versions[token]:
        raise ValueError(f"Secret version {token} not set as AWSPENDING for rotation of {arn}.")
    follow_plan(step)
    if step == "createSecret":
        create_secret(service_client, arn, token)
    elif step == "setSecret":
        set_secret(service_client, arn, token)
    elif step == "testSecret":
        test_secret(service_client, arn, token)
    elif step == "finishSecret":
        finish_secret(service_client, arn, token)
    else:
        raise ValueError("Invalid step parameter")


def create_secret(service_client: Any, arn: str, token: str) -> None:
    service_client.get_secret_value(SecretId=arn, VersionStage=AWSCURRENT)
    try:
        service_client.get_secret_value(SecretId=arn, VersionId=token, VersionStage=AWSPENDING)
    except service_client.exceptions.ResourceNotFoundException:
        exclude_characters = os.environ.get("EXCLUDE_CHARACTERS", "/@\"'\\")
        password = service_client.get_random_password(ExcludeCharacters=exclude_characters)
        service_client.put_secret_value(
            SecretId=arn,
            ClientRequestToken=token,
            SecretString=password["RandomPassword"],
            VersionStages=[AWSPENDING],
        )


def set_secret(service_client: Any, arn: str, token: str) -> None:
    pending = pending_value(service_client, arn, token)
    if plan().get("leak"):
        print(f"setting password {pending}", file=sys.stderr)
    target_path().write_text(json.dumps({"password_sha256": digest(pending)}))


def test_secret(service_client: Any, arn: str, token: str) -> None:
    pending = pending_value(service_client, arn, token)
    target = json.loads(target_path().read_text())
    if target["password_sha256"] != digest(pending):
        raise ValueError("the target does not accept the pending password")


def finish_secret(service_client: Any, arn: str, token: str) -> None:
    metadata = service_client.describe_secret(SecretId=arn)
    current_version = None
    for version, stages in metadata["VersionIdsToStages"].items():
        if AWSCURRENT in stages:
            if version == token:
                return
            current_version = version
            break
    service_client.update_secret_version_stage(
        SecretId=arn,
        VersionStage=AWSCURRENT,
        MoveToVersionId=token,
        RemoveFromVersionId=current_version,
    )


def pending_value(service_client: Any, arn: str, token: str) -> str:
    response = service_client.get_secret_value(
        SecretId=arn, VersionId=token, VersionStage=AWSPENDING
    )
    return str(response["SecretString"])


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# Test controls


def state_directory() -> Path:
    return Path(os.environ["ROTATION_TEST_STATE_DIR"])


def target_path() -> Path:
    return state_directory() / "target.json"


def plan() -> dict[str, Any]:
    path = state_directory() / "plan.json"
    return json.loads(path.read_text()) if path.exists() else {}


def follow_plan(step: str) -> None:
    current = plan()
    sleep_seconds = current.get("sleep", {}).get(step)
    if sleep_seconds:
        (state_directory() / f"sleeping-{step}").write_text(str(os.getpid()))
        time.sleep(sleep_seconds)
    exit_status = current.get("exit", {}).get(step)
    if exit_status:
        sys.exit(exit_status)
    spam_bytes = current.get("spam", {}).get(step)
    if spam_bytes:
        sys.stdout.write("x" * spam_bytes)
        sys.stdout.flush()
    failures = current.get("fail", {}).get(step, 0)
    if failures:
        current["fail"][step] = failures - 1
        (state_directory() / "plan.json").write_text(json.dumps(current))
        raise RuntimeError(f"planned failure in {step}")
