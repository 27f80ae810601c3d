"""Group commit of call records: concurrent calls share commits, no answer leaves
without its record (durable mode), and the asynchronous mode keeps its bound on
what could be lost and fails closed when storage is down."""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventsourcing.persistence import OperationalError
from http_harness import RunningServer, open_ledger, start_server

from ledger import call_records
from ledger.application import Secrets
from ledger.call_records import CallRecorder, RecorderUnavailable
from ledger.domain import ApiCall, RequestContext

THREADS = 10
SLOW_SAVE_SECONDS = 0.05


def new_call(parameters: dict[str, object] | None = None) -> ApiCall:
    """A call record; ``parameters`` bypass the API's bounds (a record it cannot make)."""
    context = RequestContext(
        request_id=str(uuid.uuid4()),
        principal_arn="arn:aws:iam::111122223333:user/alice",
        access_key_id="AKIAEXAMPLEALICE0001",
        source_ip="127.0.0.1",
        user_agent="test",
        region="eu-west-1",
        account_id="111122223333",
        operation="GetSecretValue",
        parameters=parameters or {},
    )
    return ApiCall.record(request=context, read_only=True, now=datetime.now(UTC), resources=[])


def unencodable_call() -> ApiCall:
    return new_call({"maxResults": 2**70})


class Storage:
    """A stand-in for ``secrets.save``: remembers batches, can be slow or failing."""

    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.batches: list[list[ApiCall]] = []
        self.delay_seconds = delay_seconds
        self.failures_left = 0
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def save(self, calls: Sequence[ApiCall]) -> None:
        self.gate.wait()
        time.sleep(self.delay_seconds)
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                raise OperationalError("disk unavailable")
            self.batches.append(list(calls))

    def saved(self) -> list[ApiCall]:
        return [call for batch in self.batches for call in batch]


def in_parallel(action: Callable[[ApiCall], None], calls: list[ApiCall]) -> list[BaseException]:
    def attempt(call: ApiCall) -> BaseException | None:
        try:
            action(call)
        except BaseException as error:
            return error
        return None

    with ThreadPoolExecutor(len(calls)) as pool:
        return [error for error in pool.map(attempt, calls) if error is not None]


def test_a_lone_durable_record_is_saved_before_record_returns() -> None:
    storage = Storage()
    recorder = CallRecorder(storage.save)
    call = new_call()
    recorder.record(call)
    assert storage.batches == [[call]]
    recorder.close()


def test_concurrent_durable_records_share_commits_and_each_is_saved_once() -> None:
    storage = Storage(delay_seconds=SLOW_SAVE_SECONDS)
    recorder = CallRecorder(storage.save)
    calls = [new_call() for _ in range(THREADS)]
    assert in_parallel(recorder.record, calls) == []
    assert sorted(id(call) for call in storage.saved()) == sorted(id(call) for call in calls)
    assert len(storage.batches) < THREADS, "callers arriving during a commit share the next"
    recorder.close()


def test_when_a_durable_commit_fails_every_call_of_the_batch_fails() -> None:
    storage = Storage()
    storage.failures_left = 1
    recorder = CallRecorder(storage.save)
    with pytest.raises(RecorderUnavailable) as raised:
        recorder.record(new_call())
    assert isinstance(raised.value.__cause__, OperationalError)
    assert storage.saved() == []
    later = new_call()
    recorder.record(later)
    assert storage.saved() == [later]
    recorder.close()


def test_an_asynchronous_record_returns_at_once_and_flush_waits_for_the_commit() -> None:
    storage = Storage()
    storage.gate.clear()
    recorder = CallRecorder(storage.save, asynchronous=True)
    call = new_call()
    recorder.record(call)
    assert storage.saved() == []
    storage.gate.set()
    recorder.flush()
    assert storage.saved() == [call]
    recorder.close()


def test_asynchronous_records_keep_their_order_across_batches() -> None:
    storage = Storage(delay_seconds=0.005)
    recorder = CallRecorder(storage.save, asynchronous=True)
    calls = [new_call() for _ in range(50)]
    for call in calls:
        recorder.record(call)
    recorder.close()
    assert storage.saved() == calls


