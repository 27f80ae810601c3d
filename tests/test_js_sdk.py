"""The AWS SDK for JavaScript v3 (@aws-sdk/client-secrets-manager, installed from npm by
.ci/run) against `serve`: RotateSecret with a local rotation function, the rotation
members of DescribeSecret and ListSecrets, CancelRotateSecret, tags and resource
policies, GetRandomPassword, and AWS's errors as the SDK names them. Skipped locally without node or
the package; a failure in CI."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_harness import ACCOUNT_ID, ALICE, REGION, JavaScriptSdk, RunningServer, start_server
from test_rotation_runner import FUNCTION_ARN, function_environment, runner_options

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "js" / "rotate.cjs"
SCRIPT_TIMEOUT_SECONDS = 120
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:role/app"},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
            }
        ],
    }
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    state = tmp_path / "state"
    state.mkdir()
    running = start_server(
        tmp_path / "server", options=runner_options(), environment=function_environment(state)
    )
    try:
        yield running
    finally:
        running.stop()


def test_rotation_through_the_javascript_sdk(
    javascript_sdk: JavaScriptSdk, server: RunningServer
) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("AWS_")
    } | {
        "NODE_PATH": str(javascript_sdk.directory / "node_modules"),
        "AWS_ENDPOINT_URL": server.url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": ALICE.access_key_id,
        "AWS_SECRET_ACCESS_KEY": ALICE.secret_access_key,
        "ROTATION_LAMBDA_ARN": FUNCTION_ARN,
        "POLICY": POLICY,
    }
    completed = subprocess.run(
        [javascript_sdk.node, str(SCRIPT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(completed.stdout)
    assert seen["noFunction"] == {
        "name": "InvalidRequestException",
        "message": "No Lambda rotation function ARN is associated with this secret.",
        "status": 400,
    }
    token = seen["rotatedVersionId"]
    assert len(token) == 36, "the SDK filled in a UUID token"
    assert seen["rotationEnabled"] is True
    assert seen["rotationLambdaArn"] == FUNCTION_ARN
    assert seen["rotationRules"] == {
        "ScheduleExpression": "rate(10 days)",
        "Duration": "2h",
        "AutomaticallyAfterDays": 10,
    }
    assert seen["lastRotatedIsDate"] and seen["nextAfterLast"]
    assert seen["versionIdsToStages"] == {
        seen["createdVersionId"]: ["AWSPREVIOUS"],
        token: ["AWSCURRENT"],
    }
    assert seen["valueChanged"] and seen["currentVersionId"] == token
    assert seen["listedVersionIds"] == sorted([seen["createdVersionId"], token])
    assert seen["listedRotationEnabled"] is True and seen["listedNextIsDate"]
    assert seen["cancelled"]["Name"] == "js/rotated"
    assert seen["cancelled"]["ARN"].startswith(
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:js/rotated-"
    )
    assert "VersionId" not in seen["cancelled"] or seen["cancelled"]["VersionId"] is None
    assert seen["enabledAfterCancel"] is False and seen["nextAfterCancel"]
    assert seen["tagsAndPolicy"] == {
        "tags": [{"Key": "team", "Value": "payments"}],
        "listedByTag": ["js/rotated"],
        "systemTag": {
            "name": "InvalidParameterException",
            "message": "You can't modify system tags. Tag key: 'aws:x'.",
            "status": 400,
        },
        "policyValid": True,
        "policyRoundTrip": True,
        "policyAfterDelete": True,
    }
    assert (seen["passwordLength"], seen["passwordAlphanumeric"]) == (20, True)
    assert seen["tooShort"] == "InvalidParameterException", "PasswordLength below 4"
    assert seen["missing"] == {
        "name": "ResourceNotFoundException",
        "message": "Secrets Manager can't find the specified secret.",
        "status": 400,
    }
