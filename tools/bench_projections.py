"""Benchmark of the read side: `python3 tools/bench.py projections [--events N --secrets M]`.

Prints, in one run, on one generated SQLite log:

* the floor: reading and decoding every stored event (pages of 1,000, the library's
  mapper with the msgpack transcoder: what any projection must pay);
* a full rebuild of all projections (drop, then replay from position zero), as
  events/s and as a ratio to the floor; target >= 0.5. This is what ``replay`` does:
  the SQL runs in a writer process beside the decoding (``projections.writer``).
  For reference, the same rebuild entirely in one process;
* the peak memory of that rebuild: the growth of the maximum resident set size of a
  child process from just before the rebuild to its end, plus the peak resident set
  of its writer process; and beside it the absolute peak of every process involved
  (the child's whole peak resident set plus its writer's, as if both peaked at once,
  the count ``tools/bench.py report`` uses too); target < 200 MB;
* the median and 99th percentile of an as-of query (the label map of a random secret
  at a random time), next to answering the same query by replaying the log (reading
  and decoding it from position zero, folding the secret's events up to that time);
  targets: median < 1 ms, >= 1,000 times faster than the replay. For reference, also
  a replay of only that secret's own stream (what `repository.get(id, version=v)`
  does, with its primary-key index).

The log (default 1,000,000 events over 10,000 secrets) is generated quickly, without
the application or any key: secrets are created and changed through the domain
(`Secret.create`, `add_version` with random bytes standing in for ciphertext,
`update_stage`, `ApiCall.record` for reads), the pending events are turned into stored
events by the real mapper and transcoder, and inserted in batches of 10,000 with the
ledger's own recorder. Each step is one request (1 puts in 10 go to AWSPENDING, then
get promoted; 2 in 10 are reads); the clock moves 10 s per request. Generation is
seeded, and the file is cached under ``--cache-dir`` (default
``/tmp/secretledger-bench``) by its parameters; a cached file is reused as is (its
projection tables are rebuilt by the benchmark anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ledger.domain import (
    AWSCURRENT,
    AWSPENDING,
    ApiCall,
    RequestContext,
    SealedVersion,
    Secret,
    SecretName,
    secret_id_for_arn,
)
from ledger.errors import LimitExceededException
from ledger.sealing import SEALING_CURRENT
from ledger.storage import environment_for_database
from projections.base import from_microseconds
from projections.log import LedgerLogReader, LogReader
from projections.read_model import ReadModel

GENERATOR_VERSION = 2
SHORT_VALUE_CIPHERTEXT_SIZE_BYTES = 48  # a value under 32 bytes, padded (S-2), plus the tag
EVENTS_DEFAULT = 1_000_000
SECRETS_DEFAULT = 10_000
QUERIES_DEFAULT = 2_000
LOG_REPLAYS_DEFAULT = 3
ROUNDS_DEFAULT = 3
INSERT_BATCH_EVENTS = 10_000
READ_PAGE_SIZE = 1_000
SECONDS_PER_REQUEST = 10
READ_SHARE = 0.2
PENDING_SHARE = 0.1
START = datetime(2025, 1, 1, tzinfo=UTC)
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PRINCIPALS = (
    f"arn:aws:iam::{ACCOUNT_ID}:user/deployer",
    f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/rotator/rotation",
    f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/app/task",
)
BYTES_PER_MEGABYTE = 1024 * 1024
KILOBYTES_PER_MEGABYTE = 1024
TARGET_REBUILD_RATIO = 0.5
TARGET_PEAK_MEGABYTES = 200
TARGET_QUERY_MILLISECONDS = 1.0
TARGET_SPEEDUP = 1_000


# --------------------------------------------------------------------------------------
# Generating the log
# --------------------------------------------------------------------------------------


class Generator:
    """Seeded requests through the domain, written in large batches."""

    def __init__(self, path: Path, secrets_count: int, seed: int) -> None:
        self.reader = LedgerLogReader(env=environment_for_database(str(path)))
        self.random = random.Random(seed)
        self.secrets_count = secrets_count
        self.secrets: list[Secret] = []
        self.batch: list[Any] = []
        self.events_written = 0
        self.request_count = 0

    def context(self, operation: str, parameters: dict[str, Any]) -> RequestContext:
        return RequestContext(
            request_id=str(uuid.UUID(int=self.random.getrandbits(128))),
            principal_arn=self.random.choice(PRINCIPALS),
            access_key_id="AKIABENCHMARK0000000",
            source_ip="10.0.0.1",
            user_agent="bench/1",
            region=REGION,
            account_id=ACCOUNT_ID,
            operation=operation,
            parameters=parameters,
        )

    def now(self) -> datetime:
        self.request_count += 1
        return START + timedelta(seconds=SECONDS_PER_REQUEST * self.request_count)

    def write(self, *aggregates: Any) -> None:
        to_stored_event = self.reader.mapper.to_stored_event
        for aggregate in aggregates:
            self.batch.extend(to_stored_event(event) for event in aggregate.collect_events())
        if len(self.batch) >= INSERT_BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.reader.recorder.insert_events(self.batch)
            self.events_written += len(self.batch)
            self.batch = []

    def create(self, number: int) -> None:
        name = f"team-{number % 97}/service-{number}"
        arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{name}-{number:06d}"
        context = self.context("CreateSecret", {"name": name})
        now = self.now()
        holder = SecretName.register(name, request=context, now=now)
        secret = Secret.create(
            name=name, arn=arn, description=None, kms_key_id=None, tags=[], request=context, now=now
        )
        holder.claim(secret.id, arn, request=context, now=now)
        self.write(holder, secret)
        self.secrets.append(secret)

    def put(self, secret: Secret, stages: list[str] | None) -> None:
        version_id = str(uuid.UUID(int=self.random.getrandbits(128)))
        parameters: dict[str, Any] = {"secretId": secret.name, "clientRequestToken": version_id}
        if stages is not None:
            parameters["versionStages"] = stages
        sealed = SealedVersion(
            version_id=version_id,
            kind="string",
            ciphertext=self.random.randbytes(SHORT_VALUE_CIPHERTEXT_SIZE_BYTES),
            nonce=self.random.randbytes(12),
            fingerprint=self.random.randbytes(32),
            sealing=SEALING_CURRENT,
        )
        context = self.context("PutSecretValue", parameters)
        secret.add_version(sealed, stages, request=context, now=self.now())
        self.write(secret)

    def promote(self, secret: Secret) -> None:
        pending, current = secret.labels[AWSPENDING], secret.labels[AWSCURRENT]
        context = self.context(
            "UpdateSecretVersionStage",
            {
                "secretId": secret.arn,
                "versionStage": AWSCURRENT,
                "moveToVersionId": pending,
                "removeFromVersionId": current,
            },
        )
        secret.update_stage(AWSCURRENT, pending, current, request=context, now=self.now())
        self.write(secret)

    def read(self, secret: Secret) -> None:
        context = self.context("GetSecretValue", {"secretId": secret.name})
        call = ApiCall.record(
            request=context,
            read_only=True,
            now=self.now(),
            resources=[{"secret_arn": secret.arn, "version_id": secret.labels.get(AWSCURRENT)}],
        )
        self.write(call)

    def step(self) -> None:
        secret = self.random.choice(self.secrets)
        current = secret.labels.get(AWSCURRENT)
        pending = secret.labels.get(AWSPENDING)
        draw = self.random.random()
        if pending is not None and pending != current:
            self.promote(secret)
        elif current is not None and draw < READ_SHARE:
            self.read(secret)
        else:
            stages = [AWSPENDING] if current is not None and draw > 1 - PENDING_SHARE else None
            try:
                self.put(secret, stages)
            except LimitExceededException:  # 100 versions, none old enough to remove
                self.read(secret)

    def run(self, events_count: int) -> int:
        for number in range(self.secrets_count):
            self.create(number)
        while self.events_written + len(self.batch) < events_count:
            self.step()
        self.flush()
        self.reader.close()
        return self.events_written


def generated_log(cache_directory: Path, events_count: int, secrets_count: int, seed: int) -> Path:
    name = f"log-v{GENERATOR_VERSION}-events{events_count}-secrets{secrets_count}-seed{seed}.sqlite"
    path = cache_directory / name
    if path.exists():
        print(f"using the cached log {path}", file=sys.stderr)
        return path
    cache_directory.mkdir(parents=True, exist_ok=True)
    partial = cache_directory / f".{name}.{os.getpid()}.partial"
    started = time.perf_counter()
    written = Generator(partial, secrets_count, seed).run(events_count)
    print(
        f"generated {written:,} events in {time.perf_counter() - started:.1f} s: {path}",
        file=sys.stderr,
    )
    for suffix in ("-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    partial.rename(path)
    return path


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def read_and_decode(path: Path) -> tuple[int, float]:
    """The floor: every event read and decoded, nothing else."""
    log = LogReader.for_database(str(path))
    try:
        started = time.perf_counter()
        position, count = 0, 0
        while True:
            entries = log.read_after(position, READ_PAGE_SIZE)
            if not entries:
                break
            count += len(entries)
            position = entries[-1].position
        return count, time.perf_counter() - started
    finally:
        log.close()


def rebuild_in_child(path: Path, *, writer_process: bool) -> dict[str, Any]:
    """A full rebuild in a fresh process, to measure its peak memory."""
    mode = "writer-process" if writer_process else "in-process"
    completed = subprocess.run(
        [sys.executable, __file__, "--rebuild-child", str(path), "--rebuild-mode", mode],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the rebuild failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def rebuild_child(path: Path, mode: str) -> int:
    model = ReadModel.open(str(path))
    try:
        model.runner.prepare()
        maxrss_before_kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        position = model.rebuild(writer_process=mode == "writer-process")
        seconds = time.perf_counter() - started
        maxrss_after_kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # The writer process has ended and been waited for by now.
        writer_maxrss_kilobytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    finally:
        model.close()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "position": position,
                "peak_growth_kilobytes": maxrss_after_kilobytes
                - maxrss_before_kilobytes
                + writer_maxrss_kilobytes,
                "maxrss_after_kilobytes": maxrss_after_kilobytes,
                "writer_maxrss_kilobytes": writer_maxrss_kilobytes,
            }
        )
    )
    return 0


@dataclass(frozen=True)
class Query:
    arn: str
    as_of: datetime


def sample_queries(model: ReadModel, count: int, seed: int) -> list[Query]:
    """Random secrets, each at a random time between its creation and the log's end."""
    randomness = random.Random(seed)
    with model.store.read() as cursor:
        secrets = cursor.execute(
            "SELECT arn, created_time FROM projection_secrets ORDER BY arn"
        ).fetchall()
        last = cursor.execute("SELECT max(event_time) FROM projection_secret_times").fetchone()
    assert last is not None and secrets, "the projections are built"
    queries = []
    for _ in range(count):
        arn, created_time = randomness.choice(secrets)
        queries.append(Query(arn, from_microseconds(randomness.randint(created_time, last[0]))))
    return queries


