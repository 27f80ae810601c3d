"""`python3 tools/bench.py put`: the cost of a durable PutSecretValue.

Measured side by side, in interleaved rounds (so that noise from other work on
the machine hits every subject alike), reporting the median of the rounds:

- floor: raw SQLite insert-and-commit of one 200-byte row per transaction, in the
  same durability mode as the ledger (WAL, synchronous=FULL);
- secret-ledger PutSecretValue in-process on SQLite (durable) and on POPO (memory);
- the put cost on a secret with 10 earlier puts versus one with 10,000 earlier puts,
  in the same database (the injected clock advances an hour per put, so retention
  keeps the version count legal while the log keeps every event).

Targets (issue 2): durable put at 0.6 or more of the floor; cost ratio at 10,000
versus 10 earlier puts at 1.2 or less.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ledger.api import SecretsManagerApi
from ledger.application import Secrets

ROW_SIZE_BYTES = 200


class SteppingClock:
    """An injected clock that moves one hour on every reading."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(hours=1)
        return self.now


class Floor:
    """Raw SQLite: one insert and one durable commit per operation."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute(
            "CREATE TABLE rows (id INTEGER PRIMARY KEY, key TEXT UNIQUE, body BLOB)"
        )
        self.count = 0

    def run(self, operations: int) -> float:
        start = time.perf_counter()
        for _ in range(operations):
            self.count += 1
            self.connection.execute("BEGIN")
            self.connection.execute(
                "INSERT INTO rows (key, body) VALUES (?, ?)",
                (f"{self.count:032d}", b"x" * ROW_SIZE_BYTES),
            )
            self.connection.execute("COMMIT")
        return operations / (time.perf_counter() - start)


class Putter:
    """PutSecretValue to one secret, through the full API (validation included)."""

    def __init__(self, api: SecretsManagerApi, name: str) -> None:
        self.api = api
        self.name = name
        self.count = 0
        api.call("CreateSecret", {"Name": name, "ClientRequestToken": self._token()})

    def _token(self) -> str:
        self.count += 1
        return f"{self.name}-{self.count:020d}".rjust(32, "0")[-64:]

    def put(self) -> None:
        self.api.call(
            "PutSecretValue",
            {"SecretId": self.name, "ClientRequestToken": self._token(), "SecretString": "v" * 64},
        )

    def run(self, operations: int) -> float:
        start = time.perf_counter()
        for _ in range(operations):
            self.put()
        return operations / (time.perf_counter() - start)


def open_api(database: str) -> SecretsManagerApi:
    return SecretsManagerApi(Secrets(database, clock=SteppingClock()))


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py put", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--operations", type=int, default=200, help="puts per round")
    parser.add_argument("--history", type=int, default=10_000, help="earlier puts, old secret")
    parser.add_argument("--quick", action="store_true", help="a smoke run with tiny numbers")
    options = parser.parse_args(arguments)
    if options.quick:
        options.rounds, options.operations, options.history = 3, 20, 150
    with tempfile.TemporaryDirectory(prefix="bench-put-") as directory:
        report(run(Path(directory), options.rounds, options.operations, options.history))
    return 0


def run(directory: Path, rounds: int, operations: int, history: int) -> dict[str, list[float]]:
    floor = Floor(directory / "floor.db")
    durable_api = open_api(str(directory / "ledger.db"))
    memory = Putter(open_api("memory:"), "memory/bench")
    durable = Putter(durable_api, "durable/bench")
    old = Putter(durable_api, "history/old")
    print(f"filling: {history} puts to one secret ...", flush=True)
    old.run(history)
    subjects: dict[str, Callable[[int], float]] = {
        "floor": floor.run,
        "sqlite": durable.run,
        "memory": memory.run,
        "young": lambda count: young_secret(durable_api, count),
        "old": old.run,
    }
    results: dict[str, list[float]] = {name: [] for name in subjects}
    for round_number in range(1, rounds + 1):
        for name, subject in subjects.items():
            results[name].append(subject(operations))
        print(f"round {round_number}/{rounds} done", flush=True)
    return results


def young_secret(api: SecretsManagerApi, operations: int) -> float:
    """A fresh secret with 10 earlier puts, then the measured window."""
    young_secret.count = getattr(young_secret, "count", 0) + 1  # type: ignore[attr-defined]
    putter = Putter(api, f"history/young-{young_secret.count}")  # type: ignore[attr-defined]
    putter.run(10)
    return putter.run(operations)


def report(results: dict[str, list[float]]) -> None:
    median = {name: statistics.median(values) for name, values in results.items()}
    floor = median["floor"]
    rows = [
        ("raw SQLite insert+commit (floor)", median["floor"], 1.0, ""),
        ("PutSecretValue, SQLite durable", median["sqlite"], median["sqlite"] / floor, ">= 0.6"),
        ("PutSecretValue, POPO (memory)", median["memory"], median["memory"] / floor, ""),
    ]
    print()
    print(f"{'subject':<36} {'ops/s (median)':>15} {'ratio to floor':>15} {'target':>8}")
    for label, value, ratio, target in rows:
        print(f"{label:<36} {value:>15,.0f} {ratio:>15.2f} {target:>8}")
    young_cost = 1.0 / median["young"]
    old_cost = 1.0 / median["old"]
    print()
    header = f"{'put cost on one secret (SQLite)':<36} {'ms/put (median)':>15}"
    print(f"{header} {'ratio':>15} {'target':>8}")
    print(f"{'after 10 earlier puts':<36} {young_cost * 1000:>15.3f} {1.0:>15.2f} {'':>8}")
    print(f"{'after 10,000 earlier puts':<36} {old_cost * 1000:>15.3f} "
          f"{old_cost / young_cost:>15.2f} {'<= 1.2':>8}")
    spread = {name: (min(values), max(values)) for name, values in results.items()}
    print()
    print("spread over rounds (ops/s min..max): " + ", ".join(
        f"{name} {low:,.0f}..{high:,.0f}" for name, (low, high) in spread.items()
    ))
