"""Existing AWS tools, unchanged but for the endpoint URL: the AWS CLI v1 and the
Secrets Manager caching client, against a real `secretledger serve`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_secretsmanager_caching import SecretCache, SecretCacheConfig
from http_harness import (
    ALICE,
    BOB,
    CAROL_TEMPORARY,
    DAVE_EXPIRED,
    EXPIRED,
    REGION,
    RunningServer,
    recorded_calls,
    start_server,
)

pytestmark = pytest.mark.slow

CLI_TIMEOUT_SECONDS = 60
CACHE_REFRESH_SECONDS = 1
CACHE_WAIT_SECONDS_MAX = 15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("http-clients"),
        principals=(ALICE, BOB, CAROL_TEMPORARY, DAVE_EXPIRED),
    )
    yield running
    running.stop_cleanly()


@pytest.fixture
def name() -> str:
    return f"tools/{uuid.uuid4().hex[:12]}"


def aws(
    server: RunningServer, *arguments: str, principal: Any = ALICE
) -> subprocess.CompletedProcess[str]:
    """``aws --endpoint-url <server> secretsmanager <arguments>``, with only the
    environment's credentials and region (no config or credentials files)."""
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": principal.access_key_id,
        "AWS_SECRET_ACCESS_KEY": principal.secret_access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }
    environment.pop("AWS_SESSION_TOKEN", None)
    environment.pop("AWS_PROFILE", None)
    if principal.session_token is not None:
        environment["AWS_SESSION_TOKEN"] = principal.session_token
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "awscli",
            "--endpoint-url",
            server.url,
            "--output",
            "json",
            "secretsmanager",
            *arguments,
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def aws_json(server: RunningServer, *arguments: str, principal: Any = ALICE) -> Any:
    result = aws(server, *arguments, principal=principal)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_the_aws_cli_creates_puts_and_reads_a_secret(server: RunningServer, name: str) -> None:
    created = aws_json(server, "create-secret", "--name", name, "--secret-string", "first")
    put = aws_json(server, "put-secret-value", "--secret-id", name, "--secret-string", "second")
    assert put["VersionStages"] == ["AWSCURRENT"]
    read = aws_json(server, "get-secret-value", "--secret-id", name)
    assert (read["SecretString"], read["VersionId"]) == ("second", put["VersionId"])
    previous = aws_json(
        server, "get-secret-value", "--secret-id", created["ARN"], "--version-stage", "AWSPREVIOUS"
    )
    assert previous["SecretString"] == "first"
    versions = aws_json(server, "list-secret-version-ids", "--secret-id", name)
    assert {entry["VersionId"] for entry in versions["Versions"]} == {
        created["VersionId"],
        put["VersionId"],
    }


def test_the_aws_cli_stores_binary_files_and_moves_labels(
    server: RunningServer, name: str, tmp_path: Path
) -> None:
    blob = tmp_path / "key.bin"
    blob.write_bytes(b"\x00\x01binary\xff")
    aws_json(server, "create-secret", "--name", name)
    put = aws_json(
        server,
        "put-secret-value",
        "--secret-id",
        name,
        "--secret-binary",
        f"fileb://{blob}",
        "--version-stages",
        "AWSPENDING",
    )
    aws_json(
        server,
        "update-secret-version-stage",
        "--secret-id",
        name,
        "--version-stage",
        "blue",
        "--move-to-version-id",
        put["VersionId"],
    )
    described = aws_json(server, "describe-secret", "--secret-id", name)
    assert sorted(described["VersionIdsToStages"][put["VersionId"]]) == [
        "AWSCURRENT",
        "AWSPENDING",
        "blue",
    ]
    result = aws(
        server,
        "get-secret-value",
        "--secret-id",
        name,
        "--query",
        "SecretBinary",
        "--output",
        "text",
    )
    assert result.returncode == 0, result.stderr
    assert base64.b64decode(result.stdout.strip()) == b"\x00\x01binary\xff"


def test_the_aws_cli_reports_aws_errors(server: RunningServer, name: str) -> None:
    result = aws(server, "get-secret-value", "--secret-id", name)
    assert result.returncode != 0
    assert "(ResourceNotFoundException)" in result.stderr
    assert "Secrets Manager can't find the specified secret." in result.stderr


