"""Group commit of `ApiCall` records: the records of concurrent calls share one save.

A server records every call that changes no secret (reads, failures, replays,
denials) as an `ApiCall` event, and a read is recorded before its value is
answered. One save per record means one durable commit (an fsync on SQLite) per
read, and SQLite commits one at a time, so concurrent readers queue behind each
other's fsyncs. `CallRecorder` batches them, in one of two modes:

* **durable** (the default): `record()` returns once the record is committed.
  The first caller to find no commit in progress commits every record queued so
  far, its own included (leader and followers, as databases group-commit their
  logs); callers arriving meanwhile wait and are committed together by the next
  leader. A single caller pays one commit, as without the recorder; concurrent
  callers share commits. If the storage fails, every call of that batch fails:
  no answer leaves without its record. Waits are bounded by the save's own bound
  (the storage's lock timeout).
* **asynchronous**: `record()` queues the record and returns; a writer thread
  commits what is queued, continuously. What a crash can lose is bounded: the
  records queued and not yet committed, never more than ``backlog_max`` (256 by
  default), in practice those of the last commit interval (a millisecond or so).
  When the backlog is full, `record()` waits up to ``wait_seconds_max`` and then
  raises, so the call fails rather than being answered unrecorded; a writer that
  cannot save retries with backoff, so reads fail closed while storage is down.
  `flush()` waits for everything queued so far; the endpoint flushes before each
  call that may change a secret, so the log order of one client's calls is the
  order in which they were answered.

In both modes a batch that fails for another reason than the storage (a record
the transcoder cannot encode, a duplicate id) is saved again record by record,
so one bad record never takes its neighbours with it (rule IL-5 of
docs/limits.md): the records that fail alone are dropped, counted in
``dropped_count`` and logged by error type only, never by content; in durable
mode the call of a dropped record fails. (`ledger.bounds` keeps every record
the API makes encodable; this is the second line.)

`close()` commits what is queued (asynchronous mode: with bounded retries,
logging the count of any records lost, never their content) and stops the writer.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import ConnectionPoolClosedError, InterfaceError, OperationalError

from ledger.domain import ApiCall

logger = logging.getLogger(__name__)

BACKLOG_MAX_DEFAULT = 256
BATCH_SIZE_MAX = 256
WAIT_SECONDS_MAX_DEFAULT = 5.0
RETRY_BACKOFF_SECONDS_FIRST = 0.01
RETRY_BACKOFF_SECONDS_MAX = 1.0
CLOSING_ATTEMPTS_MAX = 5


class RecorderUnavailable(Exception):
    """The record could not be accepted (closed, or the backlog stayed full)."""


@dataclass
class PendingRecord:
    """``error``: why its call must fail (durable mode), or why a flush must.
    ``dropped``: the record could not be saved even alone, and is not kept."""

    call: ApiCall
    done: bool = False
    error: BaseException | None = None
    dropped: bool = False


def is_storage_failure(error: BaseException | None) -> bool:
    """A failure of the database (unreachable, locked, closed), not of the records."""
    return isinstance(error, OperationalError | InterfaceError | ConnectionPoolClosedError)


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
        self.writer: threading.Thread | None = None
        if asynchronous:
            self.writer = threading.Thread(
                target=self._write_continuously, name="call-records", daemon=True
            )
            self.writer.start()

    def record(self, call: ApiCall) -> None:
        """Durable mode: returns once committed (raises the save's error). Asynchronous
        mode: returns once queued (raises RecorderUnavailable if it cannot queue)."""
        pending = PendingRecord(call)
        with self.condition:
            if self.closed:
                raise RecorderUnavailable("the call recorder is closed")
            if self.asynchronous:
                has_room = self.condition.wait_for(
                    lambda: len(self.queue) < self.backlog_max or self.closed,
                    timeout=self.wait_seconds_max,
                )
                if not has_room or self.closed:
                    raise RecorderUnavailable("the call-record backlog stayed full")
                self.queue.append(pending)
                self.condition.notify_all()
                return
            self.queue.append(pending)
            self._lead_or_follow(pending)
        if pending.error is not None:
            raise RecorderUnavailable("the call record could not be saved") from pending.error

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
        if self.writer is not None:
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
            pending.done = True
            pending.error = error
        self.condition.notify_all()

    def _drop(self, pending: PendingRecord, error: BaseException) -> None:
        pending.dropped = True
        self.dropped_count += 1
        logger.error(
            "dropped a call record that cannot be saved (%s); %d dropped since start",
            type(error).__name__,
            self.dropped_count,
        )

    # Durable mode: leader and followers

    def _lead_or_follow(self, pending: PendingRecord) -> None:
        """With the condition held: until ``pending`` is done, commit the queue when no
        commit is in progress, otherwise wait for the one in progress. The wait is
        bounded by the save's own bound (the storage's lock timeout)."""
        while not pending.done:
            if self.in_flight:
                self.condition.wait()
            else:
                self._finish(*self._commit_queued())

    # Asynchronous mode: one writer thread

    def _write_continuously(self) -> None:
        backoff_seconds = RETRY_BACKOFF_SECONDS_FIRST
        closing_attempts = 0
        with self.condition:
            while True:
                self.condition.wait_for(lambda: bool(self.queue) or self.closed)
                if not self.queue:
                    return
                batch, errors = self._commit_queued()
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

    def _give_up(self) -> None:
        lost = list(self.queue)
        self.queue.clear()
        gone = RecorderUnavailable("the call record could not be saved")
        self._finish(lost, [gone] * len(lost))
        logger.error("closing: %d call record(s) could not be saved and are lost", len(lost))
