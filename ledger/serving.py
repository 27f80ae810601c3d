"""The HTTP connection protocol of `secretledger serve`: uvicorn's httptools
protocol with a deadline for each request head.

uvicorn closes a keep-alive connection only after it has been silent for
``timeout_keep_alive`` since a response, and never bounds the time a request
head takes: a socket that sends nothing, or one header line every few seconds
(slowloris), stays open for as long as its sender likes, and each one counts
toward uvicorn's connection cap. `HeadDeadlineProtocol` closes a connection
whose next request head is not complete within ``HEAD_SECONDS_MAX`` of the
connection opening or of the previous response, however many bytes trickle in
meanwhile. Idle and slow sockets then cost a timer each and go away by
themselves, so the server's caps can count requests in progress instead
(`ledger.admission`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_SECONDS_MAX = 10.0


class HeadDeadlineProtocol(HttpToolsProtocol):
    """A connection closed when a request head is not complete in time."""

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
