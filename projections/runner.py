"""Following the log: the projection runner, exactly once and resumable.

Each projection has a row in ``projection_tracking`` (name, position, version). A
batch of log entries is applied to a projection and its position moved **in the same
transaction**, after locking the tracking table and re-reading the positions inside
that transaction: a crash loses the whole batch or nothing, and two runners on the
same database (``serve`` and a CLI query catching up, or two projection processes)
never apply an entry twice. Entries are read in pages with "id greater than the last
position" (PostgreSQL ids have gaps), on the log's own connection, one page alive at
a time.

A long catch-up (a rebuild) applies up to 20,000 entries per transaction, to commit
less often; the view store's write lock is held for the whole transaction (reading
and decoding its pages included: about half a second), so writers to a SQLite
ledger wait at most that long. With a pipelined store (``projections.writer``, what
``rebuild`` uses) the writer process holds it, for as long, and checks the positions
instead of this process re-reading them.
Automatic garbage collection pauses while a transaction is applied (see
:func:`collection_paused`).

Following: PostgreSQL wakes the runner with LISTEN on the channel the ledger's
recorder NOTIFYs on every insert (a dedicated connection, re-opened if it fails, and a
periodic poll in case a notification is lost), so a projection process on another
machine keeps up with any number of writers. SQLite (no notifications) and the
in-memory ledger are polled (``SELECT max(rowid)``, every 50 ms by default).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter
from typing import Any, Final, Protocol

from projections.base import Projection
from projections.log import Entry, LogReader
from projections.store import ExpectationFailed, ViewCursor, ViewStore

logger = logging.getLogger(__name__)

TRACKING_TABLE: Final = "projection_tracking"
PAGE_SIZE_DEFAULT: Final = 1_000
TRANSACTION_EVENTS_MAX_DEFAULT: Final = 20_000
POLL_INTERVAL_SECONDS_DEFAULT: Final = 0.05
LISTEN_POLL_INTERVAL_SECONDS: Final = 1.0
LISTEN_RETRY_SECONDS: Final = 1.0
STOP_CHECK_SECONDS: Final = 0.5
LISTEN_CONNECT_TIMEOUT_SECONDS: Final = 10
FAILURE_BACKOFF_SECONDS_MAX: Final = 5.0
FAILURE_BACKOFF_SECONDS_BASE: Final = 0.1
STOP_TIMEOUT_SECONDS_DEFAULT: Final = 10.0
# Each failed expectation means another runner moved a projection (say ``serve``
# following the log while ``replay`` rebuilds): progress made elsewhere. The bound
# only stops a runaway.
EXPECTATION_FAILURES_MAX: Final = 1_000

Progress = Callable[[int], None]


@contextmanager
def collection_paused() -> Iterator[None]:
    """Automatic garbage collection off while one transaction is applied (a bounded
    batch). Applying allocates many short-lived, acyclic objects (decoded events,
    rows): collections triggered meanwhile would find almost nothing to free, yet
    traverse every object of the page alive at that moment (a tenth of a rebuild's
    time). Cyclic garbage made meanwhile waits for the next automatic collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class ProjectionRunner:
    """Applies the log to a set of projections, page by page."""

    def __init__(
        self,
        log: LogReader,
        store: ViewStore,
        projections: Sequence[Projection],
        *,
        page_size: int = PAGE_SIZE_DEFAULT,
        transaction_events_max: int = TRANSACTION_EVENTS_MAX_DEFAULT,
    ) -> None:
        names = [projection.name for projection in projections]
        assert len(set(names)) == len(names), "projection names are unique"
        assert projections, "a runner runs at least one projection"
        assert 0 < page_size <= transaction_events_max, "a transaction holds whole pages"
        self.log = log
        self.store = store
        self.projections = list(projections)
        self.page_size = page_size
        self.transaction_events_max = transaction_events_max
        self._is_prepared = False
        # The positions this runner's last transaction wrote (with a pipelined store:
        # sent, and confirmed by the store's next answer).
        self._committed_positions: dict[str, int] = {}

    def projection(self, name: str) -> Projection:
        for projection in self.projections:
            if projection.name == name:
                return projection
        known = ", ".join(projection.name for projection in self.projections)
        msg = f"no projection named {name!r} (known: {known})"
        raise KeyError(msg)

    def prepare(self) -> None:
        """Create missing tables and tracking rows; rebuild from zero any projection
        whose stored version differs from its code's version."""
        with self._changing_schema() as cursor:
            for projection in self.projections:
                row = cursor.execute(
                    f"SELECT version FROM {TRACKING_TABLE} WHERE name = ?", (projection.name,)
                ).fetchone()
                if row is None or row[0] != projection.version:
                    self._reset(cursor, projection)
                for statement in projection.create_statements(self.store):
                    cursor.execute(statement)
                self._create_deferred_indexes(cursor, projection)
        self._is_prepared = True

    def _reset(self, cursor: ViewCursor, projection: Projection) -> None:
        """Drop the projection's views and tables and create its tables empty, without
        the deferred (query-only) indexes; its position goes back to zero."""
        projection.forget()
        for name in (*projection.views, *projection.tables, *projection.retired):
            self.store.drop(cursor, name)
        for statement in projection.create_statements(self.store):
            cursor.execute(statement)
        cursor.execute(
            f"INSERT INTO {TRACKING_TABLE} (name, position, version) VALUES (?, 0, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = 0, version = excluded.version",
            (projection.name, projection.version),
        )
        self._committed_positions = {}

    def positions(self) -> dict[str, int]:
        if not self._is_prepared:
            self.prepare()
        with self.store.read() as cursor:
            return self._positions(cursor)

    def _positions(self, cursor: ViewCursor) -> dict[str, int]:
        rows = cursor.execute(f"SELECT name, position FROM {TRACKING_TABLE}").fetchall()
        stored = {name: position for name, position in rows}
        missing = [
            projection.name for projection in self.projections if projection.name not in stored
        ]
        if missing:
            msg = f"projection tracking rows are missing for {missing}: run `secretledger replay`"
            raise RuntimeError(msg)
        return {projection.name: stored[projection.name] for projection in self.projections}

    def catch_up(self, *, until: int | None = None, progress: Progress | None = None) -> int:
        """Apply every entry up to ``until`` (default: the log's last position when
        called). Returns the lowest position of the projections afterwards."""
        target = self.log.last_position() if until is None else until
        for failures in range(EXPECTATION_FAILURES_MAX + 1):
            try:
                return self._catch_up(target, progress)
            except ExpectationFailed:
                logger.info("another runner moved a projection; going on from its position")
                self._forget_all()
                if failures == EXPECTATION_FAILURES_MAX:
                    raise
        raise AssertionError("unreachable")

    def _catch_up(self, target: int, progress: Progress | None) -> int:
        positions = self.positions()
        while True:
            start = min(positions.values())
            if start < target:
                positions = self._apply(target)
                reached = min(positions.values())
                if progress is not None:
                    progress(reached - start)
                if reached > start:
                    continue
            self.store.settle()
            return min(positions.values())

    def _apply(self, target: int) -> dict[str, int]:
        """One transaction: the positions read (and locked) inside it, then pages of
        entries applied to the projections that have not seen them, up to
        ``transaction_events_max`` entries, and the new positions written."""
        try:
            with self.store.write() as cursor, collection_paused():
                self.store.lock_tracking(cursor)
                positions = self._transaction_positions(cursor)
                self._apply_pages(cursor, positions, target)
        except BaseException:
            self._forget_all()
            raise
        self._committed_positions = dict(positions)
        return positions

    def _transaction_positions(self, cursor: ViewCursor) -> dict[str, int]:
        """The positions, inside the transaction. A pipelined store is not asked (the
        answer would wait for the previous commit): this runner's last positions are
        assumed, and the store checks them before applying anything after."""
        if self.store.pipelined and self._committed_positions:
            positions = dict(self._committed_positions)
            names = sorted(positions)
            cursor.expect(
                f"SELECT name, position FROM {TRACKING_TABLE} "
                f"WHERE name IN ({', '.join('?' * len(names))}) ORDER BY name",
                names,
                [(name, positions[name]) for name in names],
            )
            return positions
        positions = self._positions(cursor)
        self._forget_if_moved(positions)
        return positions

    def _apply_pages(self, cursor: ViewCursor, positions: dict[str, int], target: int) -> None:
        start = min(positions.values())
        applied = 0
        while applied < self.transaction_events_max and start < target:
            # Decoded page by page: only one page of events is alive at a time.
            page = self.log.read_after(start, self.page_size, stop=target)
            if not page:
                break
            self._apply_page(cursor, positions, page)
            applied += len(page)
            start = page[-1].position
            if len(page) < self.page_size:
                break
        for name, position in positions.items():
            cursor.execute(
                f"UPDATE {TRACKING_TABLE} SET position = ? WHERE name = ? AND position < ?",
                (position, name, position),
            )

    def _forget_if_moved(self, positions: dict[str, int]) -> None:
        """A projection's caches of its own rows are valid only if nobody else moved
        it since this runner's last commit (another runner, a replay elsewhere)."""
        for projection in self.projections:
            if positions[projection.name] != self._committed_positions.get(projection.name):
                projection.forget()

    def _forget_all(self) -> None:
        for projection in self.projections:
            projection.forget()
        self._committed_positions = {}

    def _apply_page(
        self, cursor: ViewCursor, positions: dict[str, int], page: Sequence[Entry]
    ) -> None:
        last = page[-1].position
        for projection in self.projections:
            position = positions[projection.name]
            if position >= last:
                continue
            first_new = bisect_right(page, position, key=attrgetter("position"))
            projection.process(cursor, page[first_new:])
            positions[projection.name] = last

    def rebuild(
        self, names: Sequence[str] | None = None, *, progress: Progress | None = None
    ) -> int:
        """Drop the named projections (default: all), then rebuild them from position
        zero, creating their query-only indexes at the end (one sort instead of random
        writes all along). Committed batch by batch, so an interrupted rebuild resumes
        (and ``prepare`` restores the indexes)."""
        selected = [self.projection(name) for name in names] if names else self.projections
        if not self._is_prepared:
            self.prepare()
        with self._changing_schema() as cursor:
            for projection in selected:
                self._reset(cursor, projection)
        position = self.catch_up(progress=progress)
        with self._changing_schema() as cursor:
            for projection in selected:
                self._create_deferred_indexes(cursor, projection)
        self.store.settle()
        return position

    @contextmanager
    def _changing_schema(self) -> Iterator[ViewCursor]:
        """A transaction that creates, drops or indexes views. It takes the schema lock,
        then the tracking lock that every runner transaction takes before touching a
        view: with one lock order, a rebuild's DDL and another runner's rows never
        wait for each other in a cycle (PostgreSQL would abort one as a deadlock)."""
        with self.store.write() as cursor:
            self.store.lock_schema(cursor)
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (name TEXT PRIMARY KEY, "
                "position BIGINT NOT NULL, version BIGINT NOT NULL)"
            )
            self.store.lock_tracking(cursor)
            yield cursor

    def _create_deferred_indexes(self, cursor: ViewCursor, projection: Projection) -> None:
        for statement in projection.deferred_statements(self.store):
            cursor.execute(statement)


