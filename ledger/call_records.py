"""Group commit of `ApiCall` records: the records of concurrent calls share one save.

A server records every call that changes no secret (reads, failures, replays,
denials) as an `ApiCall` event, and a read is recorded before its value is
answered. One save per record means one durable commit (an fsync on SQLite) per
read, and SQLite commits one at a time, so concurrent readers would queue behind
each other's fsyncs. `CallRecorder` queues records and one writer thread commits
everything queued whenever it starts a commit, so records that arrive during one
commit share the next (as databases group-commit their logs). Two ways to wait:

* `enqueue()` queues a record and returns its `PendingRecord`, whose ``future``
  completes when the record is committed (or fails). The server's event loop
  answers reads itself (`ledger.http`) and awaits the futures of the records a
  call made before answering it, so no thread waits for the commit.
* `record()` waits as its mode says: **durable** (the default) returns once the
  record is committed; **asynchronous** returns once it is queued.

Durable: if the storage fails, every call of that batch fails: no answer leaves
without its record. Waits are bounded by the save's own bound (the storage's lock
timeout). Asynchronous: what a crash can lose is bounded: the records queued and
not yet committed, never more than ``backlog_max`` (256 by default), in practice
those of the last commit interval (a millisecond or so). When the backlog is
full, `record()` waits up to ``wait_seconds_max`` and then raises, so the call
fails rather than being answered unrecorded (`enqueue()` raises at once; the
event loop asks `has_room()` first and otherwise hands the call to a worker
thread); a writer that cannot save retries with backoff, so reads fail closed
while storage is down. `flush()` waits for everything queued so far; the endpoint
flushes before each call that may change a secret, so the log order of one
client's calls is the order in which they were answered.

In both modes a batch that fails for another reason than the storage (a record
the transcoder cannot encode, a duplicate id) is saved again record by record,
so one bad record never takes its neighbours with it (rule IL-5 of
docs/limits.md): the records that fail alone are dropped, counted in
``dropped_count`` and logged by error type only, never by content; in durable
mode the call of a dropped record fails. (`ledger.bounds` keeps every record
the API makes encodable; this is the second line.)

A server tells the recorder how many calls are in progress
(`commit_with_calls_in_progress`): the writer then waits, at most 0.2 ms, while
fewer records are queued than that, so that calls answered together share one
commit instead of the first paying a commit alone (with four clients reading,
nearly every commit then holds four records instead of about two). A single
caller never waits.

`close()` commits what is queued (asynchronous mode: with bounded retries,
logging the count of any records lost, never their content) and stops the writer.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from ledger.domain import ApiCall
from ledger.storage import is_storage_failure

logger = logging.getLogger(__name__)

BACKLOG_MAX_DEFAULT = 256
BATCH_SIZE_MAX = 256
WAIT_SECONDS_MAX_DEFAULT = 5.0
RETRY_BACKOFF_SECONDS_FIRST = 0.01
RETRY_BACKOFF_SECONDS_MAX = 1.0
CLOSING_ATTEMPTS_MAX = 5
LINGER_SECONDS_MAX = 0.0002


class RecorderUnavailable(Exception):
    """The record could not be accepted (closed, or the backlog stayed full)."""


@dataclass
class PendingRecord:
    """``error``: why its call must fail (durable mode), or why a flush must.
    ``dropped``: the record could not be saved even alone, and is not kept.
    ``future``: completes once the record is settled: None, or RecorderUnavailable
    (durable mode)."""

    call: ApiCall
    error: BaseException | None = None
    dropped: bool = False
    future: Future[None] = field(default_factory=Future)

    @property
    def done(self) -> bool:
        return self.future.done()


class CallRecorder:
    """Saves `ApiCall` records in batches with ``save(calls)`` (one transaction)."""

    def __init__(
        self,
        save: Callable[[Sequence[ApiCall]], object],
        *,
        asynchronous: bool = False,
        backlog_max: int = BACKLOG_MAX_DEFAULT,
        wait_seconds_max: float = WAIT_SECONDS_MAX_DEFAULT,
    ) -> None:
        assert backlog_max > 0 and wait_seconds_max > 0, "bounded, and able to accept"
        self.save = save
        self.asynchronous = asynchronous
        self.backlog_max = backlog_max
        self.wait_seconds_max = wait_seconds_max
        self.condition = threading.Condition()
        self.queue: deque[PendingRecord] = deque()
        self.in_flight: list[PendingRecord] = []
        self.dropped_count = 0
        self.closed = False
        self.calls_in_progress: Callable[[], int] | None = None
        self.writer = threading.Thread(target=self._write, name="call-records", daemon=True)
        self.writer.start()

    def record(self, call: ApiCall) -> None:
        """Durable mode: returns once committed (raises RecorderUnavailable if it was
        not). Asynchronous mode: returns once queued (raises RecorderUnavailable if
        it cannot queue within ``wait_seconds_max``)."""
        if self.asynchronous:
            with self.condition:
                self.condition.wait_for(
                    lambda: len(self.queue) < self.backlog_max or self.closed,
                    timeout=self.wait_seconds_max,
                )
                self._append(PendingRecord(call))
            return
        self.enqueue(call).future.result()

    def enqueue(self, call: ApiCall) -> PendingRecord:
        """Queue a record without waiting; its ``future`` tells when it is saved.
        RecorderUnavailable if the recorder is closed or the backlog is full."""
        pending = PendingRecord(call)
        with self.condition:
            self._append(pending)
        return pending

    def commit_with_calls_in_progress(self, calls_in_progress: Callable[[], int]) -> None:
        """Let the writer wait briefly for the records of the calls in progress (as
        the server counts them) before it commits (`_linger`)."""
        self.calls_in_progress = calls_in_progress

    def has_room(self) -> bool:
        """Whether `enqueue` would accept a record now (asynchronous mode only can
        be full: a durable caller waits for its record, so durable queues stay short)."""
        return not self.asynchronous or len(self.queue) < self.backlog_max

    def _append(self, pending: PendingRecord) -> None:
        if self.closed:
            raise RecorderUnavailable("the call recorder is closed")
        if self.asynchronous and len(self.queue) >= self.backlog_max:
            raise RecorderUnavailable("the call-record backlog stayed full")
        self.queue.append(pending)
        self.condition.notify_all()

    def flush(self) -> None:
        """Make the record of every call answered so far durable. Nothing to do in
        durable mode (a call is answered after its record is committed); in
        asynchronous mode, wait for the queue, raising RecorderUnavailable if that
        takes longer than ``wait_seconds_max`` or a record was lost."""
        if not self.asynchronous:
            return
        with self.condition:
            outstanding = [*self.in_flight, *self.queue]
            if not outstanding:
                return
            last = outstanding[-1]
            if not self.condition.wait_for(lambda: last.done, timeout=self.wait_seconds_max):
                raise RecorderUnavailable("the call records were not saved in time")
            if last.error is not None and not last.dropped:  # a dropped one is counted
                raise RecorderUnavailable("a call record could not be saved")

    def close(self) -> None:
        """Commit what is queued, then accept nothing more."""
        with self.condition:
            if self.closed:
                return
            self.closed = True
            self.condition.notify_all()
        self.writer.join()

    # Both modes

    def _commit_queued(self) -> tuple[list[PendingRecord], list[BaseException | None]]:
        """With the condition held and no commit in progress: save up to a batch of
        queued records in one transaction, the condition released meanwhile; each
        record's error (None: saved). A batch that fails for another reason than the
        storage is saved again record by record."""
        assert not self.in_flight, "one commit at a time"
        batch = [self.queue.popleft() for _ in range(min(len(self.queue), BATCH_SIZE_MAX))]
        self.in_flight = batch
        self.condition.release()
        try:
            errors = self._save_batch(batch)
        finally:
            self.condition.acquire()
            self.in_flight = []
        assert len(errors) == len(batch), "one outcome per record"
        for pending, error in zip(batch, errors, strict=True):
            if error is not None and not is_storage_failure(error):
                self._drop(pending, error)
        return batch, errors

    def _save_batch(self, batch: list[PendingRecord]) -> list[BaseException | None]:
        try:
            self.save([pending.call for pending in batch])
        except Exception as error:  # the caller decides: report it, or retry
            if len(batch) == 1 or is_storage_failure(error):
                return [error] * len(batch)
        else:
            return [None] * len(batch)
        return [self._save_alone(pending) for pending in batch]

    def _save_alone(self, pending: PendingRecord) -> BaseException | None:
        try:
            self.save([pending.call])
        except Exception as error:
            return error
        return None

    def _finish(self, batch: list[PendingRecord], errors: list[BaseException | None]) -> None:
        for pending, error in zip(batch, errors, strict=True):
            pending.error = error
            if error is None or (self.asynchronous and pending.dropped):
                pending.future.set_result(None)  # asynchronous: answered long ago
            else:
                unsaved = RecorderUnavailable("the call record could not be saved")
                unsaved.__cause__ = error
                pending.future.set_exception(unsaved)
        self.condition.notify_all()

    def _drop(self, pending: PendingRecord, error: BaseException) -> None:
        pending.dropped = True
        self.dropped_count += 1
        logger.error(
            "dropped a call record that cannot be saved (%s); %d dropped since start",
            type(error).__name__,
            self.dropped_count,
        )

    # The writer thread

    def _write(self) -> None:
        """The writer's loop; should it ever fail (a bug), the recorder closes and
        every record waiting fails, rather than leaving its caller waiting forever."""
        try:
            self._write_continuously()
        except BaseException as error:
            logger.critical("the call-record writer stopped (%s)", type(error).__name__)
            with self.condition:
                self.closed = True
                stranded = [*self.in_flight, *self.queue]
                self.in_flight, self.queue = [], deque()
                self._finish(stranded, [error] * len(stranded))
            raise

    def _write_continuously(self) -> None:
        backoff_seconds = RETRY_BACKOFF_SECONDS_FIRST
        closing_attempts = 0
        with self.condition:
            while True:
                self.condition.wait_for(lambda: bool(self.queue) or self.closed)
                if not self.queue:
                    return
                self._linger()
                batch, errors = self._commit_queued()
                if not self.asynchronous:  # durable: the calls of a failed batch fail
                    self._finish(batch, errors)
                    continue
                outcomes = list(zip(batch, errors, strict=True))
                retried = [pending for pending, error in outcomes if is_storage_failure(error)]
                settled = [
                    (pending, error) for pending, error in outcomes if not is_storage_failure(error)
                ]
                self._finish([pending for pending, _ in settled], [error for _, error in settled])
                if not retried:
                    backoff_seconds = RETRY_BACKOFF_SECONDS_FIRST
                    continue
                error = next(error for error in errors if is_storage_failure(error))
                self.queue.extendleft(reversed(retried))  # retried first, in order
                if self.closed:
                    closing_attempts += 1
                    if closing_attempts >= CLOSING_ATTEMPTS_MAX:
                        self._give_up()
                        return
                logger.error(
                    "could not save %d call record(s) (%s); retrying",
                    len(self.queue),
                    type(error).__name__,
                )
                self.condition.wait(backoff_seconds)
                backoff_seconds = min(backoff_seconds * 2, RETRY_BACKOFF_SECONDS_MAX)

    def _linger(self) -> None:
        """With the condition held: wait, at most ``LINGER_SECONDS_MAX``, while fewer
        records are queued than calls are in progress, so that the records of calls
        answered together share one commit (one caller alone never waits)."""
        calls_in_progress = self.calls_in_progress
        if calls_in_progress is None or self.closed:
            return
        self.condition.wait_for(
            lambda: len(self.queue) >= calls_in_progress() or self.closed,
            timeout=LINGER_SECONDS_MAX,
        )

    def _give_up(self) -> None:
        lost = list(self.queue)
        self.queue.clear()
        gone = RecorderUnavailable("the call record could not be saved")
        self._finish(lost, [gone] * len(lost))
        logger.error("closing: %d call record(s) could not be saved and are lost", len(lost))
