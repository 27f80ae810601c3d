"""`python3 tools/bench.py http --quick` still runs end to end, so the benchmark cannot
rot: it starts the floor server and secret-ledger, drives both with boto3 and prints
the comparison table."""

from __future__ import annotations

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
        capture_output=True, text=True, timeout=BENCH_TIMEOUT_SECONDS, check=False,
        cwd=REPOSITORY,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    floor = next(line for line in lines if line.startswith("constant answer (floor)"))
    assert floor.split()[-1] == "1.00" and floor.split()[-3] == "1.00"
    for records in ("durable", "async"):
        ledger = next(line for line in lines
                      if line.startswith(f"secret-ledger (SQLite, {records} records)"))
        assert float(ledger.split()[-1]) > 0 and float(ledger.split()[-3]) > 0
        assert any(line.startswith(f"target >= 0.8 of the floor, secret-ledger (SQLite, {records}")
                   for line in lines)
