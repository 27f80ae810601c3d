"""`python3 tools/bench.py put`: the cost of a durable PutSecretValue.

Measured side by side, in interleaved rounds (so that noise from other work on
the machine hits every subject alike), reporting the median of the rounds:

- floor: raw SQLite insert-and-commit of one 200-byte row per transaction, in the
  same durability mode as the ledger (WAL, synchronous=FULL);
- secret-ledger PutSecretValue in-process on SQLite (durable) and on POPO (memory),
  as the ledger's sole writer (`Secrets.assume_sole_writer`);
- the put cost on a secret with 10 earlier puts versus one with 10,000 earlier puts,
  in the same database (the injected clock advances an hour per put, so retention
  keeps the version count legal while the log keeps every event).

- with ``--postgres URL`` (or ``SECRETLEDGER_TEST_POSTGRES_URL``, as set by
  tools/with_throwaway_postgres.sh; an empty database), the same on PostgreSQL: raw psycopg
  insert-and-commit of one row against a durable put;
- on each engine, 8 concurrent writers (threads over one `Secrets`, each putting
  to its own secret): their total rate against the single writer's.

Targets (issue 2): durable put at 0.6 or more of the floor; cost ratio at 10,000
versus 10 earlier puts at 1.2 or less. Issue 11: durable put at 0.5 or more of
its own engine's floor, SQLite and PostgreSQL; 8 writers at least 4x one.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ledger.api import SecretsManagerApi
from ledger.application import Secrets

ROW_SIZE_BYTES = 200
CONCURRENT_WRITERS = 8
POSTGRES_URL_VARIABLE = "SECRETLEDGER_TEST_POSTGRES_URL"


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


class PostgresFloor:
    """Raw PostgreSQL through psycopg: one insert and one commit per operation."""

    def __init__(self, url: str) -> None:
        import psycopg  # only with --postgres

        self.connection = psycopg.connect(url, autocommit=True)
        self.table = f"bench_rows_{uuid.uuid4().hex[:8]}"
        self.connection.execute(
            f"CREATE TABLE {self.table} (id BIGSERIAL PRIMARY KEY, key TEXT UNIQUE, body BYTEA)"
        )
        self.count = 0

    def run(self, operations: int) -> float:
        start = time.perf_counter()
        for _ in range(operations):
            self.count += 1
            with self.connection.transaction():
                self.connection.execute(
                    f"INSERT INTO {self.table} (key, body) VALUES (%s, %s)",
                    (f"{self.count:032d}", b"x" * ROW_SIZE_BYTES),
                )
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


class ConcurrentPutters:
    """``CONCURRENT_WRITERS`` threads, each putting to its own secret of one ledger."""

    def __init__(self, api: SecretsManagerApi, prefix: str) -> None:
        self.putters = [Putter(api, f"{prefix}-{index}") for index in range(CONCURRENT_WRITERS)]

    def run(self, operations: int) -> float:
        """``operations`` puts per writer; the total rate."""
        threads = [
            threading.Thread(target=putter.run, args=(operations,)) for putter in self.putters
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return operations * len(self.putters) / (time.perf_counter() - start)


def open_api(database: str, keyring_path: Path | None = None) -> SecretsManagerApi:
    """The benchmark is the ledger's only writer (as `serve --sole-writer`)."""
    secrets = Secrets(database, keyring_path=keyring_path, clock=SteppingClock())
    secrets.assume_sole_writer()
    return SecretsManagerApi(secrets)


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.py put", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--operations", type=int, default=200, help="puts per round")
    parser.add_argument("--history", type=int, default=10_000, help="earlier puts, old secret")
    parser.add_argument("--quick", action="store_true", help="a smoke run with tiny numbers")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_URL_VARIABLE),
        help=f"a PostgreSQL URL to measure too (default: ${POSTGRES_URL_VARIABLE}, if set)",
    )
    options = parser.parse_args(arguments)
    if options.quick:
        options.rounds, options.operations, options.history = 3, 20, 150
    with tempfile.TemporaryDirectory(prefix="bench-put-") as directory:
        results = run(
            Path(directory), options.rounds, options.operations, options.history, options.postgres
        )
        report(results)
    return 0


def run(
    directory: Path, rounds: int, operations: int, history: int, postgres: str | None
) -> dict[str, list[float]]:
    floor = Floor(directory / "floor.db")
    durable_api = open_api(str(directory / "ledger.db"))
    memory = Putter(open_api("memory:"), "memory/bench")
    durable = Putter(durable_api, "durable/bench")
    concurrent = ConcurrentPutters(durable_api, "durable/concurrent")
    old = Putter(durable_api, "history/old")
    print(f"filling: {history} puts to one secret ...", flush=True)
    old.run(history)
    subjects: dict[str, Callable[[int], float]] = {
        "floor": floor.run,
        "sqlite": durable.run,
        "sqlite x8": concurrent.run,
        "memory": memory.run,
        "young": lambda count: young_secret(durable_api, count),
        "old": old.run,
    }
    if postgres is not None:
        postgres_api = open_api(postgres, directory / "postgres.keyring")  # an empty database
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        subjects["postgres floor"] = PostgresFloor(postgres).run
        subjects["postgres"] = Putter(postgres_api, f"{prefix}/durable").run
        subjects["postgres x8"] = ConcurrentPutters(postgres_api, f"{prefix}/concurrent").run
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
        ("PutSecretValue, SQLite durable", median["sqlite"], median["sqlite"] / floor, ">= 0.5"),
        (
            f"  {CONCURRENT_WRITERS} writers, vs one writer",
            median["sqlite x8"],
            median["sqlite x8"] / median["sqlite"],
            ">= 4",
        ),
        ("PutSecretValue, POPO (memory)", median["memory"], median["memory"] / floor, ""),
    ]
    if "postgres" in median:
        pg_floor = median["postgres floor"]
        rows += [
            ("raw PostgreSQL insert+commit (floor)", pg_floor, 1.0, ""),
            (
                "PutSecretValue, PostgreSQL",
                median["postgres"],
                median["postgres"] / pg_floor,
                ">= 0.5",
            ),
            (
                f"  {CONCURRENT_WRITERS} writers, vs one writer",
                median["postgres x8"],
                median["postgres x8"] / median["postgres"],
                ">= 4",
            ),
        ]
    print()
    print(f"{'subject':<36} {'ops/s (median)':>15} {'ratio':>15} {'target':>8}")
    for label, value, ratio, target in rows:
        print(f"{label:<36} {value:>15,.0f} {ratio:>15.2f} {target:>8}")
    young_cost = 1.0 / median["young"]
    old_cost = 1.0 / median["old"]
    print()
    header = f"{'put cost on one secret (SQLite)':<36} {'ms/put (median)':>15}"
    print(f"{header} {'ratio':>15} {'target':>8}")
    print(f"{'after 10 earlier puts':<36} {young_cost * 1000:>15.3f} {1.0:>15.2f} {'':>8}")
    print(
        f"{'after 10,000 earlier puts':<36} {old_cost * 1000:>15.3f} "
        f"{old_cost / young_cost:>15.2f} {'<= 1.2':>8}"
    )
    spread = {name: (min(values), max(values)) for name, values in results.items()}
    print()
    print(
        "spread over rounds (ops/s min..max): "
        + ", ".join(f"{name} {low:,.0f}..{high:,.0f}" for name, (low, high) in spread.items())
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
