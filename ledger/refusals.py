"""How many refused requests get a record of their own (rules DR-1 to DR-4).

A request refused before it is authenticated costs its sender nothing, and its
record would be kept for ever: without a bound, a sender grows the append-only log
as fast as it can send. `RefusalLimiter` keeps, per source address and reason (the
error code), at most ``records_per_window`` full records per window (a minute by
default); the refusals beyond are only counted, and when the window has ended the
count becomes one summary record (`RefusalCount`), so the log states how many
refusals there were without storing each one.

Memory is bounded too: at most ``sources_max`` (source, reason) windows are open;
refusals from further sources share one window per reason under the source
``OTHER_SOURCES``. Windows are opened in time order and all last as long, so the
ones that have ended are found at the front of the (insertion-ordered) table.

Pure bookkeeping, safe from any thread; the endpoint records what it is told to.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

RECORDS_PER_WINDOW_DEFAULT: Final = 10
WINDOW_SECONDS_DEFAULT: Final = 60
SOURCES_MAX_DEFAULT: Final = 1024
OTHER_SOURCES: Final = "*"
# DR-3: what a refusal record keeps of the sender's User-Agent.
USER_AGENT_PREFIX_LENGTH_MAX: Final = 64


@dataclass(frozen=True)
class RefusalCount:
    """Refusals for one source and reason that were counted, not recorded one by one,
    in the window [``window_start``, ``window_end``)."""

    source_ip: str
    reason: str
    count: int
    window_start: datetime
    window_end: datetime

    def __post_init__(self) -> None:
        assert self.count > 0, "a summary counts at least one refusal"
        assert self.window_start <= self.window_end, "a window ends after it starts"


@dataclass
class _Window:
    start: datetime
    recorded: int = 0
    counted: int = 0


class RefusalLimiter:
    """DR-1, DR-2: decides which refusals get a full record, and counts the rest."""

    def __init__(
        self,
        *,
        records_per_window: int = RECORDS_PER_WINDOW_DEFAULT,
        window_seconds: int = WINDOW_SECONDS_DEFAULT,
        sources_max: int = SOURCES_MAX_DEFAULT,
    ) -> None:
        assert records_per_window > 0, "some refusals are recorded in full"
        assert window_seconds > 0 and sources_max > 0, "a window and a table"
        self.records_per_window = records_per_window
        self.window = timedelta(seconds=window_seconds)
        self.sources_max = sources_max
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def admit(self, source_ip: str, reason: str, now: datetime) -> bool:
        """Whether this refusal gets a full record (otherwise it is counted)."""
        with self._lock:
            key = (source_ip, reason)
            if key not in self._windows and len(self._windows) >= self.sources_max:
                key = (OTHER_SOURCES, reason)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now)
            if window.recorded < self.records_per_window:
                window.recorded += 1
                return True
            window.counted += 1
            return False

    def ended(self, now: datetime) -> list[RefusalCount]:
        """The counts of the windows that have ended by ``now``; those windows close."""
        counts: list[RefusalCount] = []
        with self._lock:
            while self._windows:
                key, window = next(iter(self._windows.items()))
                if now < window.start + self.window:
                    break
                del self._windows[key]
                if window.counted:
                    counts.append(self._count(key, window, window.start + self.window))
        return counts

    def drain(self, now: datetime) -> list[RefusalCount]:
        """At shutdown: the counts of every open window, up to ``now``."""
        with self._lock:
            windows, self._windows = self._windows, {}
        return [
            self._count(key, window, max(window.start, min(now, window.start + self.window)))
            for key, window in windows.items()
            if window.counted
        ]

    @staticmethod
    def _count(key: tuple[str, str], window: _Window, end: datetime) -> RefusalCount:
        return RefusalCount(key[0], key[1], window.counted, window.start, end)
