"""A real `secretledger serve` in a subprocess, and clients to talk to it.

`start_server(directory)` writes a credentials file with two principals (alice
and bob), starts the server on a free loopback port with a SQLite ledger in
``directory``, and waits until it answers. `RunningServer.stop()` sends SIGTERM
and waits for the graceful shutdown. The ledger can be read meanwhile (SQLite in
WAL mode lets a second process read) with `recorded_calls`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from ledger.application import Secrets
from ledger.auth import Principal, write_credentials_file
from ledger.domain import ApiCall, secret_id_for_arn

REGION = "eu-west-1"
ACCOUNT_ID = "111122223333"
READY_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 40
HTTP_TIMEOUT_SECONDS = 30
ALICE = Principal(
    access_key_id="AKIAEXAMPLEALICE0001",
    secret_access_key="alice-secret-access-key-0000000000000000",
    arn=f"arn:aws:iam::{ACCOUNT_ID}:user/alice",
)

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNRECOGNIZED = "The security token included in the request is invalid."
MALLORY = Principal(
    access_key_id="AKIAEXAMPLEMALLORY03",
    secret_access_key="mallory-secret-access-key-00000000000000",
    arn="arn:aws:iam::111122223333:user/mallory",
)
ALICE_WITH_WRONG_SECRET = Principal(
    access_key_id=ALICE.access_key_id,
    secret_access_key="not-alices-secret-access-key-0000000000",
    arn=ALICE.arn,
)
BOB = Principal(
    access_key_id="AKIAEXAMPLEBOB000002",
    secret_access_key="bob-secret-access-key-00000000000000000000",
    arn=f"arn:aws:iam::{ACCOUNT_ID}:user/bob",
)
CAROL_TEMPORARY = Principal(
    access_key_id="ASIAEXAMPLECAROL0003",
    secret_access_key="carol-secret-access-key-000000000000000000",
    arn=f"arn:aws:iam::{ACCOUNT_ID}:user/carol",
    session_token="carol-session-token-FwoGZXIvYXdzEBYaDH0000000000",
    expiration=datetime(2100, 1, 1, tzinfo=UTC),
)
DAVE_EXPIRED = Principal(
    access_key_id="ASIAEXAMPLEDAVE00004",
    secret_access_key="dave-secret-access-key-0000000000000000000",
    arn=f"arn:aws:iam::{ACCOUNT_ID}:user/dave",
    session_token="dave-session-token-FwoGZXIvYXdzEBYaDH00000000000",
    expiration=datetime(2020, 1, 1, tzinfo=UTC),
)
EXPIRED = "The security token included in the request is expired"

# Requests whose HTTP framing httptools refuses (uvicorn then calls send_400_response);
# FRAMING_MARKER is in several of them, and must never come back in an answer.
FRAMING_MARKER = b"<marker-from-the-client>"
BROKEN_FRAMING: dict[str, bytes] = {
    "garbage request line": b"GARBAGE " + FRAMING_MARKER + b" NOT-HTTP\r\n\r\n",
    "TLS hello on the plain port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32,
    "header line without a colon": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + FRAMING_MARKER + b"\r\n\r\n"
    ),
    "Content-Length abc": b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    "two Content-Lengths": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    ),
    "Content-Length and chunked Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "unknown Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: "
        + FRAMING_MARKER
        + b"\r\n\r\n{}"
    ),
    "chunk size not hexadecimal": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n"
    ),
}


def send_until_closed(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read everything the server answers until
    it closes the connection (a socket timeout fails the test if it never does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_SECONDS) as sock:
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the server may answer and close before reading it all
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def exchange(port: int, data: bytes, piece_bytes: int | None = None) -> bytes:
    """Send ``data`` (in pieces of ``piece_bytes``, each its own TCP segment, if given)
    and read until the server closes the connection. The server may refuse before it
    has read everything: a failed send ends sending, a reset ends reading."""
    with socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT_SECONDS) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        step = piece_bytes or len(data)
        with suppress(BrokenPipeError, ConnectionResetError):
            for offset in range(0, len(data), step):
                sock.sendall(data[offset : offset + step])
                if piece_bytes is not None:
                    time.sleep(0.001)
        received = b""
        with suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        return received


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class JavaScriptSdk:
    """node, and a directory whose node_modules holds @aws-sdk/client-secrets-manager
    (the ``javascript_sdk`` fixture)."""

    node: str
    directory: Path


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    database: Path
    credentials: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, principal: Principal = ALICE, **config: Any) -> Any:
        """A boto3 Secrets Manager client signed as ``principal``; no retries, so a
        refused call is seen once."""
        return boto3.client(
            "secretsmanager",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=principal.access_key_id,
            aws_secret_access_key=principal.secret_access_key,
            aws_session_token=principal.session_token,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    def post(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        principal: Principal | None = ALICE,
        signed_at: datetime | None = None,
        body_sent: bytes | None = None,
        session: requests.Session | None = None,
        path: str = "/",
        unsigned: frozenset[str] = frozenset(),
    ) -> requests.Response:
        """A raw POST /, signed with botocore's SigV4 (unless ``principal`` is None),
        leaving the ``unsigned`` headers out of the signature; ``body_sent`` replaces
        the body after signing (a tampered request)."""
        request = AWSRequest(method="POST", url=self.url + path, data=body, headers=dict(headers))
        if principal is not None:
            sign(request, principal, signed_at, unsigned=unsigned)
        prepared = request.prepare()
        sender = session or requests
        return sender.post(
            prepared.url,
            data=prepared.body if body_sent is None else body_sent,
            headers=dict(prepared.headers),
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    def call(self, operation: str, members: Mapping[str, Any], **options: Any) -> requests.Response:
        """A raw signed call: JSON body, the Secrets Manager target and content type."""
        return self.post(json.dumps(members).encode(), target_headers(operation), **options)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop_cleanly(self) -> None:
        """Stop, and require a graceful exit with no traceback in the log."""
        assert self.stop() in (0, -signal.SIGTERM), self.log()
        assert "Traceback" not in self.log()

    def stop(self) -> int:
        """SIGTERM, then wait for the graceful shutdown; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the server did not stop within the grace period") from None


