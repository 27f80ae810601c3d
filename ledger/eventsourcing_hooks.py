"""The one module where secret-ledger overrides private methods of eventsourcing
(uvicorn's are overridden in `ledger.serving`, for the same reason: one place to
re-check after an upgrade).

The ledger's evidence (hash rows, data keys, their erasure) must be written inside
the transaction, and under the lock, in which the library writes a save's events,
and the library offers no public hook there; nor for setting up a new SQLite
connection. So each class below sits between a library class and the ledger's,
overrides private methods, runs the library's own code, and hands the rest to a
public method that the ledger's class defines:

* `POPORecorderHooks` (memory): ``POPOAggregateRecorder._assert_uniqueness`` then
  ``check_new_rows``; ``POPOAggregateRecorder._update_table`` then
  ``append_evidence``; both under the store's lock.
* `SQLiteRecorderHooks`: ``SQLiteApplicationRecorder._insert_events`` then
  ``insert_evidence``, in the events' transaction, after their INSERTs took the
  write lock.
* `SQLiteConnectionHooks`: ``before_connecting``, then
  ``SQLiteConnectionPool._create_connection``, then ``prepare_connection``.

Elsewhere the ledger uses public means only: `ledger.application.Secrets` replaces
the public ``save`` (so the library's ``_record`` and ``_take_snapshots`` are never
called), and `ledger.storage_postgres` puts its table lock among the recorder's
public ``sql_create_statements`` and checks the database in ``create_table``.

``tests/test_evidence_storage.py`` pins the source of each library method the ledger
overrides or relies on (it fails when eventsourcing changes one) and fails when a
private method of the library is overridden anywhere but here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
)


@dataclass(frozen=True)
class InsertedEvents:
    """A save's events as the library has just written them: the stored events, the
    notification ids it gave them, and the save's keyword arguments."""

    stored_events: Sequence[StoredEvent]
    notification_ids: Sequence[int]
    arguments: dict[str, Any]


class POPORecorderHooks(POPOApplicationRecorder):
    """In memory: the ledger checks and appends its rows under the store's lock,
    after the library's checks and after its events."""

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        self.check_new_rows(stored_events, **kwargs)

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        assert notification_ids is not None, "an application recorder numbers its events"
        self.append_evidence(InsertedEvents(stored_events, notification_ids, kwargs))
        return notification_ids

    @abstractmethod
    def check_new_rows(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """Raise IntegrityError, before anything is written, if the save conflicts."""

    @abstractmethod
    def append_evidence(self, inserted: InsertedEvents) -> None:
        """Write the save's other rows, right after its events."""


class SQLiteConnectionHooks(SQLiteConnectionPool):
    """Each new SQLite connection is prepared by the ledger."""

    def _create_connection(self) -> SQLiteConnection:
        self.before_connecting()
        connection = super()._create_connection()
        self.prepare_connection(connection)
        return connection

    @abstractmethod
    def before_connecting(self) -> None:
        """Run before the library opens a connection."""

    @abstractmethod
    def prepare_connection(self, connection: SQLiteConnection) -> None:
        """Set up a connection the library opened; close it if that fails."""


class SQLiteRecorderHooks(SQLiteApplicationRecorder):
    """On SQLite: the ledger's rows go into the events' transaction, after the
    events (whose INSERTs took the write lock)."""

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._insert_events(c, stored_events, **kwargs)
        assert notification_ids is not None, "an application recorder numbers its events"
        self.insert_evidence(c, InsertedEvents(stored_events, notification_ids, kwargs))
        return notification_ids

    @abstractmethod
    def insert_evidence(self, c: SQLiteCursor, inserted: InsertedEvents) -> None:
        """Write the save's other rows with the cursor of its transaction."""
