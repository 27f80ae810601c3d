"""Floods of idle and slow sockets do not lock other clients out, huge request heads
are refused, and floods of refused requests add a bounded number of log lines
(`ledger.serving`).

A socket that never sends a request, or sends its head one line at a time
(slowloris), holds no call in progress: it neither counts toward the caps of
`ledger.admission` nor keeps anyone else waiting, and the head deadline closes
it by itself. A head of more than 64 KiB, sent at once or a little at a time, is
refused (IL-8); bodies and pipelined requests are not counted as one.

The uvicorn methods `HeadDeadlineProtocol` overrides are private:
`test_the_uvicorn_hooks_overridden_here_still_exist`,
`test_uvicorn_still_calls_send_400_response_for_broken_framing` and
`test_uvicorn_still_logs_the_warnings_bounded_here` fail when uvicorn renames one,
changes its parameters, stops calling ``send_400_response`` for a request httptools
refuses, or changes the text of a warning `ClientWarningBound` bounds."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ledger import serving
from ledger.cli.serve import server_config
from ledger.serving import (
    BOUNDED_WARNINGS,
    CAPACITY_WARNING,
    HEAD_SIZE_BYTES_MAX,
    HEAD_TOO_LARGE_MESSAGE,
    INVALID_REQUEST_WARNING,
    UPGRADE_WARNING,
    WEBSOCKET_ADVICE_PREFIX,
    ClientWarningBound,
    HeadDeadlineProtocol,
)
from tests.http_harness import (
    BROKEN_FRAMING,
    exchange,
    free_port,
    send_until_closed,
    start_server,
)

IDLE_SOCKETS = 500
SLOWLORIS_CONNECTIONS = 150
SLOWLORIS_LINE_SECONDS = 2.0
ANSWER_SECONDS_MAX = 1.0
READS_DURING_FLOOD = 5
SHORT_HEAD_SECONDS = 0.5
CLOSED_WITHIN_SECONDS = 5.0


@contextmanager
def flood(port: int) -> Iterator[list[socket.socket]]:
    """500 idle sockets plus 150 that send a header line every 2 s, until the block
    ends (a thread feeds the slow ones; it stops with the block)."""
    with ExitStack() as stack:
        idle = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            for _ in range(IDLE_SOCKETS)
        ]
        slow = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            for _ in range(SLOWLORIS_CONNECTIONS)
        ]
        for connection in slow:
            connection.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        stopped = threading.Event()

        def trickle() -> None:
            line = 0
            while not stopped.wait(SLOWLORIS_LINE_SECONDS):
                line += 1
                for connection in slow:
                    with suppress(OSError):  # closed by the server: that is the point
                        connection.sendall(f"X-Slow-{line}: x\r\n".encode())

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        try:
            yield idle + slow
        finally:
            stopped.set()
            feeder.join()


def still_open(connections: list[socket.socket]) -> int:
    """How many of the connections the server has not closed."""
    return sum(1 for connection in connections if not closed_by_peer(connection))


def closed_by_peer(connection: socket.socket) -> bool:
    """True once the server has closed (or reset) the connection; never blocks."""
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, nothing to read
    except OSError:
        return True


@pytest.mark.slow
def test_a_signed_read_answers_within_a_second_during_a_flood(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        created = server.call(
            "CreateSecret",
            {"Name": "quiet", "SecretString": "calm", "ClientRequestToken": "t" * 32},
        )
        assert created.status_code == 200, created.text
        with flood(server.port) as connections:
            time.sleep(SLOWLORIS_LINE_SECONDS * 1.5)  # the slow ones have sent more lines
            assert still_open(connections) == IDLE_SOCKETS + SLOWLORIS_CONNECTIONS
            for _ in range(READS_DURING_FLOOD):
                started = time.monotonic()
                answer = server.call("GetSecretValue", {"SecretId": "quiet"})
                elapsed_seconds = time.monotonic() - started
                assert answer.status_code == 200, answer.text
                assert json.loads(answer.text)["SecretString"] == "calm"
                assert elapsed_seconds < ANSWER_SECONDS_MAX
    finally:
        server.stop()


class ShortHeadDeadline(HeadDeadlineProtocol):
    head_seconds_max = SHORT_HEAD_SECONDS


async def answer_ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def in_process_server(protocol: type[HttpToolsProtocol]) -> Iterator[int]:
    """uvicorn in a thread, with the endpoint's settings, ``protocol`` and `answer_ok`."""
    port = free_port()
    config = server_config(answer_ok, "127.0.0.1", port)
    config.http = protocol
    config.lifespan = "off"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join()


