"""Benchmark of the evidence log: `python3 tools/bench.py verify [--events N]`.

Prints, in one run, medians of interleaved rounds:

* verification: the whole log walked by ``verify`` (events and hash rows read page by
  page, every leaf, chain value and Merkle node recomputed, compared with a signed
  checkpoint), against the floor: the same stored events read the same way (pages of
  ``select_notifications``) and their state bytes hashed once with plain SHA-256.
  Ratio = floor time / verify time; target >= 0.5;
* the put cost with the hash chain against without it: durable PutSecretValue calls on
  a fresh SQLite ledger each round (the two kinds alternate which goes first).
  "Without" exists only here: this tool replaces the recorder's chain step on that one
  ledger object by a no-op (the product has no switch). Target <= +10 %. Durable puts
  wait for fsync, whose time varies by a millisecond or more on a shared machine, so
  the time spent in the chain step itself (timed around it) is printed too;
* an inclusion proof's generation: ``ledger.proofs.prove_inclusion`` of the event at
  a random leaf against the latest checkpoint (event, hash row, stored Merkle nodes,
  the self-check); target < 10 ms;
* checkpoint signing: one Ed25519 signed note of a checkpoint; and, for reference,
  ``write_checkpoint`` resuming after the log grew by ``--puts`` events;
* a server's checkpoint as the stored checkpoints pile up: on a fresh SQLite ledger
  with a checkpoint file, one put then one checkpoint, ``--checkpoints`` times, by
  one writer that keeps what it checked (as ``serve``'s does, W6); the median
  checkpoint of the last ten against the median of the second to eleventh. Target:
  at most 1.5 times (a server signs one every thousand events for as long as it
  runs: the cost must not grow with the number already stored). Likewise a
  consistency proof (``ledger.proofs.prove_consistency``) from the first checkpoint
  to the latest, timed after each of those same checkpoints.

The log (default 1,000,000 events) is the projections benchmark's generated log
(``tools/bench_projections.py``), cached under ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_projections import generated_log, print_table
from bench_put import SteppingClock

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.checkpoints import parse_checkpoint_line, sign_checkpoint
from ledger.evidence import (
    CheckedCheckpoints,
    CheckpointKeys,
    CheckpointStore,
    stored_records,
    verify_evidence,
    write_checkpoint,
)
from ledger.proofs import ProofStore, prove_consistency, prove_inclusion
from ledger.signed_note import Signer
from projections.log import LogReader

EVENTS_DEFAULT = 1_000_000
ROUNDS_DEFAULT = 3
PUTS_DEFAULT = 300
PROOFS_DEFAULT = 500
SIGNATURES_DEFAULT = 500
TARGET_VERIFY_RATIO = 0.5
TARGET_PUT_OVERHEAD = 0.10
TARGET_PROOF_MILLISECONDS = 10.0
CHECKPOINTS_DEFAULT = 2_000
CHECKPOINTS_TIMED = 10
TARGET_CHECKPOINT_GROWTH = 1.5
SIGNER = Signer("bench.local/1", bytes(range(32)))
KEYS = CheckpointKeys(SIGNER, (SIGNER.verifier,))
MILLISECONDS_PER_SECOND = 1_000


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def floor_hash(store: CheckpointStore) -> float:
    """Plain SHA-256 of every stored event's state, read as verify reads it."""
    started = time.perf_counter()
    for record in stored_records(store, 0):
        hashlib.sha256(record.state).digest()
    return time.perf_counter() - started


def verify_once(store: CheckpointStore) -> float:
    started = time.perf_counter()
    verification = verify_evidence(store, KEYS.verifiers, None)
    elapsed = time.perf_counter() - started
    assert verification.intact, verification.problem
    return elapsed


@dataclass
class ChainStepTimer:
    """Wraps one recorder's chain step, adding up the time spent in it."""

    step: Callable[..., None]
    seconds: float = 0.0

    def __call__(self, *arguments: Any) -> None:
        started = time.perf_counter()
        self.step(*arguments)
        self.seconds += time.perf_counter() - started


def put_round(directory: Path, puts: int, *, chained: bool) -> tuple[float, float]:
    """Seconds per durable put on a fresh ledger, with or without the chain step, and
    the seconds per put spent in the chain step itself."""
    database = directory / f"puts-{uuid.uuid4().hex}.db"
    secrets = Secrets(str(database), clock=SteppingClock())  # an hour per put: no cap
    recorder: Any = secrets.recorder
    timer = ChainStepTimer(recorder._insert_event_hashes)
    # Benchmark only: this one ledger object times its chain step, or skips it.
    recorder._insert_event_hashes = timer if chained else lambda *arguments: None
    api = SecretsManagerApi(secrets, record_calls=False)
    try:
        api.call(
            "CreateSecret", {"Name": "bench", "SecretString": "v", "ClientRequestToken": token()}
        )
        timer.seconds = 0.0
        started = time.perf_counter()
        for number in range(puts):
            api.call(
                "PutSecretValue",
                {"SecretId": "bench", "SecretString": f"v{number}", "ClientRequestToken": token()},
            )
        return (time.perf_counter() - started) / puts, timer.seconds / puts
    finally:
        secrets.close()


