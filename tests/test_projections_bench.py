"""The projections benchmark runs end to end on a tiny generated log."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_PATH = Path(__file__).resolve().parent.parent / "tools" / "bench_projections.py"

pytestmark = pytest.mark.slow


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_projections", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_prints_every_figure_on_a_small_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = bench_module()
    arguments = ["--events", "3000", "--secrets", "30", "--cache-dir", str(tmp_path)]
    arguments += ["--rounds", "1", "--queries", "50", "--log-replays", "1"]

    assert bench.main(arguments) == 0

    output = capsys.readouterr().out
    assert re.search(r"^projections: 3,\d{3} events, 30 secrets", output, re.MULTILINE)
    for label in (
        "read + decode every event (floor)",
        "full rebuild of all projections",
        "(reference) the same rebuild in one process",
        "rebuild peak memory (growth + writer)",
        "rebuild peak memory, absolute (every process)",
        "as-of query, median",
        "as-of query, 99th percentile",
        "same query by replaying the log, median",
    ):
        assert re.search(rf"^{re.escape(label)}\s+[\d,.]+ ", output, re.MULTILINE), label
    cached = list(tmp_path.glob("log-v*-events3000-secrets30-seed1.sqlite"))
    assert len(cached) == 1, "the generated log is cached by its parameters"

    assert bench.main(arguments) == 0, "a second run reuses the cached log"
    assert "using the cached log" in capsys.readouterr().err


def test_the_benchmark_refuses_impossible_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    bench = bench_module()
    with pytest.raises(SystemExit) as refused:
        bench.main(["--events", "10", "--secrets", "100"])
    assert refused.value.code == 2
    assert "--events >= 3 x --secrets" in capsys.readouterr().err