def target_headers(operation: str) -> dict[str, str]:
    return {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"secretsmanager.{operation}",
    }


class SelectiveSigner(SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's signer leaving some headers out of the signature, as minimal signers
    (curl's ``--aws-sigv4``, hand-written clients) do: they are sent unsigned."""

    def __init__(
        self, credentials: Credentials, service: str, region: str, unsigned: frozenset[str]
    ) -> None:
        super().__init__(credentials, service, region)
        self.unsigned = unsigned

    def headers_to_sign(self, request: AWSRequest) -> Any:
        selected = super().headers_to_sign(request)
        for name in self.unsigned:
            del selected[name]
        return selected


def sign(
    request: AWSRequest,
    principal: Principal,
    signed_at: datetime | None = None,
    *,
    service: str = "secretsmanager",
    region: str = REGION,
    unsigned: frozenset[str] = frozenset(),
) -> None:
    """botocore's SigV4, at ``signed_at`` (default: now), with the principal's
    session token if it has one, leaving the ``unsigned`` headers out."""
    credentials = Credentials(
        principal.access_key_id, principal.secret_access_key, principal.session_token
    )
    signer = SelectiveSigner(credentials, service, region, unsigned)
    if signed_at is None:
        signer.add_auth(request)
        return
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        signer.add_auth(request)


def serve_command(database: Path, port: int, credentials: Path | None) -> list[str]:
    command = [
        sys.executable,
        "-c",
        "import sys; from ledger.cli import main; sys.exit(main())",
        "serve",
        "--db",
        str(database),
        "--port",
        str(port),
        "--region",
        REGION,
        "--account-id",
        ACCOUNT_ID,
    ]
    if credentials is not None:
        command += ["--credentials", str(credentials)]
    return command


def start_server(
    directory: Path,
    *,
    principals: Sequence[Principal] = (ALICE, BOB),
    default_credentials: bool = False,
    options: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
) -> RunningServer:
    """A server on a free loopback port over ``directory/ledger.db``, ready to answer.

    Its principals come from ``directory/credentials.toml`` (written on first use),
    or with ``default_credentials`` from the file `serve` creates by itself;
    ``environment`` adds variables to the server's environment."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "ledger.db"
    credentials = directory / (
        "secretledger-credentials.toml" if default_credentials else "credentials.toml"
    )
    if not default_credentials and not credentials.exists():
        write_credentials_file(credentials, principals)
    port = free_port()
    log_path = directory / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *serve_command(database, port, None if default_credentials else credentials),
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env={**os.environ, **(environment or {}), "PYTHONUNBUFFERED": "1"},
        )
    server = RunningServer(process, port, database, credentials, log_path)
    wait_until_ready(server)
    return server


def wait_until_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    server.process.kill()
    raise AssertionError(f"the server did not listen within {READY_TIMEOUT_SECONDS} s")


def open_ledger(server: RunningServer) -> Secrets:
    return Secrets(str(server.database), region=REGION, account_id=ACCOUNT_ID)


def recorded_calls(server: RunningServer) -> list[ApiCall.Recorded]:
    """Every `ApiCall.Recorded` event in the server's ledger, in log order."""
    return calls_recorded_in(open_ledger(server))


def calls_recorded_in(secrets: Secrets) -> list[ApiCall.Recorded]:
    """Every `ApiCall.Recorded` event in the ledger, in log order; closes ``secrets``."""
    try:
        notifications = secrets.recorder.select_notifications(
            start=0, limit=1_000_000, topics=[ApiCall.Recorded.TOPIC]
        )
        events = [secrets.mapper.to_domain_event(item) for item in notifications]
    finally:
        secrets.close()
    assert all(isinstance(event, ApiCall.Recorded) for event in events)
    return events


def calls_with_request_id(server: RunningServer, request_id: str) -> list[ApiCall.Recorded]:
    return [call for call in recorded_calls(server) if call.request["request_id"] == request_id]


def secret_event_count(server: RunningServer, arn: str) -> int:
    """How many events the `Secret` aggregate of ``arn`` has."""
    secrets = open_ledger(server)
    try:
        return len(list(secrets.events.get(secret_id_for_arn(arn))))
    finally:
        secrets.close()