def closed_by_server_within(connection: socket.socket, seconds: float, line: bytes) -> bool:
    """Send ``line`` every tenth of a second until the server closes the connection."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection.sendall(line)
        except OSError:
            return True
        time.sleep(0.1)
        if closed_by_peer(connection):
            return True
    return False


def test_a_head_that_trickles_in_is_cut_off_at_the_deadline() -> None:
    with (
        in_process_server(ShortHeadDeadline) as port,
        socket.create_connection(("127.0.0.1", port)) as slow,
    ):
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert closed_by_server_within(slow, CLOSED_WITHIN_SECONDS, b"X-Slow: x\r\n")
        assert time.monotonic() - started >= SHORT_HEAD_SECONDS * 0.8


class ThreeConnections(HeadDeadlineProtocol):
    connections_max = 3


def test_a_request_beyond_the_connection_cap_is_answered_aws_shaped_and_logged_bounded() -> None:
    """uvicorn's own cap answers plain text and logs every refusal; this one answers
    like the endpoint (503 ServiceUnavailable, which the SDKs retry) and its warning
    is one of those `ClientWarningBound` bounds."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with in_process_server(ThreeConnections) as port, ExitStack() as idle:
        for _ in range(2):
            idle.enter_context(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.1)  # the server has accepted both
        with mock.patch.object(logging.getLogger("uvicorn.error"), "warning") as warning:
            answer = send_until_closed(port, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"content-type: application/x-amz-json-1.1" in head.lower()
        assert b"connection: close" in head.lower()
        assert json.loads(body)["__type"] == "ServiceUnavailable"
        assert [entry.args for entry in warning.call_args_list] == [(CAPACITY_WARNING,)]
        idle.close()
        time.sleep(0.1)
        assert send_until_closed(
            port, request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        ).startswith(b"HTTP/1.1 200 ")
    assert CAPACITY_WARNING in BOUNDED_WARNINGS


def test_an_idle_socket_is_closed_and_a_prompt_client_is_served() -> None:
    with in_process_server(ShortHeadDeadline) as port:
        with socket.create_connection(("127.0.0.1", port)) as idle:
            assert closed_by_server_within(idle, CLOSED_WITHIN_SECONDS, b"")
        with socket.create_connection(("127.0.0.1", port)) as prompt:
            prompt.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok"):
                answer += prompt.recv(1024)
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(SHORT_HEAD_SECONDS * 2)  # idle after its answer: closed
            assert closed_by_peer(prompt)


# The uvicorn methods HeadDeadlineProtocol overrides, with the parameters it relies on.
UVICORN_HOOKS = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
    "send_400_response": ["self", "msg"],
}


def test_the_uvicorn_hooks_overridden_here_still_exist() -> None:
    for name, parameters in UVICORN_HOOKS.items():
        upstream = getattr(HttpToolsProtocol, name, None)
        assert callable(upstream), f"uvicorn's HttpToolsProtocol has no {name} any more"
        assert list(inspect.signature(upstream).parameters) == parameters, name
        assert name in vars(HeadDeadlineProtocol), f"HeadDeadlineProtocol overrides {name}"
    overridden = {
        name
        for name in vars(HeadDeadlineProtocol)
        if callable(getattr(HttpToolsProtocol, name, None)) and name != "__init__"
    }
    assert overridden == set(UVICORN_HOOKS), "an override of uvicorn not guarded here"


class Recording400(HttpToolsProtocol):
    """uvicorn's own protocol, noting each call of send_400_response."""

    messages: ClassVar[list[str]] = []

    def send_400_response(self, msg: str) -> None:
        self.messages.append(msg)
        super().send_400_response(msg)