class Waiter(Protocol):
    """Blocks until the log may have grown, or a timeout."""

    def listen(self) -> None:
        """Start listening (before a catch-up, so that no append goes unnoticed)."""

    def wait(self, timeout_seconds: float) -> None: ...

    def close(self) -> None: ...


class PollingWaiter:
    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    def listen(self) -> None:
        """Polling needs no connection."""

    def wait(self, timeout_seconds: float) -> None:
        self.stopping.wait(timeout_seconds)

    def close(self) -> None:
        """Nothing to release."""


class PostgresListenWaiter:
    """LISTEN on the ledger's channel on a dedicated connection. The runner calls
    ``listen()`` before each catch-up, so an append is either caught up or notified;
    a failed connection is closed, and re-opened at the next ``listen()`` (meanwhile
    the runner polls every second)."""

    def __init__(self, url: str, channel: str, stopping: threading.Event) -> None:
        self.url = url
        self.channel = channel
        self.stopping = stopping
        self._connection: Any = None

    def listen(self) -> None:
        import psycopg
        from psycopg import sql

        if self._connection is not None and not (
            self._connection.closed or self._connection.broken
        ):
            return
        self.close()
        try:
            connection = psycopg.connect(
                self.url, autocommit=True, connect_timeout=LISTEN_CONNECT_TIMEOUT_SECONDS
            )
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error:
            logger.warning("LISTEN on %s failed; polling meanwhile", self.channel, exc_info=True)
            return
        self._connection = connection

    def wait(self, timeout_seconds: float) -> None:
        if self._connection is None:
            self.stopping.wait(min(timeout_seconds, LISTEN_RETRY_SECONDS))
            return
        deadline = time.monotonic() + timeout_seconds
        try:
            # In slices, so that stop() is noticed within one slice.
            while not self.stopping.is_set():
                remaining_seconds = deadline - time.monotonic()
                if remaining_seconds <= 0:
                    return
                slice_seconds = min(remaining_seconds, STOP_CHECK_SECONDS)
                for _ in self._connection.notifies(timeout=slice_seconds, stop_after=1):
                    return
        except Exception:
            logger.warning("LISTEN on %s was lost; reconnecting", self.channel, exc_info=True)
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class BackgroundRunner:
    """A runner following the log in a daemon thread, for ``serve`` and ``follow``.

    Failures (a database restart, a lock timeout) are logged and retried with a
    bounded exponential backoff; ``last_error`` keeps the latest one.
    """

    def __init__(
        self,
        runner: ProjectionRunner,
        *,
        listen_url: str | None = None,
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS_DEFAULT,
    ) -> None:
        self.runner = runner
        self.poll_interval_seconds = poll_interval_seconds
        self._stopping = threading.Event()
        channel = runner.log.channel_name()
        self._waiter: Waiter
        if listen_url is not None and channel is not None:
            self._waiter = PostgresListenWaiter(listen_url, channel, self._stopping)
            self.poll_interval_seconds = max(poll_interval_seconds, LISTEN_POLL_INTERVAL_SECONDS)
        else:
            self._waiter = PollingWaiter(self._stopping)
        self._caught_up = threading.Condition()
        self._position = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="projection-runner", daemon=True)

    def start(self) -> BackgroundRunner:
        self._thread.start()
        return self

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS_DEFAULT) -> None:
        self._stopping.set()
        self._thread.join(timeout_seconds)
        self._waiter.close()

    def __enter__(self) -> BackgroundRunner:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def position(self) -> int:
        """The lowest position of the projections, as of the last pass."""
        with self._caught_up:
            return self._position

    def wait_until(self, position: int, timeout_seconds: float) -> bool:
        """Whether every projection reached ``position`` within the timeout."""
        with self._caught_up:
            return self._caught_up.wait_for(lambda: self._position >= position, timeout_seconds)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._waiter.listen()
                position = self.runner.catch_up()
            except Exception as error:
                failures += 1
                self.last_error = error
                logger.exception("projection runner failed (attempt %d); retrying", failures)
                backoff_seconds = min(
                    FAILURE_BACKOFF_SECONDS_MAX,
                    FAILURE_BACKOFF_SECONDS_BASE * 2 ** min(failures, 10),
                )
                self._stopping.wait(backoff_seconds)
                continue
            failures = 0
            with self._caught_up:
                self._position = position
                self._caught_up.notify_all()
            self._waiter.wait(self.poll_interval_seconds)
