"""Refused requests leave a bounded trail (rules DR-1 to DR-4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from click.testing import CliRunner

from ledger.cli import main
from ledger.refusals import OTHER_SOURCES, RefusalCount, RefusalLimiter
from tests.http_harness import recorded_calls, start_server, target_headers

START = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)
MISSING = "MissingAuthenticationTokenException"
FLOOD_SIZE = 300


def test_a_source_gets_a_bounded_number_of_full_records_per_window_then_a_count() -> None:
    limiter = RefusalLimiter(records_per_window=3, window_seconds=60)
    admitted = [limiter.admit("198.51.100.7", MISSING, START) for _ in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert limiter.admit("198.51.100.7", "IncompleteSignature", START)  # another reason
    assert limiter.admit("198.51.100.8", MISSING, START)  # another source
    assert limiter.ended(START + timedelta(seconds=59)) == []
    assert limiter.ended(START + timedelta(seconds=60)) == [
        RefusalCount("198.51.100.7", MISSING, 7, START, START + timedelta(seconds=60))
    ]
    # A new window starts with full records again; the closed windows counted nothing
    # more and made no summary.
    later = START + timedelta(seconds=61)
    assert limiter.admit("198.51.100.7", MISSING, later)
    assert limiter.drain(later) == []


def test_sources_beyond_the_table_share_one_window_per_reason() -> None:
    limiter = RefusalLimiter(records_per_window=1, window_seconds=60, sources_max=2)
    for number in range(10):
        limiter.admit(f"203.0.113.{number}", MISSING, START)
    (count,) = limiter.drain(START + timedelta(seconds=5))
    assert (count.source_ip, count.count, count.window_end) == (
        OTHER_SOURCES,
        7,
        START + timedelta(seconds=5),
    )


def test_a_flood_of_unsigned_requests_leaves_a_bounded_number_of_records(tmp_path: Path) -> None:
    """DR-1 to DR-3 through serve: 300 unsigned requests in well under a minute make
    ten full records and, at shutdown, one record counting the other 290."""
    server = start_server(tmp_path)
    try:
        with requests.Session() as session:
            headers = {**target_headers("GetSecretValue"), "User-Agent": "flood/" + "x" * 1000}
            for _ in range(FLOOD_SIZE):
                answer = session.post(server.url, data=b"{}", headers=headers, timeout=30)
                assert answer.json()["__type"] == MISSING
        while_running = recorded_calls(server)
        assert len(while_running) == 10
        assert {len(call.request["user_agent"]) for call in while_running} == {64}
    finally:
        server.stop()
    calls = recorded_calls(server)
    assert len(calls) == 11
    summary = calls[-1]
    assert (summary.error_code, summary.request["source_ip"]) == (MISSING, "127.0.0.1")
    assert summary.refusals_counted is not None
    assert summary.refusals_counted["count"] == FLOOD_SIZE - 10
    assert summary.refusals_counted["window_start"] <= summary.refusals_counted["window_end"]
    assert summary.error_message is not None
    assert summary.error_message.startswith(f"{FLOOD_SIZE - 10} more refusal(s) ({MISSING})")

    query = ["audit", "query", "--error-code", MISSING, "--json", "--db", str(server.database)]
    result = CliRunner().invoke(main, query)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 11
    assert records[-1]["additionalEventData"]["secretLedger.refusalsCounted"] == {
        "count": FLOOD_SIZE - 10,
        "windowStart": summary.refusals_counted["window_start"],
        "windowEnd": summary.refusals_counted["window_end"],
    }