def test_uvicorn_still_calls_send_400_response_for_broken_framing() -> None:
    with in_process_server(Recording400) as port:
        for name, request in BROKEN_FRAMING.items():
            Recording400.messages.clear()
            answer = send_until_closed(port, request)
            assert answer.startswith(b"HTTP/1.1 400 "), name
            # uvicorn logs this same text as a warning before it answers
            assert Recording400.messages == [INVALID_REQUEST_WARNING], name
        Recording400.messages.clear()
        answer = send_until_closed(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ") and not Recording400.messages


UPGRADE_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n"


def test_uvicorn_still_logs_the_warnings_bounded_here() -> None:
    """`ClientWarningBound` recognizes uvicorn's warnings by their text: a broken
    request logs one, an upgrade request two (the second, advice to install a
    WebSocket library, is the one the filter always drops)."""
    error_logger = logging.getLogger("uvicorn.error")
    with (
        in_process_server(HttpToolsProtocol) as port,
        mock.patch.object(error_logger, "warning") as warning,
    ):
        send_until_closed(port, BROKEN_FRAMING["header line without a colon"])
        assert [entry.args for entry in warning.call_args_list] == [(INVALID_REQUEST_WARNING,)]
        warning.reset_mock()
        assert send_until_closed(port, UPGRADE_REQUEST).startswith(b"HTTP/1.1 200 ")
        [(first,), (second,)] = [entry.args for entry in warning.call_args_list]
        assert first == UPGRADE_WARNING
        assert second.startswith(WEBSOCKET_ADVICE_PREFIX)


# Request heads over and under the size cap (IL-8), against `answer_ok`.


def head_of(size: int, headers: bytes = b"Connection: close\r\n") -> bytes:
    """A GET head of exactly ``size`` bytes (request line and headers), padded by one
    header."""
    start = b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"X-Padding: "
    head = start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


def assert_head_too_large(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: application/x-amz-json-1.1" in head
    assert b"connection: close" in head
    assert b"x-amzn-requestid: " in head
    assert json.loads(body) == {
        "__type": "SerializationException",
        "Message": HEAD_TOO_LARGE_MESSAGE,
    }


def test_a_head_at_the_cap_is_served_and_a_byte_more_is_refused() -> None:
    with in_process_server(HeadDeadlineProtocol) as port:
        assert exchange(port, head_of(HEAD_SIZE_BYTES_MAX)).startswith(b"HTTP/1.1 200 ")
        assert_head_too_large(exchange(port, head_of(HEAD_SIZE_BYTES_MAX + 1)))
        assert_head_too_large(exchange(port, head_of(70_000)))
        assert_head_too_large(exchange(port, head_of(1_000_000)))


def test_a_head_over_the_cap_in_small_pieces_is_refused() -> None:
    with in_process_server(HeadDeadlineProtocol) as port:
        assert_head_too_large(exchange(port, head_of(70_000), piece_bytes=1_000))
        answer = exchange(port, head_of(60_000), piece_bytes=1_000)
        assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_body_read_with_its_head_is_not_counted_as_head() -> None:
    body = b"b" * (2 * HEAD_SIZE_BYTES_MAX)
    head = head_of(HEAD_SIZE_BYTES_MAX, b"Content-Length: %d\r\nConnection: close\r\n" % len(body))
    with in_process_server(HeadDeadlineProtocol) as port:
        assert exchange(port, head + body).startswith(b"HTTP/1.1 200 ")


def test_pipelined_requests_are_served() -> None:
    """Two small requests sent at once, and two of 60 KB each (together over the cap):
    both answered, in order, on one connection."""
    keep_alive = b"Connection: keep-alive\r\n"
    small = head_of(100, keep_alive) + head_of(100)
    large = head_of(60_000, keep_alive) + head_of(60_000)
    with in_process_server(HeadDeadlineProtocol) as port:
        for pair in (small, large):
            answer = exchange(port, pair)
            assert answer.count(b"HTTP/1.1 200 ") == 2, answer[:300]
            assert answer.endswith(b"ok")


def test_a_pipelined_head_over_twice_the_cap_is_refused() -> None:
    """A head that begins inside a piece fed to the parser is counted from the end of
    that piece: refused before it holds twice the cap."""
    pair = head_of(100, b"Connection: keep-alive\r\n") + head_of(2 * HEAD_SIZE_BYTES_MAX + 1)
    with in_process_server(HeadDeadlineProtocol) as port:
        answer = exchange(port, pair)
    assert b"HTTP/1.1 200 " in answer
    assert_head_too_large(answer[answer.index(b"HTTP/1.1 400 ") :])


# Lingering close: the refusal reaches a client that is still sending.


def test_a_client_that_sends_its_whole_huge_head_before_reading_gets_the_refusal() -> None:
    """http.client (as boto3) reads nothing until its request is sent: closing at once
    with its bytes unread reset the connection under it (before: ConnectionResetError
    at 16 MB)."""
    with in_process_server(HeadDeadlineProtocol) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/", headers={"X-Big": "p" * 16_000_000})
        response = connection.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["Message"] == HEAD_TOO_LARGE_MESSAGE
        connection.close()


def test_a_refused_client_that_keeps_sending_is_cut_off_by_time_or_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serving, "LINGER_SECONDS_MAX", 0.5)
    monkeypatch.setattr(serving, "LINGER_BYTES_MAX", 1_000_000)
    with in_process_server(HeadDeadlineProtocol) as port:
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(head_of(HEAD_SIZE_BYTES_MAX + 1))
            started = time.monotonic()
            assert closed_by_server_within(slow, CLOSED_WITHIN_SECONDS, b"x" * 100)
            assert 0.4 <= time.monotonic() - started < 2  # the time bound, not sooner
        with socket.create_connection(("127.0.0.1", port)) as fast:
            fast.sendall(head_of(HEAD_SIZE_BYTES_MAX + 1))
            started = time.monotonic()
            assert closed_by_server_within(fast, CLOSED_WITHIN_SECONDS, b"x" * 400_000)
            assert time.monotonic() - started < 0.4  # the byte bound, before the time one


# The bound on uvicorn's warnings about what clients send (IL-6).


def warning_record(message: str) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 0, message, None, None)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def captured_logger(name: str, bound: ClientWarningBound) -> Iterator[Captured]:
    logger = logging.getLogger(name)
    captured = Captured()
    logger.addHandler(captured)
    logger.addFilter(bound)
    logger.propagate = False
    try:
        yield captured
    finally:
        logger.propagate = True
        logger.removeFilter(bound)
        logger.removeHandler(captured)


