"""The ASGI endpoint in-process, driven message by message: the queue bound, the
shutdown hook, disconnects, unexpected failures, and the wire encoding."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from http_harness import ALICE, calls_recorded_in
from test_http_call_records import new_call

from ledger.api import Caller, SecretsManagerApi
from ledger.application import Secrets
from ledger.auth import Identity, Principals, ReceivedRequest, SignatureVerifier
from ledger.call_records import CallRecorder
from ledger.domain import ApiCall
from ledger.errors import SerializationException
from ledger.http import Endpoint, decode_body, secret_named_by, to_wire


class TrustingVerifier(SignatureVerifier):
    """Every request is alice's: these tests are about what happens after SigV4."""

    def verify(self, request: ReceivedRequest) -> Identity:
        return Identity(principal=ALICE, region="eu-west-1")


class FailingApi(SecretsManagerApi):
    """An API with a bug: it fails with a message that quotes a value."""

    def call(
        self, operation: str, request: Mapping[str, Any], caller: Caller | None = None
    ) -> dict[str, Any]:
        value = "".join(reversed("2retnuh"))  # built at run time, as a real value would be
        raise RuntimeError(f"leaked value: {value}")


@pytest.fixture
def secrets() -> Iterator[Secrets]:
    ledger = Secrets("memory:")
    yield ledger
    ledger.close()


def endpoint_over(
    secrets: Secrets, api_class: type[SecretsManagerApi] = SecretsManagerApi, **options: Any
) -> Endpoint:
    return Endpoint(api_class(secrets), TrustingVerifier(Principals.of([ALICE])), **options)