def test_the_aws_cli_signs_as_the_principal_it_was_given(server: RunningServer, name: str) -> None:
    aws_json(server, "create-secret", "--name", name, "--secret-string", "v", principal=BOB)
    aws_json(server, "get-secret-value", "--secret-id", name, principal=BOB)
    [call] = [
        call
        for call in recorded_calls(server)
        if call.request["operation"] == "GetSecretValue"
        and call.request["parameters"] == {"secretId": name}
    ]
    assert (call.request["principal_arn"], call.request["access_key_id"]) == (
        BOB.arn,
        BOB.access_key_id,
    )
    assert "aws-cli/" in call.request["user_agent"]


def test_the_aws_cli_with_a_wrong_key_is_refused(server: RunningServer) -> None:
    impostor = type(ALICE)(ALICE.access_key_id, "w" * 40, ALICE.arn)
    result = aws(server, "list-secrets", principal=impostor)
    assert result.returncode != 0
    assert "(InvalidSignatureException)" in result.stderr


def test_the_caching_client_reads_the_new_value_after_a_rotation(
    server: RunningServer, name: str
) -> None:
    client = server.client()
    first = client.create_secret(Name=name, SecretString="password-1")["VersionId"]
    cache = SecretCache(
        config=SecretCacheConfig(secret_refresh_interval=CACHE_REFRESH_SECONDS), client=client
    )
    assert cache.get_secret_string(name) == "password-1"

    pending = client.put_secret_value(
        SecretId=name, SecretString="password-2", VersionStages=["AWSPENDING"]
    )["VersionId"]
    assert cache.get_secret_string(name) == "password-1"  # rotation not finished
    client.update_secret_version_stage(
        SecretId=name,
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending,
        RemoveFromVersionId=first,
    )
    deadline = time.monotonic() + CACHE_WAIT_SECONDS_MAX
    while cache.get_secret_string(name) != "password-2":
        assert time.monotonic() < deadline, "the cache never saw the rotated value"
        time.sleep(0.2)
    assert cache.get_secret_string(name, "AWSPREVIOUS") == "password-1"


def test_the_caching_client_reads_binary_secrets(server: RunningServer, name: str) -> None:
    client = server.client()
    client.create_secret(Name=name, SecretBinary=b"\x10\x20\x30")
    cache = SecretCache(config=SecretCacheConfig(), client=client)
    assert cache.get_secret_binary(name) == b"\x10\x20\x30"


def test_the_aws_cli_signs_with_aws_session_token(server: RunningServer, name: str) -> None:
    aws_json(
        server, "create-secret", "--name", name, "--secret-string", "v", principal=CAROL_TEMPORARY
    )
    read = aws_json(server, "get-secret-value", "--secret-id", name, principal=CAROL_TEMPORARY)
    assert read["SecretString"] == "v"
    [call] = [
        call
        for call in recorded_calls(server)
        if call.request["operation"] == "GetSecretValue"
        and call.request["parameters"] == {"secretId": name}
    ]
    assert call.request["access_key_id"] == CAROL_TEMPORARY.access_key_id


def test_the_aws_cli_reports_an_expired_session_token(server: RunningServer) -> None:
    result = aws(server, "list-secrets", principal=DAVE_EXPIRED)
    assert result.returncode == 255, result.stderr  # AWS CLI v1: a service error
    assert f"(ExpiredTokenException) when calling the ListSecrets operation: {EXPIRED}" in (
        result.stderr
    )


def test_the_aws_cli_gets_random_passwords(server: RunningServer) -> None:
    """PW-1 to PW-6 as the AWS CLI sends them; the server log never holds a password."""
    default = aws_json(server, "get-random-password")["RandomPassword"]
    assert len(default) == 32
    shaped = aws_json(
        server,
        "get-random-password",
        "--password-length",
        "64",
        "--exclude-punctuation",
        "--exclude-characters",
        "abcdef",
        "--include-space",
        "--no-require-each-included-type",
    )["RandomPassword"]
    assert len(shaped) == 64
    assert not set(shaped) & set("abcdef!#$%&")
    too_long = aws(server, "get-random-password", "--password-length", "4097")
    assert too_long.returncode == 255 and "ValidationException" in too_long.stderr
    nothing_left = aws(
        server,
        "get-random-password",
        "--exclude-numbers",
        "--exclude-punctuation",
        "--exclude-uppercase",
        "--exclude-lowercase",
    )
    assert nothing_left.returncode == 255 and "InvalidParameterException" in nothing_left.stderr
    log = server.log()
    assert default not in log and shaped not in log
