"""A rebuild's SQL in a second process, beside its decoding.

A rebuild spends about as long in the database (binding rows, B-tree inserts,
commits, checkpoints) as in Python (decoding events and making rows), and one
Python process does both on one core. :class:`WriterProcessStore` moves the first
half into a writer process: the runner's transactions go down a pipe as they are
made (a page's rows pickled in one message) and the writer applies them, in order,
on its own connection, in the same transactions as in-process. Queries still read
in this process, after :meth:`~WriterProcessStore.settle`.

Exactly once still holds: each transaction (rows and positions) commits or rolls
back as a whole in the writer. Statements and commits are sent without waiting.
The writer reports a failure at the next message that waits for an answer (a
fetch, ``settle``), and drops everything sent before that answer (so the
transactions after a failed one are dropped too, never applied out of order). The
runner does not re-read the positions at each transaction (that would wait for the
previous commit): it sends the positions it expects, the writer checks them first,
and a mismatch (another runner moved a projection) fails with
:class:`~projections.store.ExpectationFailed`.

If this process dies, the writer reads end-of-file, rolls back its open
transaction and exits; if the writer dies, the next send or answer raises
:class:`WriterProcessError`. Bounds: one message holds at most one statement's rows
(a page); the pipe (1 MiB where Linux allows) blocks the sender when the writer
falls behind; an answer is awaited at most ``ANSWER_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from projections.store import (
    ExpectationFailed,
    ViewCursor,
    ViewStore,
    open_view_store,
)

PIPE_SIZE_BYTES: Final = 1024 * 1024
ANSWER_TIMEOUT_SECONDS: Final = 600.0
ANSWER_POLL_SECONDS: Final = 1.0
START_TIMEOUT_SECONDS: Final = 60.0
STOP_TIMEOUT_SECONDS: Final = 30.0

CHILD_PROGRAM: Final = (
    "import sys; from projections.writer import main; sys.exit(main(sys.argv[1:]))"
)

# Messages to the writer: (kind, *arguments).
_ASKS: Final = frozenset({"fetchone", "fetchall", "settle"})


class WriterProcessError(RuntimeError):
    """The writer process failed to apply a write, or ended."""


class _RemoteCursor(ViewCursor):
    """A cursor whose statements run in the writer process."""

    def __init__(self, store: WriterProcessStore) -> None:
        self._store = store

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> ViewCursor:
        self._store.send(("execute", statement, tuple(parameters)))
        return self

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._store.send(("executemany", statement, list(rows)))

    def expect(
        self, statement: str, parameters: Sequence[Any], rows: Sequence[Sequence[Any]]
    ) -> None:
        self._store.send(("expect", statement, tuple(parameters), [tuple(row) for row in rows]))

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._store.ask(("fetchone",))
        return row

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._store.ask(("fetchall",))
        return rows


class WriterProcessStore(ViewStore):
    """The view store of ``database`` (a SQLite file or PostgreSQL URL) whose writes
    run in a child process. Use as a context manager; ``close`` stops the writer."""

    pipelined = True

    def __init__(self, database: str) -> None:
        self.database = database
        self._local: ViewStore | None = None
        self._lock = threading.RLock()
        # Set when the writer reported a failure inside the open transaction: the
        # writer rolled it back, so it must not be committed.
        self._transaction_failed = False
        requests_reader, requests_writer = os.pipe()
        answers_reader, answers_writer = os.pipe()
        self._requests = Connection(requests_writer, readable=False)
        self._answers = Connection(answers_reader, writable=False)
        _enlarge_pipe(requests_writer)
        try:
            # A fresh interpreter (not fork: this process may hold connections and
            # threads); the database goes down the pipe, never on the command line.
            self._process = subprocess.Popen(
                [sys.executable, "-c", CHILD_PROGRAM, str(requests_reader), str(answers_writer)],
                pass_fds=(requests_reader, answers_writer),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=_child_environment(),
            )
        except BaseException:
            for descriptor in (requests_reader, answers_writer):
                os.close(descriptor)
            self._requests.close()
            self._answers.close()
            raise
        os.close(requests_reader)
        os.close(answers_writer)
        try:
            self.send(("open", database))
            self.ask(("settle",), timeout_seconds=START_TIMEOUT_SECONDS)
            self._local = open_view_store(database)  # for reads, and the SQL dialect
        except BaseException:
            self.close()
            raise
        self.dialect = self._local.dialect

    def __enter__(self) -> WriterProcessStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        """The writer process's id."""
        return self._process.pid

    # The pipe

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self._requests.send(message)
        except (OSError, ValueError) as error:
            raise WriterProcessError(f"the writer process ended ({error})") from None

    def ask(
        self, message: tuple[Any, ...], *, timeout_seconds: float = ANSWER_TIMEOUT_SECONDS
    ) -> Any:
        with self._lock:
            self.send(message)
            deadline = time.monotonic() + timeout_seconds
            while not self._answers.poll(ANSWER_POLL_SECONDS):
                if self._process.poll() is not None:
                    raise WriterProcessError("the writer process ended")
                if time.monotonic() > deadline:
                    # A late answer would be taken for the next one: stop the writer
                    # (its open transaction rolls back), so the store fails from now on.
                    self._process.kill()
                    raise WriterProcessError(f"no answer from the writer in {timeout_seconds} s")
            try:
                status, payload = self._answers.recv()
            except (EOFError, OSError) as error:
                raise WriterProcessError(f"the writer process ended ({error})") from None
        if status != "ok":
            self._transaction_failed = True
            if status == "expectation":
                raise ExpectationFailed(payload)
            raise WriterProcessError(payload)
        return payload

    # ViewStore

    @contextmanager
    def write(self) -> Iterator[ViewCursor]:
        with self._lock:
            self._transaction_failed = False
            self.send(("begin",))
            try:
                yield _RemoteCursor(self)
            except BaseException:
                self._send_quietly(("rollback",))
                raise
            if self._transaction_failed:
                raise WriterProcessError("the transaction failed and was rolled back")
            self.send(("commit",))

    @property
    def local(self) -> ViewStore:
        """The same database's ordinary store, in this process: reads, SQL dialect."""
        assert self._local is not None, "opened in __init__"
        return self._local

    @contextmanager
    def read(self) -> Iterator[ViewCursor]:
        self.settle()
        with self.local.read() as cursor:
            yield cursor

    def settle(self) -> None:
        self.ask(("settle",))

    def lock_schema(self, cursor: ViewCursor) -> None:
        self.send(("lock_schema",))

    def lock_tracking(self, cursor: ViewCursor) -> None:
        self.send(("lock_tracking",))

    def relation_kind(self, cursor: ViewCursor, name: str) -> str | None:
        return self.local.relation_kind(cursor, name)

    def table_options(self) -> str:
        return self.local.table_options()

    def integer_key_type(self) -> str:
        return self.local.integer_key_type()

    def blob_type(self) -> str:
        return self.local.blob_type()

    def close(self) -> None:
        """Stop the writer (a transaction still open is rolled back) and close."""
        with self._lock:
            if self._process.poll() is None:
                self._send_quietly(("close",))
                try:
                    self._process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(STOP_TIMEOUT_SECONDS)
            self._requests.close()
            self._answers.close()
            if self._local is not None:
                self._local.close()

    def _send_quietly(self, message: tuple[Any, ...]) -> None:
        # If the writer is gone, its open transaction was rolled back anyway.
        with suppress(OSError, ValueError):
            self._requests.send(message)


