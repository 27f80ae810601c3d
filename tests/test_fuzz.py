"""Fuzzing the request path (tools/fuzz.py): requests from botocore's model, valid and
mutated, against the endpoint in-process and against a real `secretledger serve`.
Every answer within the timeout, never a 5xx, a 4xx only AWS-shaped, and a refused
request changes no secret. CI-sized; ``SECRETLEDGER_FUZZ_EXAMPLES=<factor>`` runs
that many times more examples (``python3 tools/fuzz.py`` runs longer still)."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_harness import RunningServer, start_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
import fuzz  # noqa: E402

from ledger.auth import write_credentials_file  # noqa: E402

SCALE = max(1, int(os.environ.get("SECRETLEDGER_FUZZ_EXAMPLES", "1")))
IN_PROCESS_EXAMPLES = 2_500 * SCALE
SERVER_EXAMPLES = 800 * SCALE
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=SCALE == 1,  # CI: the same examples every run; longer runs explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def target() -> Iterator[fuzz.InProcessTarget]:
    in_process = fuzz.InProcessTarget()
    yield in_process
    in_process.close()


@settings(FUZZ_SETTINGS, max_examples=IN_PROCESS_EXAMPLES)
@given(request=fuzz.requests())
def test_the_endpoint_in_process_keeps_the_rules(
    target: fuzz.InProcessTarget, request: fuzz.FuzzRequest
) -> None:
    target.check(request)


def test_the_in_process_check_catches_a_refusal_that_changed_state(
    target: fuzz.InProcessTarget,
) -> None:
    """The check can fail: a refusal that slipped a secret event in is caught."""
    request = fuzz.FuzzRequest("GetSecretValue", b'{"SecretId": "missing"}', "probe")
    original = target.send

    def send_and_write(probe: fuzz.FuzzRequest) -> tuple[int, dict[str, str], bytes]:
        target.secrets.state_event_count += 1
        return original(probe)

    target.send = send_and_write  # type: ignore[method-assign]
    try:
        with pytest.raises(AssertionError, match="changed state"):
            target.check(request)
    finally:
        target.send = original  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("fuzz-server")
    write_credentials_file(directory / "credentials.toml", [fuzz.PRINCIPAL])
    running = start_server(directory)
    for name in fuzz.EXISTING_NAMES:
        answer = running.call(
            "CreateSecret",
            {"Name": name, "ClientRequestToken": name.ljust(32, "0"), "SecretString": "v"},
            principal=fuzz.PRINCIPAL,
        )
        assert answer.status_code == 200, answer.text
    yield running
    running.stop_cleanly()


def state_event_count(server: RunningServer) -> int:
    with sqlite3.connect(f"file:{server.database}?mode=ro", uri=True) as connection:
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM stored_events WHERE topic NOT LIKE 'secretledger/ApiCall%'"
        ).fetchone()
    return int(count)


@pytest.mark.slow
@settings(FUZZ_SETTINGS, max_examples=SERVER_EXAMPLES)
@given(request=fuzz.requests(), mutation=st.sampled_from(sorted(fuzz.HEADER_MUTATIONS)))
def test_a_real_server_keeps_the_rules(
    server: RunningServer, request: fuzz.FuzzRequest, mutation: str
) -> None:
    before = state_event_count(server)
    status, headers, body = fuzz.send_raw(
        server.port, fuzz.raw_request(server.port, request, mutation)
    )
    fuzz.check_answer(status, headers, body, refused_with=fuzz.HEADER_MUTATIONS[mutation])
    if status != 200:
        assert state_event_count(server) == before, f"{request.note}, {mutation}"
