"""`secretledger serve` as an operator meets it: it never starts open, binds to
loopback, serves concurrent clients correctly, and on SIGTERM finishes the calls
in flight before it stops."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time
import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from http_harness import (
    ALICE,
    REGION,
    RunningServer,
    free_port,
    open_ledger,
    serve_command,
    sign,
    start_server,
    target_headers,
)

from ledger.auth import Principal, write_credentials_file
from projections import ReadModel

pytestmark = pytest.mark.slow

CLIENT_THREADS = 8
PUTS_PER_THREAD = 10
REFUSAL_TIMEOUT_SECONDS = 60


def test_without_credentials_it_creates_a_private_file_and_names_it_in_the_log(
    tmp_path: Path,
) -> None:
    """stdout is a log file here: it names the file and the key id, never the secret."""
    server = start_server(tmp_path, default_credentials=True)
    try:
        credentials = tmp_path / "secretledger-credentials.toml"
        assert credentials.stat().st_mode & 0o777 == 0o600
        [entry] = tomllib.loads(credentials.read_text())["principals"]
        principal = Principal(**entry)
        log = server.log()
        assert f"created {credentials} (mode 0600)" in log
        assert f"access key id {principal.access_key_id}" in log
        assert "not shown: stdout is not a terminal" in log
        assert principal.secret_access_key not in log
        assert "AWS_SECRET_ACCESS_KEY" not in log
        assert re.fullmatch(r"AKIA[A-Z2-7]{16}", principal.access_key_id)
        assert server.client(principal).list_secrets()["SecretList"] == []
    finally:
        server.stop()

    again = start_server(tmp_path, default_credentials=True)
    try:
        assert principal.access_key_id not in again.log(), "the file is announced only once"
        assert f"1 principal(s) from {credentials}" in again.log()
        assert again.client(principal).list_secrets()["SecretList"] == []
    finally:
        again.stop()


def test_on_a_terminal_the_new_secret_access_key_is_shown_once(tmp_path: Path) -> None:
    port = free_port()
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        serve_command(tmp_path / "ledger.db", port, None),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    os.close(secondary)
    try:
        shown = read_terminal_until(primary, "(Press CTRL+C to quit)")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=REFUSAL_TIMEOUT_SECONDS)
        os.close(primary)
    [entry] = tomllib.loads((tmp_path / "secretledger-credentials.toml").read_text())["principals"]
    assert f"export AWS_ACCESS_KEY_ID={entry['access_key_id']}" in shown
    assert f"export AWS_SECRET_ACCESS_KEY={entry['secret_access_key']}" in shown
    assert f"aws --endpoint-url http://127.0.0.1:{port} secretsmanager" in shown


def read_terminal_until(primary: int, marker: str) -> str:
    """What the process wrote to its terminal, up to ``marker`` (or a timeout)."""
    shown = b""
    deadline = time.monotonic() + REFUSAL_TIMEOUT_SECONDS
    while marker.encode() not in shown:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"never saw {marker!r} in:\n{shown.decode(errors='replace')}"
        readable, _, _ = select.select([primary], [], [], remaining)
        if readable:
            shown += os.read(primary, 65536)
    return shown.decode(errors="replace")


def test_it_refuses_to_start_with_a_credentials_file_others_can_read(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.toml"
    write_credentials_file(credentials, [ALICE])
    credentials.chmod(0o644)
    result = subprocess.run(
        serve_command(tmp_path / "ledger.db", free_port(), credentials),
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 1
    assert f"chmod 600 {credentials}" in result.stderr
    assert "Uvicorn running" not in result.stderr + result.stdout


def test_it_refuses_to_start_with_an_empty_credentials_file(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.toml"
    credentials.write_text("# nobody\n")
    credentials.chmod(0o600)
    result = subprocess.run(
        serve_command(tmp_path / "ledger.db", free_port(), credentials),
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 1
    assert "never starts open" in result.stderr


def test_it_listens_on_loopback_by_default(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        assert f"Uvicorn running on http://127.0.0.1:{server.port}" in server.log()
    finally:
        server.stop()


def test_concurrent_writers_and_readers_all_succeed_and_lose_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        name = "shared/secret"
        server.client().create_secret(Name=name, SecretString="initial")

        def writer(index: int) -> list[str]:
            client = server.client()
            versions = []
            for step in range(PUTS_PER_THREAD):
                put = client.put_secret_value(SecretId=name, SecretString=f"{index}-{step}")
                versions.append(put["VersionId"])
                client.get_secret_value(SecretId=name)
            return versions

        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            written = [
                version for batch in pool.map(writer, range(CLIENT_THREADS)) for version in batch
            ]
        listed = server.client().list_secret_version_ids(SecretId=name, IncludeDeprecated=True)
        stored = {entry["VersionId"] for entry in listed["Versions"]}
        assert set(written) <= stored
        assert len(stored) == CLIENT_THREADS * PUTS_PER_THREAD + 1
        stages = server.client().describe_secret(SecretId=name)["VersionIdsToStages"]
        holders = [version for version, labels in stages.items() if "AWSCURRENT" in labels]
        assert len(holders) == 1 and holders[0] in written
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log()


def raw_signed_put(server: RunningServer, name: str, value: str) -> tuple[bytes, bytes]:
    """The head and body of a signed PutSecretValue, as bytes for a raw socket."""
    body = json.dumps(
        {"SecretId": name, "SecretString": value, "ClientRequestToken": str(uuid.uuid4())}
    ).encode()
    request = AWSRequest(
        method="POST", url=server.url + "/", data=body, headers=target_headers("PutSecretValue")
    )
    sign(request, ALICE)
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Length: {len(body)}"]
    lines += [f"{header}: {value}" for header, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), body


def read_response(connection: socket.socket) -> tuple[int, dict[str, Any]]:
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


def eventually_refused(port: int) -> bool:
    deadline = time.monotonic() + REFUSAL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_finishes_the_call_in_flight_then_stops(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    name = "graceful/secret"
    server.client().create_secret(Name=name, SecretString="before")
    head, body = raw_signed_put(server, name, "written during shutdown")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head + body[:10])
        time.sleep(1.0)  # the server has read the head: the request is in flight
        server.process.send_signal(signal.SIGTERM)
        assert eventually_refused(server.port), "still accepting connections after SIGTERM"
        connection.sendall(body[10:])
        status, answer = read_response(connection)
    assert status == 200, answer
    assert answer["VersionStages"] == ["AWSCURRENT"]
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log()

    restarted = start_server(tmp_path)
    try:
        read = restarted.client().get_secret_value(SecretId=name)
        assert read["SecretString"] == "written during shutdown"
        assert read["VersionId"] == answer["VersionId"]
    finally:
        restarted.stop()


def test_arns_use_the_configured_region_whatever_the_signature_scope(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        elsewhere: Any = boto3.client(
            "secretsmanager",
            endpoint_url=server.url,
            region_name="ap-southeast-2",
            aws_access_key_id=ALICE.access_key_id,
            aws_secret_access_key=ALICE.secret_access_key,
        )
        arn = elsewhere.create_secret(Name="regional")["ARN"]
        assert arn.startswith(f"arn:aws:secretsmanager:{REGION}:")
    finally:
        server.stop()


def test_the_server_keeps_the_projections_up_to_date_by_itself(tmp_path: Path) -> None:
    """`serve` follows the log in-process: the projections' tracked positions reach
    the end of the log without any catch-up from the reader."""
    server = start_server(tmp_path)
    try:
        client = server.client()
        client.create_secret(Name="followed/secret", SecretString="first")
        client.put_secret_value(SecretId="followed/secret", SecretString="second")
        ledger = open_ledger(server)
        try:
            end = ledger.recorder.max_notification_id()
        finally:
            ledger.close()
        assert end is not None
        with ReadModel.open(str(server.database)) as read_model:
            deadline = time.monotonic() + 10
            while min(read_model.runner.positions().values()) < end:
                assert time.monotonic() < deadline, "the server's projections did not catch up"
                time.sleep(0.05)
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log()