def test_a_full_backlog_refuses_new_records_instead_of_answering_unrecorded() -> None:
    storage = Storage()
    storage.gate.clear()
    recorder = CallRecorder(storage.save, asynchronous=True, backlog_max=2, wait_seconds_max=0.1)
    recorder.record(new_call())  # taken by the writer, which is now stuck saving it
    time.sleep(0.05)
    recorder.record(new_call())
    recorder.record(new_call())
    with pytest.raises(RecorderUnavailable):
        recorder.record(new_call())
    storage.gate.set()
    recorder.close()
    assert len(storage.saved()) == 3


def test_the_writer_retries_until_storage_is_back_and_loses_nothing() -> None:
    storage = Storage()
    storage.failures_left = 3
    recorder = CallRecorder(storage.save, asynchronous=True)
    calls = [new_call() for _ in range(5)]
    for call in calls:
        recorder.record(call)
    recorder.flush()
    assert storage.saved() == calls
    recorder.close()


def test_closing_with_storage_down_gives_up_after_bounded_attempts_and_says_how_many(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = Storage()
    storage.failures_left = 1_000
    recorder = CallRecorder(storage.save, asynchronous=True)
    for _ in range(3):
        recorder.record(new_call())
    with caplog.at_level(logging.ERROR, logger="ledger.call_records"):
        recorder.close()
    assert "3 call record(s) could not be saved and are lost" in caplog.text
    with pytest.raises(RecorderUnavailable):
        recorder.record(new_call())


class GatedLedger:
    """A real ledger's save (the msgpack transcoder included), held at a gate so that
    records queue up behind the first commit and share the next one."""

    def __init__(self) -> None:
        self.secrets = Secrets("memory:")
        self.gate = threading.Event()
        self.batch_sizes: list[int] = []

    def save(self, calls: Sequence[ApiCall]) -> None:
        self.gate.wait()
        self.batch_sizes.append(len(calls))
        self.secrets.save_call_records(calls)

    def saved_ids(self) -> set[uuid.UUID]:
        notifications = self.secrets.recorder.select_notifications(
            start=None, limit=1_000, topics=[ApiCall.Recorded.TOPIC]
        )
        return {notification.originator_id for notification in notifications}


def test_a_durable_batch_with_one_unencodable_record_saves_every_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = GatedLedger()
    recorder = CallRecorder(ledger.save)
    first, bad = new_call(), unencodable_call()
    neighbours = [new_call() for _ in range(THREADS)]
    leader = threading.Thread(target=recorder.record, args=(first,))
    leader.start()
    time.sleep(0.05)  # the leader is committing; the others queue behind it
    with (
        caplog.at_level(logging.ERROR, logger="ledger.call_records"),
        ThreadPoolExecutor(THREADS + 1) as pool,
    ):
        futures = [pool.submit(recorder.record, call) for call in [*neighbours, bad]]
        time.sleep(0.05)
        ledger.gate.set()
        leader.join()
        errors = [future.exception() for future in futures]
    assert errors[:-1] == [None] * THREADS, "no neighbour fails"
    assert isinstance(errors[-1], RecorderUnavailable), "the bad record's call fails"
    assert max(ledger.batch_sizes) > 1, "the bad record shared a batch"
    assert ledger.saved_ids() == {call.id for call in [first, *neighbours]}
    assert recorder.dropped_count == 1
    assert "dropped a call record that cannot be saved (TypeError)" in caplog.text
    assert str(2**70) not in caplog.text
    recorder.close()


def test_an_asynchronous_batch_drops_only_its_unencodable_record() -> None:
    ledger = GatedLedger()
    recorder = CallRecorder(ledger.save, asynchronous=True)
    calls = [new_call(), unencodable_call(), new_call()]
    for call in calls:
        recorder.record(call)
    ledger.gate.set()
    recorder.flush()  # a dropped record is counted, and fails no later call
    assert ledger.saved_ids() == {calls[0].id, calls[2].id}
    assert recorder.dropped_count == 1
    later = new_call()
    recorder.record(later)
    recorder.close()
    assert later.id in ledger.saved_ids()


def test_records_retried_after_a_storage_failure_are_all_saved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The storage fails inside the save (after the events were taken from the
    records): the retry must still save every record, not an empty batch."""
    ledger = GatedLedger()
    ledger.gate.set()
    insert_events = ledger.secrets.recorder.insert_events
    failures_left = [2]

    def failing_insert(*arguments: object, **options: object) -> object:
        if failures_left[0]:
            failures_left[0] -= 1
            raise OperationalError("database is locked")
        return insert_events(*arguments, **options)

    monkeypatch.setattr(ledger.secrets.recorder, "insert_events", failing_insert)
    recorder = CallRecorder(ledger.save, asynchronous=True)
    calls = [new_call() for _ in range(5)]
    for call in calls:
        recorder.record(call)
    recorder.flush()
    assert ledger.saved_ids() == {call.id for call in calls}
    assert recorder.dropped_count == 0
    recorder.close()


def test_a_closed_recorder_accepts_nothing() -> None:
    recorder = CallRecorder(Storage().save)
    recorder.close()
    with pytest.raises(RecorderUnavailable):
        recorder.record(new_call())


# --------------------------------------------------------------------------------------
# A server recording asynchronously
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_async_server_records_every_read_and_keeps_reads_before_later_writes(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path, options=["--call-records", "async"])
    try:
        client = server.client()
        client.create_secret(Name="async/secret", SecretString="one")
        read_ids = [
            client.get_secret_value(SecretId="async/secret")["ResponseMetadata"]["RequestId"]
            for _ in range(20)
        ]
        put = client.put_secret_value(SecretId="async/secret", SecretString="two")
    finally:
        assert server.stop() in (0, -signal.SIGTERM), server.log()
    order = log_positions(server)
    assert all(
        order[request_id] < order[put["ResponseMetadata"]["RequestId"]] for request_id in read_ids
    )


def log_positions(server: RunningServer) -> dict[str, int]:
    """The notification id of the first event of each request id."""
    secrets = open_ledger(server)
    try:
        notifications = secrets.recorder.select_notifications(start=0, limit=1_000_000)
        positions: dict[str, int] = {}
        for notification in notifications:
            event = secrets.mapper.to_domain_event(notification)
            positions.setdefault(event.request["request_id"], notification.id)
    finally:
        secrets.close()
    return positions


def test_the_writer_waits_for_the_records_of_the_calls_in_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three calls in progress: the first record waits for the other two, and the
    three share one commit."""
    monkeypatch.setattr(call_records, "LINGER_SECONDS_MAX", 5.0)
    storage = Storage()
    recorder = CallRecorder(storage.save)
    recorder.commit_with_calls_in_progress(lambda: 3)
    first = recorder.enqueue(new_call())
    time.sleep(0.05)
    assert not first.future.done()
    others = [recorder.enqueue(new_call()) for _ in range(2)]
    for pending in [first, *others]:
        pending.future.result(timeout=5)
    assert [len(batch) for batch in storage.batches] == [3]
    recorder.close()


def test_the_wait_for_calls_in_progress_is_bounded_and_a_lone_call_does_not_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(call_records, "LINGER_SECONDS_MAX", 0.1)
    storage = Storage()
    recorder = CallRecorder(storage.save)
    in_progress = [3]
    recorder.commit_with_calls_in_progress(lambda: in_progress[0])
    started = time.monotonic()
    recorder.record(new_call())  # the two others never come
    assert 0.1 <= time.monotonic() - started < 2
    in_progress[0] = 1
    started = time.monotonic()
    recorder.record(new_call())
    assert time.monotonic() - started < 0.05
    assert [len(batch) for batch in storage.batches] == [1, 1]
    recorder.close()


def test_a_writer_that_fails_unexpectedly_fails_the_waiting_calls_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = Storage()
    storage.gate.clear()
    recorder = CallRecorder(storage.save)
    first = recorder.enqueue(new_call())  # the writer is saving it, stuck at the gate
    while recorder.queue:
        time.sleep(0.01)
    second = recorder.enqueue(new_call())

    def broken() -> int:
        raise RuntimeError("a bug in the server's count")

    recorder.commit_with_calls_in_progress(broken)  # the writer's next look fails
    monkeypatch.setattr(threading, "excepthook", lambda arguments: None)
    storage.gate.set()
    recorder.writer.join(timeout=5)
    assert not recorder.writer.is_alive()
    assert first.future.result(timeout=5) is None
    with pytest.raises(RecorderUnavailable):
        second.future.result(timeout=5)
    with pytest.raises(RecorderUnavailable):
        recorder.record(new_call())
