"""Admission of requests: caps on calls in progress, with a fair share for each
source and each access key.

A request is admitted when the server has fewer than ``calls_max`` calls in
progress, its source address has fewer than ``share_max``, and the access key it
claims has fewer than ``share_max``; otherwise it is answered 503 at once (the
SDKs retry). Only requests in progress count: open sockets do not (idle and
slow ones are closed by the head deadline of `ledger.serving`). With
``share_max`` at half of ``calls_max``, no single client address and no single
access key can take more than half of the capacity, so the others always keep
the rest. The key is the one the request claims before its signature is
checked, so a sender can spend the share of a key it does not hold, but never
more than that share, and only from its own source's share.
"""

from __future__ import annotations

from collections import Counter


class Admission:
    """Counts of calls in progress; touched only on the event loop's thread."""

    def __init__(self, calls_max: int, share_max: int) -> None:
        assert 0 < share_max <= calls_max, "a share is part of the whole"
        self.calls_max = calls_max
        self.share_max = share_max
        self.calls = 0
        self.by_source: Counter[str] = Counter()
        self.by_key: Counter[str] = Counter()

    def admit(self, source: str, key: str) -> bool:
        """Count the call in and return True, or return False (nothing counted)."""
        if (
            self.calls >= self.calls_max
            or self.by_source[source] >= self.share_max
            or self.by_key[key] >= self.share_max
        ):
            return False
        self.calls += 1
        self.by_source[source] += 1
        self.by_key[key] += 1
        return True

    def release(self, source: str, key: str) -> None:
        assert self.calls > 0 and self.by_source[source] > 0 and self.by_key[key] > 0
        self.calls -= 1
        self._decrement(self.by_source, source)
        self._decrement(self.by_key, key)

    @staticmethod
    def _decrement(counts: Counter[str], name: str) -> None:
        counts[name] -= 1
        if counts[name] == 0:
            del counts[name]  # the counters hold only names with calls in progress
