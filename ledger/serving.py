"""The HTTP connection protocol of `secretledger serve`: uvicorn's httptools
protocol with a deadline for each request head, and AWS-shaped refusals of
broken HTTP framing.

This module is the one place where secret-ledger overrides private methods of
uvicorn, its HTTP server (those of eventsourcing are overridden in
`ledger.application`, `ledger.storage` and `ledger.storage_postgres`).
`HeadDeadlineProtocol` overrides these methods of uvicorn's `HttpToolsProtocol`
(uvicorn calls them; none is a documented extension point):

* ``connection_made(transport)``, ``connection_lost(exc)``,
  ``on_headers_complete()`` and ``on_response_complete()``: the head deadline;
* ``send_400_response(msg)``: the answer to a request httptools cannot parse.

``tests/test_http_flood.py`` (``test_the_uvicorn_hooks_overridden_here_still_exist``
and ``test_uvicorn_still_calls_send_400_response_for_broken_framing``) fails when
uvicorn renames one of them, changes its parameters or stops calling
``send_400_response``.

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
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ledger.errors import SerializationException
from ledger.http import error_response

HEAD_SECONDS_MAX = 10.0
BAD_REQUEST_STATUS_LINE = b"HTTP/1.1 400 Bad Request\r\n"
BROKEN_FRAMING_MESSAGE = (
    "The request is not valid HTTP/1.1: its request line, a header, its Content-Length "
    "or its Transfer-Encoding is malformed. The connection is closed."
)


class HeadDeadlineProtocol(HttpToolsProtocol):
    """A connection closed when a request head is not complete in time; broken
    framing answered AWS-shaped."""

    head_seconds_max = HEAD_SECONDS_MAX

    def __init__(self, *arguments: Any, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():
            self._arm_head_deadline()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes httptools refused, AWS-shaped; ``msg`` (uvicorn's
        plain-text message) is not used."""
        refused = error_response(
            SerializationException(BROKEN_FRAMING_MESSAGE), str(uuid4()), close_connection=True
        )
        content = [BAD_REQUEST_STATUS_LINE]
        for name, value in [*self.server_state.default_headers, *refused.headers()]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"\r\n", refused.body])
        self.transport.write(b"".join(content))
        self.transport.close()

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
