"""Benchmarks: `python3 tools/bench.py {put,http,projections,verify,report} [options]`.

Each prints a table of figures measured side by side in one run, with the
floor it is compared to and the ratio; medians of repeated rounds, because the
machines are shared and noisy.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "put": "bench_put",
    "http": "bench_http",
    "projections": "bench_projections",
    "verify": "bench_verify",
    "report": "bench_report",
}


def main(arguments: list[str]) -> int:
    if not arguments or arguments[0] not in BENCHMARKS:
        print(f"usage: python3 tools/bench.py {{{','.join(BENCHMARKS)}}} [--help]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[arguments[0]])
    result: int = module.main(arguments[1:])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