def time_queries(model: ReadModel, queries: list[Query]) -> list[float]:
    durations = []
    for query in queries:
        started = time.perf_counter()
        model.labels.label_map(query.arn, as_of=query.as_of)
        durations.append(time.perf_counter() - started)
    return durations


def apply_events(
    labels: dict[str, str], events: Iterable[Any], secret_id: uuid.UUID, as_of: datetime
) -> None:
    """Fold one secret's label moves up to ``as_of`` into ``labels``."""
    for event in events:
        if event.originator_id != secret_id or event.timestamp > as_of:
            continue
        if isinstance(event, Secret.LabelMoved):
            if event.to_version_id is None:
                del labels[event.label]
            else:
                labels[event.label] = event.to_version_id
        elif isinstance(event, Secret.Deleted):
            labels.clear()


def replay_log(log: LogReader, query: Query) -> dict[str, str]:
    """The query answered without projections: the whole log, read and folded."""
    secret_id = secret_id_for_arn(query.arn)
    labels: dict[str, str] = {}
    position = 0
    while True:
        entries = log.read_after(position, READ_PAGE_SIZE)
        if not entries:
            return labels
        apply_events(labels, (entry.event for entry in entries), secret_id, query.as_of)
        position = entries[-1].position


def replay_stream(log: LogReader, query: Query) -> dict[str, str]:
    """For reference: only the secret's own stream, read by its primary key."""
    secret_id = secret_id_for_arn(query.arn)
    labels: dict[str, str] = {}
    stored = log.recorder.select_events(secret_id)
    apply_events(labels, map(log.mapper.to_domain_event, stored), secret_id, query.as_of)
    return labels


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


