"""The HTTP connection protocol of `secretledger serve`: uvicorn's httptools
protocol with a deadline and a size cap for each request head, AWS-shaped
refusals of broken HTTP framing, and a bound on the log lines such requests add.

This module is the one place where secret-ledger overrides private methods of
uvicorn, its HTTP server (those of eventsourcing are overridden in
`ledger.eventsourcing_hooks`).
`HeadDeadlineProtocol` overrides these methods of uvicorn's `HttpToolsProtocol`
(uvicorn calls them; none is a documented extension point):

* ``connection_made(transport)``, ``connection_lost(exc)``,
  ``on_headers_complete()`` and ``on_response_complete()``: the head deadline
  (``on_headers_complete`` also answers requests beyond the connection cap);
* ``data_received(data)`` and ``on_message_complete()``, with
  ``connection_made`` and ``on_headers_complete``: the head size cap;
* ``send_400_response(msg)``: the answer to a request httptools cannot parse;
* ``connection_made(transport)`` also hands uvicorn the socket's transport
  wrapped (`ClosingAfterTheBody`) for the lingering close below, which relies on
  uvicorn closing connections through the transport it was given
  (``tests/test_http_bad_input.py``,
  ``test_a_client_sending_a_body_over_the_drain_bound_gets_the_refusal``, fails
  otherwise).

``tests/test_http_flood.py`` (``test_the_uvicorn_hooks_overridden_here_still_exist``,
``test_uvicorn_still_calls_send_400_response_for_broken_framing`` and
``test_uvicorn_still_logs_the_warnings_bounded_here``) fails when uvicorn renames
one of them, changes its parameters, stops calling ``send_400_response`` or
changes the text of a warning `ClientWarningBound` bounds.

Head deadline. uvicorn closes a keep-alive connection only after it has been
silent for ``timeout_keep_alive`` since a response, and never bounds the time a
request head takes: a socket that sends nothing, or one header line every few
seconds (slowloris), stays open for as long as its sender likes, and each one
counts toward uvicorn's connection cap. `HeadDeadlineProtocol` closes a
connection whose next request head is not complete within ``HEAD_SECONDS_MAX`` of
the connection opening or of the previous response, however many bytes trickle
in meanwhile. Idle and slow sockets then cost a timer each and go away by
themselves, so the server's caps can count requests in progress instead
(`ledger.admission`).

Head size (rule IL-8 of docs/limits.md). Neither httptools nor uvicorn bounds a
request head: a 200 KB header is buffered, parsed and handed to the endpoint.
`HeadDeadlineProtocol` counts the bytes of each head, from the connection opening
or the end of the previous request's message (its body included) until the
head's last header, and refuses a head of more than ``HEAD_SIZE_BYTES_MAX``
(64 KiB) bytes. ``data_received`` feeds httptools at most what the open head may
still take, so a head is never parsed past the cap, and a body arriving in the
same read as its head is fed after the head completes, uncounted (the endpoint
caps bodies itself). It feeds at most ``HEAD_SIZE_BYTES_MAX`` bytes at a time in
any case, so a pipelined head that begins inside such a piece (after the body of
the request before it) is counted from the end of that piece: it is refused
before it holds more than twice the cap. The refusal is the AWS-shaped 400 of
broken framing below, with its own message; it is not logged.

Lingering close. After either refusal the server still has the client's unread
bytes (the rest of a large head, a body), and closing a socket with unread bytes
makes the kernel reset the connection: a client that sends its whole request
before reading (``http.client``, and so boto3) got a reset instead of the answer
once its head was a few MB. So the refusal ends the server's side only
(``write_eof``) and reads on, discarding, until the client closes, or
``LINGER_SECONDS_MAX`` pass, or more than ``LINGER_BYTES_MAX`` arrive (the
endpoint's drain bound for bodies); then it closes. The same holds when uvicorn
closes a connection whose request body is still arriving (the endpoint answered
a body over its drain bound, or one too slow, without reading it): uvicorn is
handed the socket's transport wrapped (`ClosingAfterTheBody`, through
``connection_made``, the asyncio protocol interface), whose ``close`` lingers
in that case.

Broken framing (rule IL-7 of docs/limits.md). When httptools refuses the bytes a
client sends (an invalid request line or header, an invalid ``Content-Length``,
a conflicting or invalid ``Transfer-Encoding``, a malformed chunk), uvicorn calls
``send_400_response``, which answers a plain-text 400 and closes the connection.
Here the answer is AWS-shaped instead, like the endpoint's own answers:
400, ``application/x-amz-json-1.1``, a fresh ``x-amzn-RequestId``,
``{"__type": "SerializationException", "Message": ...}`` with a fixed message
that never quotes the client's bytes, ``connection: close``; then the connection
is closed, as uvicorn does. The endpoint never sees such a request, so it is not
recorded in the audit log: nothing authenticated it (as for the calls turned
away before authentication in `ledger.http`).

Connection cap. uvicorn's own cap (``limit_concurrency``) answers a plain-text 503
and logs a warning for every request it turns away. The endpoint leaves that
setting off; `HeadDeadlineProtocol` applies the same cap (``CONNECTIONS_MAX`` open
connections or requests in progress) when a request head completes, by having
uvicorn run `answer_unavailable` for that request instead of the endpoint: an
AWS-shaped 503 ``ServiceUnavailable`` (which the SDKs retry) with
``connection: close``, and the warning ``Exceeded concurrency limit.``, bounded
below. The endpoint's own, lower caps on calls in progress (`ledger.admission`)
usually answer first; this one bounds what those cannot see, such as a flood of
connections that all complete their heads at once.

Log lines (rule IL-6). uvicorn logs a warning for each request it refuses
(``Invalid HTTP request received.``) and two for each request asking for a
protocol upgrade (``Unsupported upgrade request.`` and advice to install a
WebSocket library), and the connection cap above logs one per request it turns
away: any client could add log lines without limit.
`ClientWarningBound`, a filter on the ``uvicorn.error`` logger installed by
`logging_config` (the ``log_config`` of `ledger.cli.serve.server_config`), lets
at most ``CLIENT_WARNINGS_PER_MINUTE`` of each kind through a minute and then
writes one line with the count of the others; the WebSocket advice, which does
not apply (the endpoint serves no WebSockets, ``ws="none"``), is dropped. Every
other record of uvicorn passes unchanged.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any
from uuid import uuid4

from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ledger.errors import SerializationException, ServiceUnavailable
from ledger.http import UNAVAILABLE_MESSAGE, Receive, Scope, Send, error_response, respond

HEAD_SECONDS_MAX = 10.0
HEAD_SIZE_BYTES_MAX = 64 * 1024
CONNECTIONS_MAX = 4096  # open connections, or requests in progress
BAD_REQUEST_STATUS_LINE = b"HTTP/1.1 400 Bad Request\r\n"
BROKEN_FRAMING_MESSAGE = (
    "The request is not valid HTTP/1.1: its request line, a header, its Content-Length "
    "or its Transfer-Encoding is malformed. The connection is closed."
)
HEAD_TOO_LARGE_MESSAGE = f"The request head is larger than {HEAD_SIZE_BYTES_MAX} bytes."
LINGER_SECONDS_MAX = 2.0
LINGER_BYTES_MAX = 16 * 1024 * 1024  # what a refused client may still send, discarded

# The warnings uvicorn's HttpToolsProtocol logs for what a client sent, and what the
# summary line calls the requests behind them.
INVALID_REQUEST_WARNING = "Invalid HTTP request received."
UPGRADE_WARNING = "Unsupported upgrade request."
CAPACITY_WARNING = "Exceeded concurrency limit."  # uvicorn's text for the same refusal
WEBSOCKET_ADVICE_PREFIX = "No supported WebSocket library detected."
BOUNDED_WARNINGS = {
    INVALID_REQUEST_WARNING: "invalid HTTP requests",
    UPGRADE_WARNING: "unsupported upgrade requests",
    CAPACITY_WARNING: "requests beyond the connection cap",
}
CLIENT_WARNINGS_PER_MINUTE = 10
UVICORN_ERROR_LOGGER = "uvicorn.error"


class HeadDeadlineProtocol(HttpToolsProtocol):
    """A connection closed when a request head is not complete in time; a head over
    the size cap and broken framing answered AWS-shaped."""

    head_seconds_max = HEAD_SECONDS_MAX
    head_size_bytes_max = HEAD_SIZE_BYTES_MAX
    connections_max = CONNECTIONS_MAX

    def __init__(self, *arguments: Any, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self.head_deadline: asyncio.TimerHandle | None = None
        # Bytes of the open request head so far; None between a head's end and the
        # end of its message (its body).
        self.head_bytes: int | None = 0
        self.heads_completed = 0
        self.linger_end: asyncio.TimerHandle | None = None  # set once refused
        self.lingered_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.socket_transport = transport
        super().connection_made(ClosingAfterTheBody(transport, self))
        self.head_bytes = 0
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        if self.linger_end is not None:
            self.linger_end.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's parsing, in pieces: while a head is open, no more than it may still
        take, so a head still open with ``head_size_bytes_max`` bytes and more coming
        is refused; otherwise (a body, pipelined requests) at most that many bytes.
        After a refusal, what arrives is counted and discarded (lingering close)."""
        while data and self.linger_end is None and not self.transport.is_closing():
            counted = self.head_bytes
            room = self.head_size_bytes_max - (counted or 0)
            if room <= 0:
                self._refuse(HEAD_TOO_LARGE_MESSAGE)
                break
            piece, data = data[:room], data[room:]
            heads_completed = self.heads_completed
            super().data_received(piece)
            if counted is not None and self.heads_completed == heads_completed:
                self.head_bytes = counted + len(piece)  # the same head, still open
        if self.linger_end is not None:
            self.lingered_bytes += len(data)
            if self.lingered_bytes > LINGER_BYTES_MAX:
                self.socket_transport.close()

    def on_headers_complete(self) -> None:
        self.head_bytes = None
        self.heads_completed += 1
        self._disarm_head_deadline()
        cap = self.connections_max
        if len(self.connections) < cap and len(self.tasks) < cap:
            super().on_headers_complete()
            return
        logging.getLogger(UVICORN_ERROR_LOGGER).warning(CAPACITY_WARNING)
        endpoint, self.app = self.app, answer_unavailable  # uvicorn runs self.app
        try:
            super().on_headers_complete()
        finally:
            self.app = endpoint

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.head_bytes = 0  # the next request's head begins

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():
            self._arm_head_deadline()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes httptools refused, AWS-shaped; ``msg`` (uvicorn's
        plain-text message) is not used."""
        self._refuse(BROKEN_FRAMING_MESSAGE)

    def _refuse(self, message: str) -> None:
        """A 400 ``SerializationException`` with ``message`` (fixed text, never the
        client's bytes), then the connection closed: nothing after can be parsed."""
        refused = error_response(
            SerializationException(message), str(uuid4()), close_connection=True
        )
        content = [BAD_REQUEST_STATUS_LINE]
        for name, value in [*self.server_state.default_headers, *refused.headers()]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"\r\n", refused.body])
        self.transport.write(b"".join(content))
        self.close_lingering()

    def close_lingering(self) -> None:
        """End this side, read on until the client closes or a bound is reached
        (module docstring), then close."""
        self._disarm_head_deadline()
        transport = self.socket_transport
        if self.linger_end is not None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()
        self.linger_end = self.loop.call_later(LINGER_SECONDS_MAX, transport.close)

    def is_reading_a_body(self) -> bool:
        """Between the end of a request's head and the end of its message."""
        return self.head_bytes is None

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self.head_deadline = self.loop.call_later(self.head_seconds_max, self._head_too_late)

    def _disarm_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_late(self) -> None:
        self.head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class ClosingAfterTheBody(asyncio.Transport):
    """The connection's transport as uvicorn sees it. uvicorn closes it itself after an
    answer that ends the connection; while the request's body is still arriving (the
    endpoint refused it unread: over the drain bound, or too slow) that close lingers
    (`HeadDeadlineProtocol.close_lingering`) instead of resetting the connection under
    a client still sending. Everything else is the socket's transport's."""

    def __init__(self, transport: asyncio.Transport, protocol: HeadDeadlineProtocol) -> None:
        super().__init__()
        self.transport = transport
        self.protocol = protocol

    def close(self) -> None:
        if self.protocol.is_reading_a_body():
            self.protocol.close_lingering()
        else:
            self.transport.close()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def abort(self) -> None:
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.transport.get_protocol()


