"""The read side in one object: the log, the view store, the runner and the queries.

    with ReadModel.open("./secretledger.db") as model:
        model.catch_up()
        model.labels.label_map("payments/api-key", as_of=parse_instant("2025-03-19T09:20:11Z"))
        for record in model.audit.records(AuditFilter(principal_arn=...)): ...

For ``memory:`` pass the writing application (``ReadModel.open("memory:",
application=secrets)``): an in-memory log is visible only inside its process.
``serve`` calls :func:`start_in_background` and queries ``runner.read_model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Final
from uuid import UUID

from eventsourcing.application import Application

from ledger.storage import DatabaseKind, database_kind
from projections.audit import AuditProjection, AuditQueries
from projections.base import Projection
from projections.forensics import ForensicsQueries
from projections.labels import LabelQueries, LabelsProjection
from projections.log import LedgerLogReader, LogReader
from projections.runner import (
    PAGE_SIZE_DEFAULT,
    POLL_INTERVAL_SECONDS_DEFAULT,
    TRANSACTION_EVENTS_MAX_DEFAULT,
    BackgroundRunner,
    Progress,
    ProjectionRunner,
)
from projections.store import ViewStore, open_view_store
from projections.writer import WriterProcessStore

PROJECTION_NAMES: Final = ("labels", "audit")


def all_projections(log: LogReader) -> list[Projection]:
    return [LabelsProjection(), AuditProjection(log)]


class ReadModel:
    """Projections of one ledger database, and the questions they answer."""

    def __init__(
        self,
        database: str,
        log: LogReader,
        store: ViewStore,
        *,
        page_size: int = PAGE_SIZE_DEFAULT,
        transaction_events_max: int = TRANSACTION_EVENTS_MAX_DEFAULT,
    ) -> None:
        self.database = database
        self.log = log
        self.store = store
        self.runner = ProjectionRunner(
            log,
            store,
            all_projections(log),
            page_size=page_size,
            transaction_events_max=transaction_events_max,
        )
        self.labels = LabelQueries(store)
        self.audit = AuditQueries(store)
        self.forensics = ForensicsQueries(store, self.audit)

    @classmethod
    def open(
        cls,
        database: str,
        *,
        application: Application[UUID] | None = None,
        page_size: int = PAGE_SIZE_DEFAULT,
        transaction_events_max: int = TRANSACTION_EVENTS_MAX_DEFAULT,
    ) -> ReadModel:
        """The read side of ``database`` (a ``--db`` value). Without ``application``,
        ``memory:`` gives an empty log (nothing outside the writing process)."""
        if application is not None:
            log = LogReader.for_application(application)
        elif database_kind(database) is DatabaseKind.MEMORY:
            reader = LedgerLogReader(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
            log = LogReader(reader.recorder, reader.mapper, reader)
        else:
            log = LogReader.for_database(database)
        try:
            store = open_view_store(database)
        except Exception:
            log.close()
            raise
        return cls(
            database,
            log,
            store,
            page_size=page_size,
            transaction_events_max=transaction_events_max,
        )

    def catch_up(self, *, progress: Progress | None = None) -> int:
        """Bring every projection up to the log's current end; returns that position."""
        return self.runner.catch_up(progress=progress)

    def rebuild(
        self,
        names: Sequence[str] | None = None,
        *,
        progress: Progress | None = None,
        writer_process: bool = True,
    ) -> int:
        """Drop the named projections (default: all) and rebuild them from position
        zero. For a SQLite file or PostgreSQL, the writes run in a writer process
        beside the decoding (:mod:`projections.writer`) unless ``writer_process`` is
        false; in-memory views are written in this process."""
        if not writer_process or database_kind(self.database) is DatabaseKind.MEMORY:
            return self.runner.rebuild(names, progress=progress)
        with WriterProcessStore(self.database) as store:
            runner = ProjectionRunner(
                self.log,
                store,
                self.runner.projections,
                page_size=self.runner.page_size,
                transaction_events_max=self.runner.transaction_events_max,
            )
            return runner.rebuild(names, progress=progress)

    def close(self) -> None:
        self.store.close()
        self.log.close()

    def __enter__(self) -> ReadModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class RunningReadModel:
    """A read model whose projections follow the log in a background thread."""

    def __init__(self, read_model: ReadModel, background: BackgroundRunner) -> None:
        self.read_model = read_model
        self.background = background

    def wait_until(self, position: int, timeout_seconds: float) -> bool:
        return self.background.wait_until(position, timeout_seconds)

    def stop(self) -> None:
        """Stop following (within about a second) and close the read model."""
        self.background.stop()
        self.read_model.close()

    def __enter__(self) -> RunningReadModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_in_background(
    database: str,
    *,
    application: Application[UUID] | None = None,
    poll_interval_seconds: float = POLL_INTERVAL_SECONDS_DEFAULT,
    page_size: int = PAGE_SIZE_DEFAULT,
    transaction_events_max: int = TRANSACTION_EVENTS_MAX_DEFAULT,
) -> RunningReadModel:
    """Open the read model of ``database`` and follow its log in a daemon thread
    (LISTEN/NOTIFY on PostgreSQL, polling otherwise). Call ``.stop()`` to end it."""
    read_model = ReadModel.open(
        database,
        application=application,
        page_size=page_size,
        transaction_events_max=transaction_events_max,
    )
    try:
        read_model.runner.prepare()
        listen_url = database if database_kind(database) is DatabaseKind.POSTGRES else None
        background = BackgroundRunner(
            read_model.runner, listen_url=listen_url, poll_interval_seconds=poll_interval_seconds
        )
        background.start()
    except Exception:
        read_model.close()
        raise
    return RunningReadModel(read_model, background)