def token() -> str:
    return str(uuid.uuid4())


@dataclass
class PilingUp:
    """Seconds of each checkpoint, and of a consistency proof from the first checkpoint
    to the one just written (None: not timed)."""

    checkpoints: list[float] = field(default_factory=list)
    proofs: list[float | None] = field(default_factory=list)

    def early(self, samples: list[Any]) -> list[float]:
        """The second to eleventh (the very first checkpoint checks everything)."""
        return samples[1 : 1 + CHECKPOINTS_TIMED]

    def late(self, samples: list[Any]) -> list[float]:
        return samples[-CHECKPOINTS_TIMED:]

    def is_timed(self, number: int, count: int) -> bool:
        return 1 <= number <= CHECKPOINTS_TIMED or number >= count - CHECKPOINTS_TIMED


def checkpoints_piling_up(directory: Path, count: int) -> PilingUp:
    """``count`` checkpoints, each after one put, and the consistency proofs timed
    among the first and the last of them."""
    secrets = Secrets(str(directory / f"checkpoints-{uuid.uuid4().hex}.db"), clock=SteppingClock())
    store: CheckpointStore = secrets.recorder  # type: ignore[assignment]
    proof_store: ProofStore = secrets.recorder  # type: ignore[assignment]
    path = directory / "checkpoints.jsonl"
    api = SecretsManagerApi(secrets, record_calls=False)
    checked = CheckedCheckpoints()
    piling_up = PilingUp()
    first_size: int | None = None
    try:
        api.call(
            "CreateSecret", {"Name": "bench", "SecretString": "v", "ClientRequestToken": token()}
        )
        for number in range(count):
            api.call(
                "PutSecretValue",
                {"SecretId": "bench", "SecretString": f"v{number}", "ClientRequestToken": token()},
            )
            started = time.perf_counter()
            written = write_checkpoint(
                store, KEYS, now=utc_now, checkpoint_path=path, checked=checked
            )
            piling_up.checkpoints.append(time.perf_counter() - started)
            assert written.checkpoint is not None, written.reason
            checked = written.checked
            first_size = written.checkpoint.tree_size if first_size is None else first_size
            piling_up.proofs.append(
                consistency_once(proof_store, first_size)
                if piling_up.is_timed(number, count)
                else None
            )
    finally:
        secrets.close()
    return piling_up


def consistency_once(store: ProofStore, first_size: int) -> float:
    started = time.perf_counter()
    prove_consistency(store, first_size)
    return time.perf_counter() - started


def proof_once(store: CheckpointStore, leaf_index: int) -> float:
    """``prove_inclusion`` of the event at leaf ``leaf_index`` (found beforehand)."""
    position = store.select_event_hashes(leaf_index, 1)[0].notification_id
    proof_store: ProofStore = store  # type: ignore[assignment]
    started = time.perf_counter()
    proof = prove_inclusion(proof_store, position)
    elapsed = time.perf_counter() - started
    assert proof.leaf_index == leaf_index
    return elapsed


def median_milliseconds(samples: list[float]) -> float:
    return statistics.median(samples) * MILLISECONDS_PER_SECOND