def measure(arguments: argparse.Namespace) -> int:
    path = generated_log(arguments.cache_dir, arguments.events, arguments.secrets, arguments.seed)

    # Interleaved rounds (floor, rebuild, in-process rebuild), so that a shared
    # machine's slow spells hit all three alike; ratios are taken within a round.
    floor_rates, rebuild_rates, in_process_rates = [], [], []
    rebuild_ratios, in_process_ratios = [], []
    rebuilds: list[dict[str, Any]] = []
    events_count = 0
    for _ in range(arguments.rounds):
        events_count, floor_seconds = read_and_decode(path)
        floor_rates.append(events_count / floor_seconds)
        rebuild = rebuild_in_child(path, writer_process=True)
        rebuilds.append(rebuild)
        rebuild_rates.append(events_count / rebuild["seconds"])
        rebuild_ratios.append(floor_seconds / rebuild["seconds"])
        in_process = rebuild_in_child(path, writer_process=False)
        in_process_rates.append(events_count / in_process["seconds"])
        in_process_ratios.append(floor_seconds / in_process["seconds"])
    floor_rate = statistics.median(floor_rates)
    rebuild_rate = statistics.median(rebuild_rates)
    peak_growth_megabytes = (
        max(result["peak_growth_kilobytes"] for result in rebuilds) / KILOBYTES_PER_MEGABYTE
    )
    peak_megabytes = (
        max(result["maxrss_after_kilobytes"] for result in rebuilds) / KILOBYTES_PER_MEGABYTE
    )
    writer_megabytes = (
        max(result["writer_maxrss_kilobytes"] for result in rebuilds) / KILOBYTES_PER_MEGABYTE
    )
    absolute_megabytes = (
        max(
            result["maxrss_after_kilobytes"] + result["writer_maxrss_kilobytes"]
            for result in rebuilds
        )
        / KILOBYTES_PER_MEGABYTE
    )

    with ReadModel.open(str(path)) as model:
        model.catch_up()
        queries = sample_queries(model, arguments.queries, arguments.seed)
        durations = time_queries(model, queries)
        log = model.log
        replayed = queries[: arguments.log_replays]
        log_durations, stream_durations = [], []
        for query in replayed:
            expected = model.labels.label_map(query.arn, as_of=query.as_of).labels
            started = time.perf_counter()
            by_log = replay_log(log, query)
            log_durations.append(time.perf_counter() - started)
            started = time.perf_counter()
            by_stream = replay_stream(log, query)
            stream_durations.append(time.perf_counter() - started)
            assert by_log == by_stream == expected, (query, expected, by_log, by_stream)

    query_median = statistics.median(durations)
    log_median = statistics.median(log_durations)
    stream_median = statistics.median(stream_durations)
    size_megabytes = path.stat().st_size / BYTES_PER_MEGABYTE
    rows = [
        ("read + decode every event (floor)", f"{floor_rate:,.0f} events/s", "1.00", ""),
        (
            "full rebuild of all projections",
            f"{rebuild_rate:,.0f} events/s",
            f"{statistics.median(rebuild_ratios):.2f} of floor",
            f"target >= {TARGET_REBUILD_RATIO}",
        ),
        (
            "(reference) the same rebuild in one process",
            f"{statistics.median(in_process_rates):,.0f} events/s",
            f"{statistics.median(in_process_ratios):.2f} of floor",
            "",
        ),
        (
            "rebuild peak memory (growth + writer)",
            f"{peak_growth_megabytes:,.1f} MB",
            f"peaks {peak_megabytes:,.1f} + {writer_megabytes:,.1f} MB",
            f"target < {TARGET_PEAK_MEGABYTES} MB",
        ),
        (
            "rebuild peak memory, absolute (every process)",
            f"{absolute_megabytes:,.1f} MB",
            "process + writer",
            f"target < {TARGET_PEAK_MEGABYTES} MB",
        ),
        (
            "as-of query, median",
            f"{query_median * 1e3:.3f} ms",
            "",
            f"target < {TARGET_QUERY_MILLISECONDS} ms",
        ),
        ("as-of query, 99th percentile", f"{percentile(durations, 0.99) * 1e3:.3f} ms", "", ""),
        (
            "same query by replaying the log, median",
            f"{log_median * 1e3:,.0f} ms",
            f"as-of is {log_median / query_median:,.0f}x faster",
            f"target >= {TARGET_SPEEDUP:,}x",
        ),
        (
            "(reference) replaying the secret's stream",
            f"{stream_median * 1e3:.3f} ms",
            f"as-of is {stream_median / query_median:,.1f}x faster",
            "",
        ),
    ]
    print(
        f"projections: {events_count:,} events, {arguments.secrets:,} secrets, SQLite file "
        f"{size_megabytes:,.0f} MB; medians of {arguments.rounds} interleaved round(s), "
        f"{len(durations):,} queries, {len(log_durations)} log replays"
    )
    print_table(rows)
    return 0


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    """The benchmarks' table: columns padded to their widest cell, two spaces apart."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def parse(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench.py projections",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=EVENTS_DEFAULT)
    parser.add_argument("--secrets", type=int, default=SECRETS_DEFAULT)
    parser.add_argument("--queries", type=int, default=QUERIES_DEFAULT)
    parser.add_argument("--log-replays", type=int, default=LOG_REPLAYS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/secretledger-bench"))
    parser.add_argument("--rebuild-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rebuild-mode", choices=("writer-process", "in-process"), help=argparse.SUPPRESS
    )
    parsed = parser.parse_args(arguments)
    if parsed.events < 1 or parsed.secrets < 1 or parsed.secrets * 3 > parsed.events:
        parser.error("need --events >= 3 x --secrets >= 3")
    if min(parsed.queries, parsed.log_replays, parsed.rounds) < 1:
        parser.error("--queries, --log-replays and --rounds must be at least 1")
    return parsed


def main(arguments: list[str]) -> int:
    parsed = parse(arguments)
    if parsed.rebuild_child is not None:
        return rebuild_child(parsed.rebuild_child, parsed.rebuild_mode or "writer-process")
    return measure(parsed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
