"""What every projection is, and the shared conversions of times and request contexts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final
from uuid import UUID

from projections.log import Entry
from projections.store import ViewCursor, ViewStore

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND: Final = timedelta(microseconds=1)


def to_microseconds(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (event times are stored this way)."""
    assert moment.tzinfo is not None, "event times are timezone-aware"
    return (moment - EPOCH) // ONE_MICROSECOND


def from_microseconds(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def format_instant(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``: how the read side prints times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"not an ISO 8601 time: {text!r} (e.g. 2025-03-19T09:20:11Z)"
        raise ValueError(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Projection(ABC):
    """A view over the log, kept in tables prefixed ``projection_``.

    ``process`` runs inside the runner's write transaction, which also moves the
    projection's position, so a batch is applied exactly once or not at all. It must
    be a pure function of the entries and the rows already written. Anything cached
    across batches must be either a fact of the log that never changes (e.g. a
    secret's ARN), or knowledge of the projection's own rows that ``forget`` drops:
    the runner calls it when a transaction fails and when another runner moved the
    projection. Bump ``version`` whenever the rows a log produces would change: the
    runner then rebuilds the projection from zero.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    tables: ClassVar[tuple[str, ...]]
    views: ClassVar[tuple[str, ...]] = ()
    retired: ClassVar[tuple[str, ...]] = ()  # tables of earlier versions, dropped on reset

    @abstractmethod
    def create_statements(self, store: ViewStore) -> list[str]:
        """``CREATE ... IF NOT EXISTS`` statements for ``tables`` and ``views``, and the
        indexes that processing itself needs."""

    def deferred_statements(self, store: ViewStore) -> list[str]:
        """``CREATE INDEX IF NOT EXISTS`` statements for indexes that only queries use: a
        rebuild creates them at its end (one sort, instead of random writes all along)."""
        return []

    @abstractmethod
    def process(self, cursor: ViewCursor, entries: Sequence[Entry]) -> None:
        """Apply a batch of entries, in log order."""

    _handlers: ClassVar[dict[type, Any]] = {}

    def dispatch(self, cursor: ViewCursor, pending: object, entries: Sequence[Entry]) -> None:
        """Hand each entry, in log order, to the handler of its event type (``_handlers``:
        event class -> ``handler(self, cursor, pending, position, event)``); events
        without a handler change nothing."""
        handlers = self._handlers
        for position, event in entries:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(self, cursor, pending, position, event)

    @abstractmethod
    def forget(self) -> None:
        """Drop what is cached about the projection's own rows (see the class)."""


SECRET_KEYS_CACHED_MAX: Final = 200_000


class SecretKeys:
    """Secret aggregate id -> secret key, the log position of its ``Secret.Created``.

    Views key secrets by that small, increasing integer rather than by the 32-character
    id, so that their indexes stay small and rebuilds write few pages. The mapping is
    a fact of the log that never changes, so it is cached across batches (and kept if
    a transaction rolls back); a miss reads ``table`` (columns secret_id, secret_key).
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self._keys: OrderedDict[int, int] = OrderedDict()

    def remember(self, secret_id: UUID, secret_key: int) -> None:
        self._keys[secret_id.int] = secret_key
        if len(self._keys) > SECRET_KEYS_CACHED_MAX:
            self._keys.popitem(last=False)

    def key(self, cursor: ViewCursor, secret_id: UUID) -> int:
        secret_key = self._keys.get(secret_id.int)
        if secret_key is None:
            row = cursor.execute(
                f"SELECT secret_key FROM {self.table} WHERE secret_id = ?", (secret_id.hex,)
            ).fetchone()
            assert row is not None, "every Secret stream starts with Secret.Created"
            secret_key = int(row[0])
            self.remember(secret_id, secret_key)
        return secret_key