def measure(arguments: argparse.Namespace) -> int:
    path = generated_log(arguments.cache_dir, arguments.events, arguments.events // 100, seed=1)
    log = LogReader.for_database(str(path))
    store: CheckpointStore = log.recorder  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        first = write_checkpoint(store, KEYS, now=utc_now, checkpoint_path=None)
        if first.checkpoint is not None:
            print(f"first checkpoint of the whole log: {time.perf_counter() - started:.1f} s")
        size = store.event_hash_count()
        floors: list[float] = []
        verifies: list[float] = []
        chained: list[float] = []
        unchained: list[float] = []
        steps: list[float] = []
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as directory:
            for number in range(arguments.rounds):
                floors.append(floor_hash(store))
                verifies.append(verify_once(store))
                for with_chain in (True, False) if number % 2 else (False, True):
                    seconds, step_seconds = put_round(
                        Path(directory), arguments.puts, chained=with_chain
                    )
                    (chained if with_chain else unchained).append(seconds)
                    if with_chain:
                        steps.append(step_seconds)
            piling_up = checkpoints_piling_up(Path(directory), arguments.checkpoints)
        generator = random.Random(1)
        proofs = [proof_once(store, generator.randrange(size)) for _ in range(arguments.proofs)]
        stored_latest = store.select_latest_checkpoint()
        assert stored_latest is not None, "the first checkpoint was written above"
        latest = parse_checkpoint_line(stored_latest.line)
        signatures = [time_signature(latest) for _ in range(SIGNATURES_DEFAULT)]
    finally:
        log.close()
    report(size, floors, verifies, (chained, unchained, steps), proofs, signatures)
    report_piling_up(arguments.checkpoints, piling_up)
    return 0


def time_signature(latest: Any) -> float:
    started = time.perf_counter()
    sign_checkpoint(
        SIGNER,
        tree_size=latest.tree_size,
        root=latest.root,
        position=latest.position,
        chain_head=latest.chain_head,
        time=utc_now(),
        previous=latest,
    )
    return time.perf_counter() - started


def report(
    size: int,
    floors: list[float],
    verifies: list[float],
    puts: tuple[list[float], list[float], list[float]],
    proofs: list[float],
    signatures: list[float],
) -> None:
    floor, verify = statistics.median(floors), statistics.median(verifies)
    put_with, put_without, step = (statistics.median(samples) for samples in puts)
    proof = median_milliseconds(proofs)
    rows = [
        ("measure", "figure", "compared with", "ratio", "target"),
        (
            f"verify {size:,} events",
            f"{size / verify:,.0f} events/s ({verify:.2f} s)",
            f"SHA-256 floor {size / floor:,.0f} events/s ({floor:.2f} s)",
            f"{floor / verify:.2f}",
            f">= {TARGET_VERIFY_RATIO}",
        ),
        (
            "durable put, chained",
            f"{put_with * MILLISECONDS_PER_SECOND:.2f} ms",
            f"unchained {put_without * MILLISECONDS_PER_SECOND:.2f} ms",
            f"{put_with / put_without - 1:+.1%}",
            f"<= +{TARGET_PUT_OVERHEAD:.0%}",
        ),
        (
            "chain step in a put",
            f"{step * MILLISECONDS_PER_SECOND:.3f} ms",
            f"of a chained put {put_with * MILLISECONDS_PER_SECOND:.2f} ms",
            f"{step / put_with:+.1%}",
            f"<= +{TARGET_PUT_OVERHEAD:.0%}",
        ),
        (
            "inclusion proof",
            f"{proof:.3f} ms median",
            f"p99 {sorted(proofs)[int(len(proofs) * 0.99) - 1] * MILLISECONDS_PER_SECOND:.3f} ms",
            "",
            f"< {TARGET_PROOF_MILLISECONDS:.0f} ms",
        ),
        ("checkpoint signature", f"{median_milliseconds(signatures):.3f} ms median", "", "", ""),
    ]
    print_table(rows)


def report_piling_up(count: int, piling_up: PilingUp) -> None:
    rows = [("measure", "figure", "compared with", "ratio", "target")]
    for what, samples in (
        ("server checkpoint", piling_up.checkpoints),
        ("consistency proof", piling_up.proofs),
    ):
        early, late = piling_up.early(samples), piling_up.late(samples)
        first, last = median_milliseconds(early), median_milliseconds(late)
        rows.append(
            (
                f"{what}, {count:,} stored",
                f"{last:.2f} ms median of the last {len(late)}",
                f"{first:.2f} ms with 2 to {len(early) + 1} stored",
                f"{last / first:.2f}",
                f"<= {TARGET_CHECKPOINT_GROWTH}",
            )
        )
    print_table(rows)


def parse(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench.py verify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=EVENTS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument("--puts", type=int, default=PUTS_DEFAULT)
    parser.add_argument("--proofs", type=int, default=PROOFS_DEFAULT)
    parser.add_argument("--checkpoints", type=int, default=CHECKPOINTS_DEFAULT)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/secretledger-bench/chained"))
    parsed = parser.parse_args(arguments)
    if parsed.events < 300:
        parser.error("need --events >= 300")
    if min(parsed.rounds, parsed.puts, parsed.proofs) < 1:
        parser.error("--rounds, --puts and --proofs must be at least 1")
    if parsed.checkpoints < 2 * CHECKPOINTS_TIMED + 1:
        parser.error(f"need --checkpoints >= {2 * CHECKPOINTS_TIMED + 1}")
    return parsed


def main(arguments: list[str]) -> int:
    return measure(parse(arguments))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
