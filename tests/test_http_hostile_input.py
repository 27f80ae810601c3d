"""The cases of the security review (issue 11) against a real server: an authenticated
client sending numbers no record can hold, documents nested 600 deep, values far over
the model's lengths. Each gets an AWS-shaped 400 and its audit record; other clients'
calls are untouched (200, each with its record); the log gets no stack trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from http_harness import BOB, RunningServer, recorded_calls, start_server
from test_bounds import nested_tags

from ledger.bounds import AUDIT_STRING_LENGTH_MAX

pytestmark = pytest.mark.slow

READER_COUNT = 4
READS_PER_READER = 40
ATTACKS = 40
LOG_GROWTH_BYTES_MAX = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("http-hostile-input"))
    created = running.call(
        "CreateSecret",
        {"Name": "app/db", "ClientRequestToken": "t" * 32, "SecretString": "hunter2"},
    )
    assert created.status_code == 200, created.text
    yield running
    running.stop_cleanly()


def request_ids_recorded(server: RunningServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in recorded_calls(server):
        request_id = call.request["request_id"]
        counts[request_id] = counts.get(request_id, 0) + 1
    return counts


def test_huge_integers_fail_only_their_own_call_while_others_read(server: RunningServer) -> None:
    """2^64 and more: each such call is refused and recorded, and every concurrent
    read of another client answers 200 and has its record."""
    stop = threading.Event()

    def read(_: int) -> list[requests.Response]:
        with requests.Session() as session:
            return [
                server.call("GetSecretValue", {"SecretId": "app/db"}, session=session)
                for _ in range(READS_PER_READER)
            ]

    def attack() -> list[requests.Response]:
        answers = []
        with requests.Session() as session:
            for number in range(ATTACKS):
                huge = 2**64 + number if number % 2 else 2**70
                answers.append(
                    server.call("ListSecrets", {"MaxResults": huge}, principal=BOB, session=session)
                )
        stop.set()
        return answers

    with ThreadPoolExecutor(READER_COUNT + 1) as pool:
        attacker = pool.submit(attack)
        readers = list(pool.map(read, range(READER_COUNT)))
        attacks = attacker.result()
    reads = [response for answers in readers for response in answers]
    assert [response.status_code for response in reads] == [200] * len(reads)
    assert {response.json()["SecretString"] for response in reads} == {"hunter2"}
    assert {(r.status_code, r.json()["__type"]) for r in attacks} == {
        (400, "SerializationException")
    }
    recorded = request_ids_recorded(server)
    for response in [*reads, *attacks]:
        assert recorded.get(response.headers["x-amzn-RequestId"]) == 1, "one record per answer"


def test_tags_nested_600_deep_are_a_400_with_a_record_and_a_short_log(
    server: RunningServer,
) -> None:
    log_size_before = len(server.log())
    response = server.call("CreateSecret", nested_tags(600))
    assert response.status_code == 400
    assert response.json()["__type"] == "SerializationException"
    assert "deeper than 16" in response.json()["Message"]
    assert request_ids_recorded(server).get(response.headers["x-amzn-RequestId"]) == 1
    assert len(server.log()) - log_size_before <= LOG_GROWTH_BYTES_MAX
    assert "Traceback" not in server.log()


@pytest.mark.parametrize(
    ("operation", "members", "error_code"),
    [
        ("ListSecrets", {"MaxResults": 2**63 - 1}, "ValidationException"),
        ("ListSecrets", {"MaxResults": 1e400}, "SerializationException"),
        ("CreateSecret", {"Name": "n" * 900_000}, "ValidationException"),
        ("CreateSecret", {"Name": "x", "Tags": [{"Key": 5}] * 20_000}, "SerializationException"),
        ("ListSecrets", {"Filters": [{"Key": "name", "Values": ["v"] * 50_000}]}, None),
        ("GetSecretValue", {"SecretId": "app/db", "VersionId": ["x"] * 10_000}, None),
    ],
    ids=["2^63-1", "1e400", "long name", "many bad tags", "many values", "list for a string"],
)
def test_oversized_members_are_refused_and_recorded_in_bounds(
    server: RunningServer, operation: str, members: dict[str, Any], error_code: str | None
) -> None:
    response = server.call(operation, members)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"__type", "Message"}
    if error_code is not None:
        assert body["__type"] == error_code
    [record] = [
        call
        for call in recorded_calls(server)
        if call.request["request_id"] == response.headers["x-amzn-RequestId"]
    ]
    assert record.error_code == body["__type"]
    assert len(record.error_message or "") <= 2 * AUDIT_STRING_LENGTH_MAX
    assert len(repr(record.request)) <= 100 * AUDIT_STRING_LENGTH_MAX


def test_no_hostile_input_caused_a_server_error(server: RunningServer) -> None:
    assert not [
        call for call in recorded_calls(server) if call.error_code == "InternalServiceError"
    ]
    assert "unexpected" not in server.log()
    assert "dropped a call record" not in server.log()


def test_the_server_directory_holds_no_secret_value(server: RunningServer) -> None:
    for path in Path(server.log_path).parent.glob("server-*.log"):
        assert "hunter2" not in path.read_text(encoding="utf-8", errors="replace")