def drive(
    endpoint: Endpoint,
    chunks: list[bytes],
    *,
    target: str = "secretsmanager.ListSecrets",
    disconnect: bool = False,
    sent: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One HTTP request through the ASGI interface; the messages the app sent (into
    ``sent``, if given, as they are sent)."""
    scope = request_scope(target)
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    if disconnect:
        incoming[-1] = {"type": "http.disconnect"}
    sent = [] if sent is None else sent

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(endpoint(scope, receive, send))
    return sent


def request_scope(target: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"x-amz-target", target.encode()), (b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
    }


def answer(sent: list[dict[str, Any]]) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"])


def test_a_call_is_answered_as_aws_json_with_a_request_id(secrets: Secrets) -> None:
    endpoint = endpoint_over(secrets)
    status, headers, body = answer(drive(endpoint, [b'{"MaxRes', b'ults": 5}']))
    assert (status, body) == (200, {"SecretList": []})
    assert headers[b"content-type"] == b"application/x-amz-json-1.1"
    assert headers[b"content-length"] == str(len(json.dumps(body))).encode()
    assert len(headers[b"x-amzn-requestid"]) == 36
    endpoint.close()


def test_calls_beyond_the_pending_bound_are_turned_away_as_retryable(secrets: Secrets) -> None:
    endpoint = endpoint_over(secrets, worker_threads=1, pending_calls_max=1)
    assert endpoint.admission.admit("192.0.2.9", "AKIAOTHER")  # one call already waiting
    status, _, body = answer(drive(endpoint, [b"{}"]))
    assert (status, body["__type"]) == (503, "ServiceUnavailable")
    endpoint.admission.release("192.0.2.9", "AKIAOTHER")
    assert answer(drive(endpoint, [b"{}"]))[0] == 200
    endpoint.close()


def test_one_source_takes_at_most_half_of_the_calls_in_progress(secrets: Secrets) -> None:
    endpoint = endpoint_over(secrets, worker_threads=1, pending_calls_max=4)
    source = "127.0.0.1"  # the client of `drive`
    for _ in range(2):
        assert endpoint.admission.admit(source, "AKIABUSY")
    status, _, body = answer(drive(endpoint, [b"{}"]))
    assert (status, body["__type"]) == (503, "ServiceUnavailable")
    assert endpoint.admission.admit("192.0.2.10", "AKIAQUIET")  # another source still gets in
    endpoint.admission.release(source, "AKIABUSY")
    assert answer(drive(endpoint, [b"{}"]))[0] == 200
    endpoint.close()


def test_a_client_that_leaves_mid_body_gets_nothing_and_costs_nothing(secrets: Secrets) -> None:
    endpoint = endpoint_over(secrets)
    assert drive(endpoint, [b'{"Max', b""], disconnect=True) == []
    assert endpoint.admission.calls == 0
    endpoint.close()


def test_an_oversized_body_is_drained_and_refused_with_413(secrets: Secrets) -> None:
    endpoint = endpoint_over(secrets, body_size_bytes_max=10, drain_size_bytes_max=100)
    status, headers, body = answer(drive(endpoint, [b"{" + b" " * 20, b"}"]))
    assert (status, body["__type"]) == (413, "RequestEntityTooLargeException")
    assert b"connection" not in headers
    status, headers, _ = answer(drive(endpoint, [b" " * 60, b" " * 60]))
    assert status == 413 and headers[b"connection"] == b"close"
    endpoint.close()


def test_a_bug_is_an_aws_shaped_500_logged_without_its_message(
    secrets: Secrets, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = endpoint_over(secrets, FailingApi)
    with caplog.at_level(logging.ERROR, logger="ledger.http"):
        status, _, body = answer(drive(endpoint, [b"{}"]))
    assert (status, body) == (
        500,
        {"__type": "InternalServiceError", "Message": "An error occurred on the server side."},
    )
    assert "RuntimeError" in caplog.text
    assert "hunter2" not in caplog.text
    endpoint.close()


class NoWorkerThreads:
    """An executor that fails the test if a call is handed to a worker thread."""

    def submit(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("a read went to a worker thread")

    def shutdown(self, *_: Any, **__: Any) -> None:
        pass


def loop_reading_endpoint(secrets: Secrets, recorder: CallRecorder) -> Endpoint:
    endpoint = endpoint_over(secrets, recorder=recorder, reads_on_event_loop=True)
    endpoint.executor = NoWorkerThreads()  # type: ignore[assignment]
    return endpoint


def test_a_read_on_the_event_loop_is_answered_once_its_record_is_committed(
    secrets: Secrets,
) -> None:
    SecretsManagerApi(secrets).call(
        "CreateSecret", {"Name": "db", "SecretString": "s3cret", "ClientRequestToken": "t" * 32}
    )
    sent: list[dict[str, Any]] = []
    sent_before_commit: list[int] = []

    def save(calls: Sequence[ApiCall]) -> None:
        secrets.save_call_records(calls)
        sent_before_commit.append(len(sent))

    endpoint = loop_reading_endpoint(secrets, CallRecorder(save))
    drive(endpoint, [b'{"SecretId": "db"}'], target="secretsmanager.GetSecretValue", sent=sent)
    assert sent_before_commit == [0]
    status, _, body = answer(sent)
    assert (status, body["SecretString"]) == (200, "s3cret")
    endpoint.close()


def test_a_read_whose_record_cannot_be_committed_is_refused_without_its_value(
    secrets: Secrets,
) -> None:
    SecretsManagerApi(secrets).call(
        "CreateSecret", {"Name": "db", "SecretString": "s3cret", "ClientRequestToken": "t" * 32}
    )

    def fail(calls: Sequence[ApiCall]) -> None:
        raise OperationalError("disk unavailable")

    endpoint = loop_reading_endpoint(secrets, CallRecorder(fail))
    sent = drive(endpoint, [b'{"SecretId": "db"}'], target="secretsmanager.GetSecretValue")
    status, _, body = answer(sent)
    assert (status, body) == (
        500,
        {"__type": "InternalServiceError", "Message": "The call could not be recorded; try again."},
    )
    assert b"s3cret" not in sent[1]["body"]
    endpoint.close()


def test_reads_go_to_worker_threads_while_the_record_backlog_is_full(secrets: Secrets) -> None:
    gate = threading.Event()
    recorder = CallRecorder(lambda calls: gate.wait(), asynchronous=True, backlog_max=1)
    endpoint = endpoint_over(secrets, recorder=recorder, reads_on_event_loop=True)
    assert endpoint._answers_reads_on_the_loop()
    recorder.enqueue(new_call())  # taken by the writer, stuck saving it
    while recorder.queue:
        time.sleep(0.01)
    recorder.enqueue(new_call())  # fills the backlog of one
    assert not endpoint._answers_reads_on_the_loop()
    gate.set()
    endpoint.close()


class ThreadNotingApi(SecretsManagerApi):
    """Notes the thread each call runs on."""

    threads: ClassVar[list[str]] = []

    def call(
        self, operation: str, request: Mapping[str, Any], caller: Caller | None = None
    ) -> dict[str, Any]:
        self.threads.append(f"{operation} {threading.current_thread().name}")
        return super().call(operation, request, caller)


def test_changes_run_on_the_writer_threads_and_reads_on_the_pool(secrets: Secrets) -> None:
    endpoint = endpoint_over(secrets, ThreadNotingApi)
    ThreadNotingApi.threads = []
    for number in range(3):
        body = json.dumps({"Name": f"s{number}", "ClientRequestToken": f"{number}" * 32})
        assert answer(drive(endpoint, [body.encode()], target="secretsmanager.CreateSecret"))[0]
    drive(endpoint, [b"{}"])
    writers = {name for name in ThreadNotingApi.threads if name.startswith("CreateSecret")}
    assert writers == {"CreateSecret ledger-write_0"}  # one writer thread unless told more
    assert ThreadNotingApi.threads[-1].startswith("ListSecrets ledger-call")
    endpoint.close()


class MeetingApi(SecretsManagerApi):
    """Each PutSecretValue waits, at most ``wait_seconds``, for ``meeting`` calls to be
    inside at the same time, and notes how many of those named each secret."""

    meeting: ClassVar[threading.Barrier]
    wait_seconds: ClassVar[float] = 2.0
    inside: ClassVar[Counter[str]] = Counter()
    most_inside: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def call(
        self, operation: str, request: Mapping[str, Any], caller: Caller | None = None
    ) -> dict[str, Any]:
        if operation != "PutSecretValue":
            return super().call(operation, request, caller)
        name = secret_named_by(request)
        with self.lock:
            self.inside[name] += 1
            self.most_inside[name] = max(self.most_inside[name], self.inside[name])
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.meeting.wait(timeout=self.wait_seconds)
            return super().call(operation, request, caller)
        finally:
            with self.lock:
                self.inside[name] -= 1


def put_body(secret_id: str, number: int) -> bytes:
    token = f"{number:032d}"
    members = {"SecretId": secret_id, "SecretString": "v", "ClientRequestToken": token}
    return json.dumps(members).encode()


def drive_together(endpoint: Endpoint, bodies: list[bytes]) -> list[int]:
    """The PutSecretValue calls of ``bodies``, each from its own thread; their statuses."""
    with ThreadPoolExecutor(len(bodies)) as clients:
        sent = clients.map(
            lambda body: drive(endpoint, [body], target="secretsmanager.PutSecretValue"),
            bodies,
        )
        return [answer(messages)[0] for messages in sent]


def test_changes_to_different_secrets_run_side_by_side_on_the_writer_threads(
    secrets: Secrets,
) -> None:
    endpoint = endpoint_over(secrets, MeetingApi, writer_threads=2)
    for name in ("db/one", "db/two"):
        drive(endpoint, [json.dumps({"Name": name}).encode()], target="secretsmanager.CreateSecret")
    MeetingApi.meeting = threading.Barrier(2)
    MeetingApi.wait_seconds = 5.0
    MeetingApi.most_inside = Counter()

    statuses = drive_together(endpoint, [put_body("db/one", 1), put_body("db/two", 2)])

    assert statuses == [200, 200]
    assert not MeetingApi.meeting.broken  # both were inside at once
    endpoint.close()


def test_changes_to_one_secret_run_one_at_a_time_whatever_names_it(secrets: Secrets) -> None:
    endpoint = endpoint_over(secrets, MeetingApi, writer_threads=4)
    created = drive(
        endpoint, [json.dumps({"Name": "db/hot"}).encode()], target="secretsmanager.CreateSecret"
    )
    arn = answer(created)[2]["ARN"]
    MeetingApi.meeting = threading.Barrier(8)  # never met: each waits alone
    MeetingApi.wait_seconds = 0.3
    MeetingApi.most_inside = Counter()
    names = ["db/hot", arn, "db/hot", arn]

    statuses = drive_together(endpoint, [put_body(name, n) for n, name in enumerate(names)])

    assert statuses == [200] * 4
    assert MeetingApi.most_inside == Counter({"db/hot": 1})
    endpoint.close()


@pytest.mark.parametrize(
    ("members", "name"),
    [
        ({"SecretId": "db/app"}, "db/app"),
        ({"Name": "db/app"}, "db/app"),
        (
            {"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db/app-AbC123"},
            "db/app",
        ),
        ({"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db/app"}, "db/app"),
        ({"SecretId": 7}, ""),
        ({}, ""),
    ],
)
def test_a_change_is_locked_by_the_name_of_the_secret_it_names(
    members: dict[str, Any], name: str
) -> None:
    assert secret_named_by(members) == name


def test_lifespan_shutdown_closes_the_ledger_once(secrets: Secrets) -> None:
    closed: list[str] = []
    endpoint = endpoint_over(secrets, on_close=lambda: closed.append("closed"))
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    asyncio.run(endpoint({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    endpoint.close()
    assert closed == ["closed"]


def test_timestamps_go_out_as_epoch_seconds_and_blobs_as_base64() -> None:
    moment = datetime(2025, 3, 19, 9, 20, 11, 482_913, tzinfo=UTC)
    assert to_wire({"CreatedDate": moment, "SecretBinary": b"\x00\xff", "List": [moment]}) == {
        "CreatedDate": 1742376011.483,
        "SecretBinary": "AP8=",
        "List": [1742376011.483],
    }


def test_secret_binary_arrives_as_bytes() -> None:
    encoded = base64.b64encode(b"\x00\x01\x02").decode()
    assert decode_body(json.dumps({"SecretBinary": encoded}).encode()) == {
        "SecretBinary": b"\x00\x01\x02"
    }
    assert decode_body(b"  ") == {}
    with pytest.raises(SerializationException):
        decode_body(b'{"SecretBinary": "@@@"}')


def test_a_body_that_never_arrives_times_out_and_closes_the_connection(
    secrets: Secrets,
) -> None:
    endpoint = endpoint_over(secrets, body_read_seconds_max=0.05)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"x-amz-target", b"secretsmanager.ListSecrets")],
        "client": None,
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(endpoint(scope, receive, send))
    status, headers, body = answer(sent)
    assert (status, body["__type"]) == (408, "RequestTimeoutException")
    assert headers[b"connection"] == b"close"
    endpoint.close()


# PostgreSQL, sole writer: reads answered on the event loop never wait for the database.


class CountingWorkers(ThreadPoolExecutor):
    """Worker threads that count the calls handed to them."""

    def __init__(self) -> None:
        super().__init__(2, thread_name_prefix="counted")
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


class CountingVerifier(TrustingVerifier):
    """Counts the requests verified."""

    def __init__(self, principals: Principals) -> None:
        super().__init__(principals)
        self.calls = 0

    def verify(self, request: ReceivedRequest) -> Identity:
        self.calls += 1
        return super().verify(request)


def postgres_reader(url: str, keyring: Path, *, asynchronous: bool) -> tuple[Endpoint, Secrets]:
    """A sole-writer server's endpoint over a ledger with secrets ``cold`` and ``warm``,
    written by another process (its cache holds neither yet); the ledger it reads, on
    which the thread that drives the endpoint must not wait."""
    writer = Secrets(url, keyring_path=keyring)
    for name in ("cold", "warm"):
        SecretsManagerApi(writer).call(
            "CreateSecret",
            {"Name": name, "SecretString": f"{name}-value", "ClientRequestToken": name * 8},
        )
    writer.close()
    secrets = Secrets(url, keyring_path=keyring)
    secrets.assume_sole_writer()
    recorder = CallRecorder(secrets.save_call_records, asynchronous=asynchronous)
    endpoint = Endpoint(
        SecretsManagerApi(secrets),
        CountingVerifier(Principals.of([ALICE])),
        recorder=recorder,
        reads_on_event_loop=True,
        reads_off_the_loop=frozenset({"ListSecrets"}),
    )
    endpoint.executor = CountingWorkers()
    return endpoint, secrets


def get_value(endpoint: Endpoint, name: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"SecretId": name}).encode()
    status, _, answered = answer(drive(endpoint, [body], target="secretsmanager.GetSecretValue"))
    return status, answered


@pytest.mark.postgres
def test_a_read_that_needs_the_database_runs_again_on_a_worker_thread_once(
    postgres_database_url: str, tmp_path: Path
) -> None:
    keyring = tmp_path / "shared.keyring"
    endpoint, secrets = postgres_reader(postgres_database_url, keyring, asynchronous=False)
    workers = endpoint.executor
    assert isinstance(workers, CountingWorkers)
    first, second = get_value(endpoint, "cold"), get_value(endpoint, "cold")
    assert first[0] == second[0] == 200
    assert first[1]["SecretString"] == second[1]["SecretString"] == "cold-value"
    assert workers.calls == 1  # the first read: not cached; the second: on the loop
    status, _, listed = answer(drive(endpoint, [b"{}"], target="secretsmanager.ListSecrets"))
    assert status == 200 and len(listed["SecretList"]) == 2
    assert workers.calls == 2  # every ListSecrets reads the log's end
    verifier = endpoint.verifier
    assert isinstance(verifier, CountingVerifier)
    assert verifier.calls == 4  # the cold read twice; ListSecrets not refused first
    endpoint.close()  # on this thread, as at lifespan shutdown: it may wait now
    assert secrets.recorder.max_notification_id() is not None
    secrets.close()
    reads = calls_recorded_in(Secrets(postgres_database_url, keyring_path=keyring))
    assert [event.request["operation"] for event in reads] == [
        "GetSecretValue",
        "GetSecretValue",
        "ListSecrets",
    ]  # the refused attempts left no record


@pytest.mark.postgres
def test_a_silent_database_holds_the_read_that_needs_it_not_the_cached_ones(
    postgres_database_url: str, tmp_path: Path
) -> None:
    keyring = tmp_path / "shared.keyring"
    endpoint, secrets = postgres_reader(postgres_database_url, keyring, asynchronous=True)
    assert get_value(endpoint, "warm")[0] == 200  # now cached, with its data key
    lock_seconds = 3.0
    locked = threading.Event()

    def hold_the_events_table() -> None:
        with psycopg.connect(postgres_database_url) as connection:
            table = secrets.recorder.events_table_name
            connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            time.sleep(lock_seconds)

    holder = threading.Thread(target=hold_the_events_table)
    holder.start()
    assert locked.wait(10)
    answered_after: dict[str, float] = {}

    async def read(name: str, started: float) -> None:
        body = json.dumps({"SecretId": name}).encode()
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = request_scope("secretsmanager.GetSecretValue")
        await endpoint(scope, receive, send)
        assert answer(sent)[0] == 200
        answered_after[name] = time.monotonic() - started

    async def both() -> None:
        started = time.monotonic()
        cold = asyncio.create_task(read("cold", started))
        await asyncio.sleep(0.1)  # the cold read is waiting for the lock by now
        await read("warm", started)
        await cold

    asyncio.run(both())
    holder.join()
    assert answered_after["warm"] < 1.0
    assert answered_after["cold"] >= lock_seconds - 0.5
    endpoint.close()
    secrets.close()