def test_client_warnings_are_bounded_per_window_and_counted() -> None:
    bound = ClientWarningBound(per_window=3, window_seconds=0.2, logger_name="test.bound")

    async def flood() -> None:
        logger = logging.getLogger("test.bound")
        for _ in range(10):
            logger.warning(INVALID_REQUEST_WARNING)
            logger.warning(UPGRADE_WARNING)
            logger.warning(WEBSOCKET_ADVICE_PREFIX + " Please use ...")
        logger.warning("Exceeded concurrency limit.")
        logger.error("Exception in ASGI application\n")
        await asyncio.sleep(0.4)  # the window ends on a timer of this loop
        logger.warning(INVALID_REQUEST_WARNING)  # a new window

    with captured_logger("test.bound", bound) as captured:
        asyncio.run(flood())
        bound.flush()  # nothing held back in the new window: nothing written
    assert captured.messages == [
        *[INVALID_REQUEST_WARNING, UPGRADE_WARNING] * 3,
        "Exceeded concurrency limit.",
        "Exception in ASGI application\n",
        "7 further invalid HTTP requests in the last minute (at most 3 a minute are logged).",
        "7 further unsupported upgrade requests in the last minute "
        "(at most 3 a minute are logged).",
        INVALID_REQUEST_WARNING,
    ]


def test_without_an_event_loop_the_next_warning_or_flush_ends_the_window() -> None:
    bound = ClientWarningBound(per_window=1, window_seconds=0.1, logger_name="test.bound")
    with captured_logger("test.bound", bound) as captured:
        logger = logging.getLogger("test.bound")
        for _ in range(3):
            logger.warning(INVALID_REQUEST_WARNING)
        time.sleep(0.2)
        logger.warning(INVALID_REQUEST_WARNING)
        logger.warning(INVALID_REQUEST_WARNING)
        bound.flush()
    summary = "{} further invalid HTTP requests in the last minute (at most 1 a minute are logged)."
    assert captured.messages == [
        INVALID_REQUEST_WARNING,
        summary.format(2),
        INVALID_REQUEST_WARNING,
        summary.format(1),
    ]
