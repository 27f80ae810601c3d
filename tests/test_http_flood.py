"""Floods of idle and slow sockets do not lock other clients out (`ledger.serving`).

A socket that never sends a request, or sends its head one line at a time
(slowloris), holds no call in progress: it neither counts toward the caps of
`ledger.admission` nor keeps anyone else waiting, and the head deadline closes
it by itself.

The uvicorn methods `HeadDeadlineProtocol` overrides are private:
`test_the_uvicorn_hooks_overridden_here_still_exist` and
`test_uvicorn_still_calls_send_400_response_for_broken_framing` fail when uvicorn
renames one, changes its parameters, or stops calling ``send_400_response`` for a
request httptools refuses."""

from __future__ import annotations

import inspect
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ledger.cli.serve import server_config
from ledger.serving import HeadDeadlineProtocol
from tests.http_harness import BROKEN_FRAMING, free_port, send_until_closed, start_server

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
    "on_headers_complete": ["self"],
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
            assert len(Recording400.messages) == 1, name
            assert isinstance(Recording400.messages[0], str), name
        Recording400.messages.clear()
        answer = send_until_closed(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ") and not Recording400.messages
