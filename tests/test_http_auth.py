"""Authentication against a real server: every request is signed by a principal of the
credentials file, or refused with the error AWS gives; a refusal is recorded (who
claimed to call, from where, under the request id of the answer) and nothing else
is written. The verifier's finer cases are in test_http_verifier.py.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError
from http_harness import (
    ALICE,
    ALICE_WITH_WRONG_SECRET,
    MALLORY,
    SIGNATURE_MISMATCH,
    UNRECOGNIZED,
    RunningServer,
    calls_with_request_id,
    secret_event_count,
    sign,
    start_server,
    target_headers,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("http-auth"))
    yield running
    running.stop_cleanly()


@pytest.fixture
def secret(server: RunningServer) -> dict[str, Any]:
    """A secret of alice's holding "original", and how many events it has."""
    name = f"auth/{uuid.uuid4().hex[:12]}"
    arn = server.client().create_secret(Name=name, SecretString="original")["ARN"]
    return {"name": name, "arn": arn, "events": secret_event_count(server, arn)}


def put_body(name: str, value: str) -> bytes:
    return json.dumps(
        {"SecretId": name, "SecretString": value, "ClientRequestToken": str(uuid.uuid4())}
    ).encode()


def assert_refused_and_recorded(
    server: RunningServer,
    secret: dict[str, Any],
    response: Any,
    *,
    code: str,
    message_prefix: str,
    claimed_access_key_id: str,
) -> None:
    """The AWS-shaped refusal; the secret untouched; one denial in the ledger."""
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    body = response.json()
    assert body["__type"] == code
    assert body["Message"].startswith(message_prefix)
    assert secret_event_count(server, secret["arn"]) == secret["events"]
    read = server.client().get_secret_value(SecretId=secret["name"])
    assert read["SecretString"] == "original"
    [denial] = calls_with_request_id(server, response.headers["x-amzn-RequestId"])
    assert (denial.error_code, denial.error_message) == (code, body["Message"])
    assert denial.request["principal_arn"] == ""
    assert denial.request["access_key_id"] == claimed_access_key_id
    assert denial.request["operation"] == "PutSecretValue"
    assert denial.request["parameters"] == {}
    assert denial.resources == []


def test_an_unsigned_request_is_refused(server: RunningServer, secret: dict[str, Any]) -> None:
    response = server.post(
        put_body(secret["name"], "unsigned"), target_headers("PutSecretValue"), principal=None
    )
    assert_refused_and_recorded(
        server,
        secret,
        response,
        code="MissingAuthenticationTokenException",
        message_prefix="Missing Authentication Token",
        claimed_access_key_id="",
    )


def test_a_request_signed_with_the_wrong_secret_key_is_refused(
    server: RunningServer, secret: dict[str, Any]
) -> None:
    response = server.post(
        put_body(secret["name"], "wrong key"),
        target_headers("PutSecretValue"),
        principal=ALICE_WITH_WRONG_SECRET,
    )
    assert_refused_and_recorded(
        server,
        secret,
        response,
        code="InvalidSignatureException",
        message_prefix=SIGNATURE_MISMATCH,
        claimed_access_key_id=ALICE.access_key_id,
    )


def test_an_unknown_access_key_is_refused(server: RunningServer, secret: dict[str, Any]) -> None:
    response = server.post(
        put_body(secret["name"], "intruder"), target_headers("PutSecretValue"), principal=MALLORY
    )
    assert_refused_and_recorded(
        server,
        secret,
        response,
        code="UnrecognizedClientException",
        message_prefix=UNRECOGNIZED,
        claimed_access_key_id=MALLORY.access_key_id,
    )


def test_a_body_changed_after_signing_is_refused(
    server: RunningServer, secret: dict[str, Any]
) -> None:
    signed = put_body(secret["name"], "harmless")
    tampered = signed.replace(b"harmless", b"replaced")
    assert len(tampered) == len(signed) and tampered != signed
    response = server.post(signed, target_headers("PutSecretValue"), body_sent=tampered)
    assert_refused_and_recorded(
        server,
        secret,
        response,
        code="InvalidSignatureException",
        message_prefix=SIGNATURE_MISMATCH,
        claimed_access_key_id=ALICE.access_key_id,
    )


