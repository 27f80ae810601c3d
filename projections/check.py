"""The live projection tables against a rebuild made apart (V10, ``verify --projections``).

The live views are first brought up to the log's end (as every query does), then
every projection is rebuilt from position zero, up to that same position, into an
in-memory SQLite view store that nothing else sees. Each table of each projection
is then read whole from both stores, its rows put in one canonical order, and the
first row that differs is reported: a row deleted, added or edited in the live
tables after the fact. Both copies of a table are held in memory at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from projections.base import Projection
from projections.log import LogReader
from projections.read_model import ReadModel, all_projections
from projections.runner import Progress, ProjectionRunner
from projections.store import SQLiteViewStore, ViewStore

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Difference:
    """The first row of ``table`` that differs: ``live`` or ``rebuilt`` is None when
    the row exists on one side only; ``key`` holds the leading columns they share."""

    table: str
    key: Row
    live: Row | None
    rebuilt: Row | None
    position: int

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": [jsonable(value) for value in self.key],
            "live": None if self.live is None else [jsonable(value) for value in self.live],
            "rebuilt": (
                None if self.rebuilt is None else [jsonable(value) for value in self.rebuilt]
            ),
            "position": self.position,
        }


def jsonable(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def first_difference(model: ReadModel, *, progress: Progress | None = None) -> Difference | None:
    """Catch the live views up, rebuild them apart, and compare table by table."""
    position = model.catch_up()
    apart = SQLiteViewStore(":memory:")
    try:
        projections = all_projections(model.log)
        rebuild_apart(model.log, apart, projections, position, progress)
        for projection in projections:
            for table in projection.tables:
                difference = compare_table(model.store, apart, table, position)
                if difference is not None:
                    return difference
    finally:
        apart.close()
    return None


def rebuild_apart(
    log: LogReader,
    store: ViewStore,
    projections: Sequence[Projection],
    position: int,
    progress: Progress | None,
) -> None:
    runner = ProjectionRunner(log, store, projections)
    runner.prepare()
    reached = runner.catch_up(until=position, progress=progress)
    assert reached == position, "the rebuild reaches the live views' position"


def table_rows(store: ViewStore, table: str) -> list[Row]:
    with store.read() as cursor:
        rows = cursor.execute(f"SELECT * FROM {table}").fetchall()
    return sorted((tuple(normalised(value) for value in row) for row in rows), key=row_order)


def normalised(value: Any) -> Any:
    """One value as both drivers agree on it (PostgreSQL may answer memoryview, bool)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    return value


def row_order(row: Row) -> tuple[tuple[int, Any], ...]:
    return tuple((0, 0) if value is None else (1, value) for value in row)


def compare_table(
    live: ViewStore, rebuilt: ViewStore, table: str, position: int
) -> Difference | None:
    live_rows = table_rows(live, table)
    rebuilt_rows = table_rows(rebuilt, table)
    for index in range(max(len(live_rows), len(rebuilt_rows))):
        live_row = live_rows[index] if index < len(live_rows) else None
        rebuilt_row = rebuilt_rows[index] if index < len(rebuilt_rows) else None
        if live_row != rebuilt_row:
            return Difference(
                table, shared_key(live_row, rebuilt_row), live_row, rebuilt_row, position
            )
    return None


def shared_key(live: Row | None, rebuilt: Row | None) -> Row:
    """The leading columns both rows share (at least the first column of either)."""
    if live is None or rebuilt is None:
        present = live if live is not None else rebuilt
        assert present is not None, "one of the rows exists"
        return present[:1]
    shared = 0
    while shared < min(len(live), len(rebuilt)) and live[shared] == rebuilt[shared]:
        shared += 1
    return live[: max(shared, 1)]
