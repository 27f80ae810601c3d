"""Reading the ledger's log on the read side, without any decryption key.

The events are decoded with the library's own mapper and the ledger's msgpack
transcoder (so upcasters and topics work as on the write side). Secret values are
envelope-encrypted inside the events, and the read side never opens them: it has
no keyring at all.

For ``memory:`` the log lives inside the writing process, so the read side must be
given that application (:meth:`LogReader.for_application`); for SQLite and
PostgreSQL it opens the database itself (:meth:`LogReader.for_database`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, Mapper, Transcoder

from ledger.storage import (
    LEDGER_APPLICATION_NAME,
    DatabaseKind,
    MsgpackTranscoder,
    database_kind,
    environment_for_database,
)

PAGE_SIZE_MAX: Final = 10_000


class Entry(NamedTuple):
    """One event of the log and its position (the notification id)."""

    position: int
    event: Any


class LedgerLogReader(Application[UUID]):
    """A keyless view of the ``Ledger`` application's stores: recorder and mapper only."""

    name = LEDGER_APPLICATION_NAME

    def construct_transcoder(self) -> Transcoder:
        return MsgpackTranscoder()


@dataclass
class LogReader:
    """Pages of the log in global order, decoded."""

    recorder: ApplicationRecorder
    mapper: Mapper[Any]
    owned_application: Application[UUID] | None = None

    @classmethod
    def for_database(cls, database: str) -> LogReader:
        if database_kind(database) is DatabaseKind.MEMORY:
            msg = (
                "an in-memory ledger can only be read inside the process that writes it: "
                "use LogReader.for_application(secrets)"
            )
            raise ValueError(msg)
        application = LedgerLogReader(env=environment_for_database(database))
        return cls(application.recorder, application.mapper, application)

    @classmethod
    def for_application(cls, application: Application[UUID]) -> LogReader:
        return cls(application.recorder, application.mapper)

    def read_after(self, position: int, limit: int, stop: int | None = None) -> list[Entry]:
        """Up to ``limit`` events with ``position < id <= stop``, in order. Ids may have
        gaps (PostgreSQL), so paging is always "greater than the last id seen"."""
        assert position >= 0, "positions start at zero"
        assert 0 < limit <= PAGE_SIZE_MAX, "pages are bounded"
        notifications = self.recorder.select_notifications(
            start=position, limit=limit, stop=stop, inclusive_of_start=False
        )
        to_domain_event = self.mapper.to_domain_event
        return [Entry(item.id, to_domain_event(item)) for item in notifications]

    def last_position(self) -> int:
        """The id of the newest event, 0 for an empty log."""
        return self.recorder.max_notification_id() or 0

    def channel_name(self) -> str | None:
        """The PostgreSQL channel that every insert NOTIFYs, or None (no LISTEN)."""
        channel = getattr(self.recorder, "channel_name", None)
        return channel if isinstance(channel, str) else None

    def close(self) -> None:
        if self.owned_application is not None:
            self.owned_application.close()
            self.owned_application = None