async def answer_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app run for a request beyond the connection cap: an AWS-shaped 503,
    then the connection closed (its body is not read)."""
    refused = error_response(
        ServiceUnavailable(UNAVAILABLE_MESSAGE), str(uuid4()), close_connection=True
    )
    await respond(send, refused)


class ClientWarningBound(logging.Filter):
    """A filter for the ``uvicorn.error`` logger: of each warning in
    `BOUNDED_WARNINGS`, at most ``per_window`` records pass in a window of
    ``window_seconds`` (opened by the first such record); when the window ends, one
    line counts those held back. uvicorn's WebSocket advice never passes; every
    other record always does.

    The window ends on a timer of the event loop the warnings come from (uvicorn
    logs them there), or, without one, with the first bounded record after it;
    `flush` ends it early (at shutdown)."""

    def __init__(
        self,
        per_window: int = CLIENT_WARNINGS_PER_MINUTE,
        window_seconds: float = 60.0,
        logger_name: str = UVICORN_ERROR_LOGGER,
    ) -> None:
        super().__init__()
        self.per_window = per_window
        self.window_seconds = window_seconds
        self.logger_name = logger_name
        self.lock = threading.Lock()
        self.window = 0  # numbers the windows, so that a late timer ends only its own
        self.window_started: float | None = None
        self.passed: dict[str, int] = {}
        self.held_back: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not isinstance(record.msg, str):
            return True
        if record.msg.startswith(WEBSOCKET_ADVICE_PREFIX):
            return False
        kind = BOUNDED_WARNINGS.get(record.msg)
        if kind is None:
            return True
        now = time.monotonic()
        summaries: list[str] = []
        with self.lock:
            if self.window_started is not None and now - self.window_started >= self.window_seconds:
                summaries = self._end_window()
            if self.window_started is None:
                self.window_started = now
            passes = self.passed.get(kind, 0) < self.per_window
            if passes:
                self.passed[kind] = self.passed.get(kind, 0) + 1
            else:
                self.held_back[kind] = self.held_back.get(kind, 0) + 1
                if sum(self.held_back.values()) == 1:
                    self._end_on_timer(self.window_started + self.window_seconds - now)
        self._write(summaries)
        return passes

    def flush(self) -> None:
        """End the current window now: write the count of the warnings held back."""
        with self.lock:
            summaries = self._end_window()
        self._write(summaries)

    def _end_on_timer(self, delay_seconds: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # the next bounded record, or flush, ends the window
        loop.call_later(max(0.0, delay_seconds), self._timer_ended, self.window)

    def _timer_ended(self, window: int) -> None:
        with self.lock:
            summaries = self._end_window() if window == self.window else []
        self._write(summaries)

    def _end_window(self) -> list[str]:
        """The summary lines of the current window, which ends (the lock is held)."""
        summaries = [
            f"{count} further {kind} in the last minute "
            f"(at most {self.per_window} a minute are logged)."
            for kind, count in self.held_back.items()
            if count
        ]
        self.window += 1
        self.window_started = None
        self.passed.clear()
        self.held_back.clear()
        return summaries

    def _write(self, summaries: list[str]) -> None:
        logger = logging.getLogger(self.logger_name)
        for summary in summaries:
            logger.warning(summary)


CLIENT_WARNING_BOUND = ClientWarningBound()


def client_warning_bound() -> ClientWarningBound:
    """The process's one `ClientWarningBound` (a factory for `logging.config`: each
    uvicorn `Config` configures logging again, and the same filter is added once)."""
    return CLIENT_WARNING_BOUND


def logging_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, with `CLIENT_WARNING_BOUND` on the
    ``uvicorn.error`` logger."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["client_warnings"] = {"()": client_warning_bound}
    error_logger = config["loggers"].setdefault(UVICORN_ERROR_LOGGER, {})
    error_logger["filters"] = [*error_logger.get("filters", []), "client_warnings"]
    return config