def test_a_request_signed_twenty_minutes_ago_has_expired(
    server: RunningServer, secret: dict[str, Any]
) -> None:
    signed_at = datetime.now(UTC) - timedelta(minutes=20)
    response = server.post(
        put_body(secret["name"], "stale"), target_headers("PutSecretValue"), signed_at=signed_at
    )
    assert_refused_and_recorded(
        server,
        secret,
        response,
        code="InvalidSignatureException",
        message_prefix=f"Signature expired: {signed_at.strftime('%Y%m%dT%H%M%SZ')} is now earlier "
        "than ",
        claimed_access_key_id=ALICE.access_key_id,
    )
    assert response.json()["Message"].endswith(" - 15 min.)")


def test_a_request_signed_twenty_minutes_ahead_is_not_yet_valid(
    server: RunningServer, secret: dict[str, Any]
) -> None:
    signed_at = datetime.now(UTC) + timedelta(minutes=20)
    response = server.post(
        put_body(secret["name"], "early"), target_headers("PutSecretValue"), signed_at=signed_at
    )
    assert_refused_and_recorded(
        server,
        secret,
        response,
        code="InvalidSignatureException",
        message_prefix=f"Signature not yet current: {signed_at.strftime('%Y%m%dT%H%M%SZ')} is "
        "still later than ",
        claimed_access_key_id=ALICE.access_key_id,
    )


def test_boto3_sees_the_refusals_as_aws_client_errors(server: RunningServer) -> None:
    for principal, code in (
        (MALLORY, "UnrecognizedClientException"),
        (ALICE_WITH_WRONG_SECRET, "InvalidSignatureException"),
    ):
        with pytest.raises(ClientError) as raised:
            server.client(principal).list_secrets()
        assert raised.value.response["Error"]["Code"] == code
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_the_server_keeps_serving_after_refusals(server: RunningServer) -> None:
    for _ in range(3):
        server.post(b"{}", target_headers("ListSecrets"), principal=MALLORY)
    assert "SecretList" in server.client().list_secrets()


def test_a_request_with_its_target_unsigned_is_refused_and_cannot_be_replayed_as_another(
    server: RunningServer, secret: dict[str, Any]
) -> None:
    """The review's attack: a GetSecretValue signed over host and x-amz-date only, sent
    again with ``X-Amz-Target: secretsmanager.DeleteSecret``. Both are refused, the
    secret is not scheduled for deletion, and each refusal is recorded."""
    body = json.dumps({"SecretId": secret["name"]}).encode()
    request = AWSRequest(
        method="POST", url=server.url + "/", data=body, headers=target_headers("GetSecretValue")
    )
    sign(request, ALICE, unsigned=frozenset({"x-amz-target"}))
    headers = dict(request.prepare().headers)
    assert "x-amz-target" not in headers["Authorization"]
    message = "Headers present in the request must be in 'SignedHeaders': x-amz-target."
    for operation in ("GetSecretValue", "DeleteSecret"):
        sent = {**headers, "X-Amz-Target": f"secretsmanager.{operation}"}
        response = requests.post(server.url + "/", data=body, headers=sent, timeout=30)
        assert response.status_code == 400
        assert response.json() == {"__type": "IncompleteSignature", "Message": message}
        [denial] = calls_with_request_id(server, response.headers["x-amzn-RequestId"])
        assert (denial.error_code, denial.request["operation"]) == (
            "IncompleteSignature",
            operation,
        )
        assert denial.request["principal_arn"] == ""
    assert secret_event_count(server, secret["arn"]) == secret["events"]
    assert "DeletedDate" not in server.client().describe_secret(SecretId=secret["name"])


def test_an_http_1_0_request_without_the_host_it_signed_is_refused(
    server: RunningServer, secret: dict[str, Any]
) -> None:
    body = put_body(secret["name"], "no host")
    request = AWSRequest(
        method="POST", url=server.url + "/", data=body, headers=target_headers("PutSecretValue")
    )
    sign(request, ALICE)
    assert "host;" in str(request.headers["Authorization"])
    lines = ["POST / HTTP/1.0", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall("\r\n".join([*lines, "", ""]).encode() + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk  # HTTP/1.0: the server closes the connection after answering
    head, _, answer_body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(answer_body) == {
        "__type": "IncompleteSignature",
        "Message": "Headers listed in 'SignedHeaders' are missing from the request: host.",
    }
    assert secret_event_count(server, secret["arn"]) == secret["events"]
