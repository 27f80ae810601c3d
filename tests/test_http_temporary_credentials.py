"""Temporary credentials (TC1-TC4) as SDK users meet them: boto3 with
``aws_session_token``, against a real `secretledger serve` whose credentials file
holds a temporary principal and an expired one, and against an in-process endpoint
with an injected clock to which temporary principals are added while it runs (as
the rotation runner adds them)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.config import Config
from botocore.exceptions import ClientError
from http_harness import (
    ALICE,
    CAROL_TEMPORARY,
    DAVE_EXPIRED,
    EXPIRED,
    REGION,
    UNRECOGNIZED,
    RunningServer,
    free_port,
    recorded_calls,
    start_server,
)

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.auth import Principal, Principals, SignatureVerifier, new_temporary_principal
from ledger.cli.serve import server_config
from ledger.http import Endpoint

pytestmark = pytest.mark.slow

ROTATION_ARN = "arn:aws:iam::111122223333:role/secret-ledger-rotation"
LIFETIME_SECONDS = 60
READY_TIMEOUT_SECONDS = 30


def error_of(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


# --------------------------------------------------------------------------------------
# From the credentials file, through `secretledger serve`
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("http-temporary"),
        principals=(ALICE, CAROL_TEMPORARY, DAVE_EXPIRED),
    )
    yield running
    running.stop_cleanly()


def test_boto3_with_a_session_token_is_served_and_recorded_as_its_principal(
    server: RunningServer,
) -> None:
    name = f"temporary/{uuid.uuid4().hex[:12]}"
    carol = server.client(CAROL_TEMPORARY)
    carol.create_secret(Name=name, SecretString="v1")
    assert carol.get_secret_value(SecretId=name)["SecretString"] == "v1"
    [read] = [
        call
        for call in recorded_calls(server)
        if call.request["operation"] == "GetSecretValue"
        and call.request["parameters"] == {"secretId": name}
    ]
    assert (read.request["principal_arn"], read.request["access_key_id"]) == (
        CAROL_TEMPORARY.arn,
        CAROL_TEMPORARY.access_key_id,
    )


def test_boto3_without_the_token_or_with_another_is_unrecognized(server: RunningServer) -> None:
    for token in (None, "carol-session-token-but-not-hers-0000000000000000"):
        client = server.client(replace(CAROL_TEMPORARY, session_token=token, expiration=None))
        assert error_of(client.list_secrets) == ("UnrecognizedClientException", UNRECOGNIZED)


def test_boto3_with_a_token_on_a_long_term_key_is_unrecognized(server: RunningServer) -> None:
    client = server.client(replace(ALICE, session_token="alice-has-no-session-token-000000"))
    assert error_of(client.list_secrets) == ("UnrecognizedClientException", UNRECOGNIZED)


def test_boto3_with_an_expired_credential_gets_expired_token(server: RunningServer) -> None:
    assert error_of(server.client(DAVE_EXPIRED).list_secrets) == (
        "ExpiredTokenException",
        EXPIRED,
    )
    [denial] = [
        call for call in recorded_calls(server) if call.error_code == "ExpiredTokenException"
    ]
    assert denial.request["access_key_id"] == DAVE_EXPIRED.access_key_id
    assert denial.request["principal_arn"] == ""


# --------------------------------------------------------------------------------------
# Minted at run time, with an injected clock
# --------------------------------------------------------------------------------------


@dataclass
class ShiftedClock:
    """The real time plus an offset a test moves forward (the SDK signs with the
    real time, so only the server's idea of now is shifted)."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class InProcessServer:
    url: str
    principals: Principals
    clock: ShiftedClock

    def client(self, principal: Principal) -> Any:
        return boto3.client(
            "secretsmanager",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=principal.access_key_id,
            aws_secret_access_key=principal.secret_access_key,
            aws_session_token=principal.session_token,
            config=Config(retries={"total_max_attempts": 1}),
        )


@pytest.fixture
def in_process() -> Iterator[InProcessServer]:
    clock = ShiftedClock()
    principals = Principals.of([ALICE])
    secrets = Secrets("memory:", region=REGION, account_id="111122223333")
    endpoint = Endpoint(SecretsManagerApi(secrets), SignatureVerifier(principals, clock=clock))
    port = free_port()
    server = uvicorn.Server(server_config(endpoint, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not server.started:
        assert time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.01)
    try:
        yield InProcessServer(f"http://127.0.0.1:{port}", principals, clock)
    finally:
        server.should_exit = True
        thread.join(READY_TIMEOUT_SECONDS)
        secrets.close()


def test_a_temporary_principal_added_at_run_time_is_served_until_it_expires(
    in_process: InProcessServer,
) -> None:
    rotation = new_temporary_principal(ROTATION_ARN, LIFETIME_SECONDS, in_process.clock)
    client = in_process.client(rotation)
    assert error_of(client.list_secrets) == ("UnrecognizedClientException", UNRECOGNIZED)
    in_process.principals.add_temporary(rotation, in_process.clock())
    name = f"rotation/{uuid.uuid4().hex[:12]}"
    created = client.create_secret(Name=name, SecretString="staged")
    assert client.get_secret_value(SecretId=created["ARN"])["SecretString"] == "staged"
    in_process.clock.offset = timedelta(seconds=LIFETIME_SECONDS)
    assert error_of(client.list_secrets) == ("ExpiredTokenException", EXPIRED)
    assert in_process.client(ALICE).describe_secret(SecretId=name)["Name"] == name


def test_a_revoked_temporary_principal_is_refused_at_once(in_process: InProcessServer) -> None:
    rotation = new_temporary_principal(ROTATION_ARN, LIFETIME_SECONDS, in_process.clock)
    in_process.principals.add_temporary(rotation, in_process.clock())
    client = in_process.client(rotation)
    assert client.list_secrets()["SecretList"] == []
    in_process.principals.revoke(rotation.access_key_id)
    assert error_of(client.list_secrets) == ("UnrecognizedClientException", UNRECOGNIZED)