def _enlarge_pipe(descriptor: int) -> None:
    """Let the pipe hold a few pages, so that a commit in the writer rarely blocks
    the sender (Linux only; elsewhere the default size stays)."""
    try:
        import fcntl

        fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, PIPE_SIZE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _child_environment() -> dict[str, str]:
    """This process's environment, with the directory holding these packages first
    on the child's import path (they may be used from a checkout, not installed)."""
    environment = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    inherited = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = root if not inherited else os.pathsep.join((root, inherited))
    return environment


# --------------------------------------------------------------------------------------
# The writer process
# --------------------------------------------------------------------------------------


class _Writer:
    """Applies messages in order; after a failure, drops them until the next ask."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store
        self.transaction: ExitStack | None = None
        self.cursor: ViewCursor | None = None
        self.failure: tuple[str, str] | None = None

    def answer(self, kind: str) -> tuple[str, Any]:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            return failure
        if kind == "settle":
            return ("ok", None)
        if self.cursor is None:
            return ("error", f"{kind} outside a transaction")
        return ("ok", self.cursor.fetchone() if kind == "fetchone" else self.cursor.fetchall())

    def apply(self, message: tuple[Any, ...]) -> None:
        if self.failure is not None:
            return
        try:
            self._apply(message)
        except ExpectationFailed as error:
            self._fail(("expectation", str(error)))
        except Exception as error:
            self._fail(("error", f"{type(error).__name__}: {error}"))

    def _apply(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "begin":
            assert self.transaction is None, "transactions do not nest"
            self.transaction = ExitStack()
            self.cursor = self.transaction.enter_context(self.store.write())
            return
        if kind == "rollback":
            self.rollback()
            return
        cursor = self.cursor
        assert cursor is not None and self.transaction is not None, f"{kind} needs a transaction"
        if kind == "commit":
            transaction, self.transaction, self.cursor = self.transaction, None, None
            transaction.close()
        elif kind == "execute":
            cursor.execute(message[1], message[2])
        elif kind == "executemany":
            cursor.executemany(message[1], message[2])
        elif kind == "expect":
            cursor.expect(message[1], message[2], message[3])
        elif kind == "lock_schema":
            self.store.lock_schema(cursor)
        elif kind == "lock_tracking":
            self.store.lock_tracking(cursor)
        else:
            raise ValueError(f"unknown message {kind!r}")

    def _fail(self, failure: tuple[str, str]) -> None:
        self.failure = failure
        self.rollback()

    def rollback(self) -> None:
        transaction, self.transaction, self.cursor = self.transaction, None, None
        if transaction is not None:
            rolled_back = WriterProcessError("rolled back")
            transaction.__exit__(type(rolled_back), rolled_back, None)


def serve_writes(requests: Connection, answers: Connection) -> None:
    """The writer process: open the database the first message names, then apply
    messages until ``close`` or end-of-file."""
    try:
        kind, database = requests.recv()
    except EOFError:
        return
    assert kind == "open", "the first message names the database"
    try:
        store = open_view_store(database)
    except Exception as error:
        _refuse(requests, answers, f"cannot open the view store: {type(error).__name__}: {error}")
        return
    writer = _Writer(store)
    try:
        while True:
            try:
                message = requests.recv()
            except EOFError:
                return  # the runner is gone: roll back below
            kind = message[0]
            if kind == "close":
                return
            if kind in _ASKS:
                answers.send(writer.answer(kind))
            else:
                writer.apply(message)
    finally:
        writer.rollback()
        store.close()


def _refuse(requests: Connection, answers: Connection, reason: str) -> None:
    """Answer every question with ``reason`` until ``close`` or end-of-file."""
    while True:
        try:
            kind = requests.recv()[0]
        except EOFError:
            return
        if kind == "close":
            return
        if kind in _ASKS:
            answers.send(("error", reason))


def main(arguments: list[str]) -> int:
    """The writer process's entry point (``CHILD_PROGRAM REQUESTS_FD ANSWERS_FD``)."""
    requests_descriptor, answers_descriptor = (int(argument) for argument in arguments)
    requests = Connection(requests_descriptor, writable=False)
    answers = Connection(answers_descriptor, readable=False)
    try:
        serve_writes(requests, answers)
    finally:
        requests.close()
        answers.close()
    return 0
