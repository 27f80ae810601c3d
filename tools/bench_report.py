"""Benchmark of the compliance report: `python3 tools/bench.py report [--events N --secrets M]`.

Prints, in one run, on the projections benchmark's generated SQLite log
(``tools/bench_projections.py``, default 1,000,000 events over 10,000 secrets, cached
under ``--cache-dir``):

* the reference: a full rebuild of all projections (drop, then replay from position
  zero, SQL in a writer process), in a fresh process;
* ``secretledger report`` (``--format json`` by default) on the same log with its
  projections caught up (as ``follow`` keeps them), in a fresh process: the whole
  command, with ``verify`` over the log and every secret's figures and findings.
  Target: less time than the rebuild;
* the peak memory of each, counted as the absolute peak resident set of every process
  involved (the measuring process and any writer process it started, added up, as if
  they peaked at once); target < 200 MB for the report.

Medians of ``--rounds`` interleaved rounds (rebuild, then report), as the machine is
shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_projections import (
    EVENTS_DEFAULT,
    KILOBYTES_PER_MEGABYTE,
    SECRETS_DEFAULT,
    START,
    TARGET_PEAK_MEGABYTES,
    generated_log,
    print_table,
    rebuild_in_child,
)

from projections.base import format_instant

ROUNDS_DEFAULT = 3
FORMATS = ("json", "md", "html")


def report_in_child(path: Path, output_format: str) -> dict[str, Any]:
    """The report command in a fresh process, to measure its peak memory."""
    completed = subprocess.run(
        [sys.executable, __file__, "--report-child", str(path), "--format", output_format],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the report failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def report_child(path: Path, output_format: str) -> int:
    from ledger.cli import main as command

    arguments = ["report", "--db", str(path), "--format", output_format, "--out", os.devnull]
    arguments += ["--since", format_instant(START)]  # first-time readers counted too
    started = time.perf_counter()
    command.main(arguments, standalone_mode=False)
    seconds = time.perf_counter() - started
    own_kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kilobytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "maxrss_kilobytes": own_kilobytes,
                "children_maxrss_kilobytes": children_kilobytes,
            }
        )
    )
    return 0


def megabytes(kilobytes: float) -> str:
    return f"{kilobytes / KILOBYTES_PER_MEGABYTE:,.1f} MB"


def measure(arguments: argparse.Namespace) -> int:
    path = generated_log(arguments.cache_dir, arguments.events, arguments.secrets, arguments.seed)
    rebuilds, reports = [], []
    for _ in range(arguments.rounds):
        rebuilds.append(rebuild_in_child(path, writer_process=True))
        reports.append(report_in_child(path, arguments.format))
    rebuild_seconds = statistics.median(result["seconds"] for result in rebuilds)
    report_seconds = statistics.median(result["seconds"] for result in reports)
    rebuild_peak = max(
        result["maxrss_after_kilobytes"] + result["writer_maxrss_kilobytes"] for result in rebuilds
    )
    report_own = max(result["maxrss_kilobytes"] for result in reports)
    report_children = max(result["children_maxrss_kilobytes"] for result in reports)
    rows = [
        ("full rebuild of all projections (reference)", f"{rebuild_seconds:,.2f} s", "1.00", ""),
        (
            f"secretledger report --format {arguments.format}",
            f"{report_seconds:,.2f} s",
            f"{report_seconds / rebuild_seconds:.2f} of rebuild",
            "target < 1.00",
        ),
        (
            "rebuild peak memory, absolute (every process)",
            megabytes(rebuild_peak),
            "",
            "",
        ),
        (
            "report peak memory, absolute (every process)",
            megabytes(report_own + report_children),
            f"process {megabytes(report_own)} + children {megabytes(report_children)}",
            f"target < {TARGET_PEAK_MEGABYTES} MB",
        ),
    ]
    size_megabytes = path.stat().st_size / (KILOBYTES_PER_MEGABYTE * KILOBYTES_PER_MEGABYTE)
    print(
        f"report: {rebuilds[-1]['position']:,} events, {arguments.secrets:,} secrets, SQLite file "
        f"{size_megabytes:,.0f} MB; medians of {arguments.rounds} interleaved round(s)"
    )
    print_table(rows)
    return 0


def parse(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/bench.py report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=EVENTS_DEFAULT)
    parser.add_argument("--secrets", type=int, default=SECRETS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument("--format", choices=FORMATS, default="json")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/secretledger-bench"))
    parser.add_argument("--report-child", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args(arguments)
    if parsed.events < 1 or parsed.secrets < 1 or parsed.secrets * 3 > parsed.events:
        parser.error("need --events >= 3 x --secrets >= 3")
    if parsed.rounds < 1:
        parser.error("--rounds must be at least 1")
    return parsed


def main(arguments: list[str]) -> int:
    parsed = parse(arguments)
    if parsed.report_child is not None:
        return report_child(parsed.report_child, parsed.format)
    return measure(parsed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
