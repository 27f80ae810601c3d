"""`python3 tools/bench.py http --quick` still runs end to end, so the benchmark cannot
rot: it starts the floor server and secret-ledger, drives both with raw SigV4 clients
and with boto3 and prints the comparison tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
BENCH_TIMEOUT_SECONDS = 300


def test_the_quick_http_benchmark_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "tools" / "bench.py"), "http", "--quick"],
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
        check=False,
        cwd=REPOSITORY,
        env={
            name: value
            for name, value in os.environ.items()
            if name != "SECRETLEDGER_TEST_POSTGRES_URL"
        },  # SQLite only: quick
    )
    assert result.returncode == 0, result.stderr
    everything = result.stdout.splitlines()
    lines = everything[: everything.index("Targets (issue 11)")]
    raw_floor, floor = [line for line in lines if line.startswith("constant answer (floor)")]
    assert raw_floor.split()[4::3] == ["1.00"] * 4  # raw clients: Put and Get, x1 and x4
    assert all(cell.endswith("ms") for cell in raw_floor.split()[5::3])  # server CPU per call
    assert floor.split()[-1] == "1.00" and floor.split()[-3] == "1.00"
    for records in ("durable", "async"):
        raw, ledger = [
            line for line in lines if line.startswith(f"secret-ledger (SQLite, {records} records)")
        ]
        assert all(float(cell) > 0 for cell in raw.split()[4::3])
        assert float(ledger.split()[-1]) > 0 and float(ledger.split()[-3]) > 0
        verdicts = [
            line
            for line in everything[len(lines) :]
            if line.startswith(f"secret-ledger (SQLite, {records} records)")
        ]
        assert any("CPU ms per Get x4" in line for line in verdicts)
        assert all(line.endswith((" met", " missed")) for line in verdicts)
