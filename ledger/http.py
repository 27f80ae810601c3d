"""The AWS JSON 1.1 face of the ledger: a raw ASGI application, wire translation only.

``POST /`` with ``X-Amz-Target: secretsmanager.<Operation>`` and a JSON object body.
Each request is, in order: read (at most ``body_size_bytes_max`` kept in memory),
authenticated (`ledger.auth.SignatureVerifier`), decoded (``SecretBinary`` from
base64 to bytes), passed to `SecretsManagerApi.call`, and encoded (datetimes as
epoch seconds with millisecond precision, bytes as base64). Every answer has an
``x-amzn-RequestId``; that same id is the ``Caller.request_id``, so the audit
record of a call carries the id the client saw.

Errors are always ``{"__type": <code>, "Message": <text>}`` with the error's HTTP
status and ``application/x-amz-json-1.1``, never a traceback:

* no or unknown ``X-Amz-Target``, another method or path: ``UnknownOperationException``;
  secret-ledger's own operations (``DestroySecretVersion``) are unknown here: they are
  reached only through the CLI (`ledger.api.LOCAL_OPERATIONS`);
* a body that is not a JSON object (or not UTF-8, or with invalid base64 or lone
  surrogates), that nests deeper than 16, or holds a number out of range (rules
  IL-1 and IL-2 of docs/limits.md, checked before Python's recursive parser runs):
  ``SerializationException``;
* a body over the size cap: ``RequestEntityTooLargeException`` (413). The excess is
  read and discarded (never kept) up to ``drain_size_bytes_max`` so that the client,
  which sends its whole body before reading, sees the answer and the connection
  stays usable; a larger declared body is answered at once and the connection
  closed;
* a body that does not arrive within ``body_read_seconds_max`` (30 s):
  ``RequestTimeoutException`` (408), and the connection is closed;
* more than ``pending_calls_max`` calls in progress, or more than half of them
  from one source address or claiming one access key (`ledger.admission`):
  ``ServiceUnavailable`` (503, retried by the SDKs), so the queue stays bounded
  and no one client can take all of it;
* an unexpected failure: ``InternalServiceError`` (500), logged with its type and
  stack but not its message (which might quote a value).

Audit: refused authentication is recorded with `SecretsManagerApi.record_denial`
(empty principal ARN, the access key id the client claimed, the operation its
target named, no request parameters: unauthenticated input is not trusted into
the ledger), within the bounds of DR-1 to DR-4 (`ledger.refusals`): per source
address and reason, at most ten full records a minute, each with at most 64
characters of the User-Agent; further refusals are counted, and each window's
count becomes one summary record, written by the first request after the window
ends (or at shutdown). An authenticated call whose body cannot be decoded, or that
names no operation (another method or path, no or a malformed target), is recorded
too, and `SecretsManagerApi` records an authenticated call to an operation it does
not know (OOS-2). Calls turned away by the queue bound and bodies over the size cap
are not recorded (docs/audit.md §2.2): they were never authenticated.
Everything else is recorded by
`SecretsManagerApi` itself, through the server's `CallRecorder` when one is given
(group commit; see `ledger.call_records`), which is flushed before each call that
may change a secret, so that the log keeps the order of the answers.

Calls that may change a secret run on their own pool of writer threads
(``write_executor``, ``writer_threads`` of them), apart from the reads. On SQLite
the server gives it one thread: SQLite commits one writer at a time anyway, and
one thread spares the calls the hand-offs of locks passed between threads (more
threads measured slower there). On PostgreSQL it gives it several
(`ledger.cli.serve`): a change there spends most of its time waiting for the
database's answer and commit, and another change can run meanwhile.

Reads (`READ_ONLY_OPERATIONS`) are answered on the event loop itself when the
server says so (``reads_on_event_loop``: on SQLite, where a read never waits for a
lock, and on PostgreSQL when this process is the only writer, so that a read finds
its secret in the cache without a round trip): verification and the call run
there, the call's records are queued (`CallRecorder.enqueue`), and the answer
waits, without holding a thread, until they are committed (durable records). This
saves two thread hand-offs per read, and the records of all the reads the loop
answered during one commit share the next. On PostgreSQL the loop never waits for
the database: a read that needs a round trip (a secret or data key the cache does
not hold, the day's first read of a version, which appends ``Accessed``) is
refused there before anything is sent (`WaitRefused`) and runs again on a worker
thread, so a slow or silent database holds those calls, not every connection.
ListSecrets, which always reads the log's end there, goes to a worker thread at
once (``reads_off_the_loop``). Other calls, and reads when the recorder's backlog
is full, run on a bounded pool of worker threads over the same `Secrets`
(eventsourcing's connection pool and repository are thread-safe).
Calls that may change a secret also take the lock of the secret they name
(`SecretLocks`; it makes the rule hold for any caller of `respond`), so this
process never races itself on a secret: eight clients writing one secret in
parallel would exhaust the ledger's bounded optimistic-concurrency retries, while
changes to different secrets run side by side. A secret named once by its name and
once by an ARN whose resource does not reduce to that name (a partial ARN of a
name that itself ends like an ARN suffix) takes two locks: the two calls may then
meet at insert, and the bounded retries settle it, as they do for other processes
writing the same ledger. Reads run in parallel.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from ledger.admission import Admission
from ledger.api import (
    AWS_OPERATIONS,
    READ_ONLY_OPERATIONS,
    UNRECORDED_MESSAGE,
    Caller,
    SecretsManagerApi,
    to_wire,
    unsupported_operation,
)
from ledger.arn import parse_secret_arn
from ledger.auth import Denial, ReceivedRequest, SignatureVerifier, claimed_access_key_id
from ledger.bounds import (
    NESTING_DEPTH_MAX,
    NumberOutOfRange,
    nesting_exceeds,
    parse_float,
    parse_integer,
)
from ledger.call_records import CallRecorder, PendingRecord, RecorderUnavailable
from ledger.domain import ApiCall
from ledger.errors import (
    InternalServiceError,
    RequestEntityTooLargeException,
    RequestTimeoutException,
    SecretsManagerError,
    SerializationException,
    ServiceUnavailable,
    UnknownOperationException,
)
from ledger.refusals import USER_AGENT_PREFIX_LENGTH_MAX, RefusalLimiter
from ledger.storage import WaitRefused

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Application = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "secretsmanager."
BODY_SIZE_BYTES_MAX_DEFAULT = 1024 * 1024
DRAIN_SIZE_BYTES_MAX_DEFAULT = 16 * 1024 * 1024
BODY_READ_SECONDS_MAX_DEFAULT = 30.0
WORKER_THREADS_DEFAULT = 8
WRITER_THREADS_DEFAULT = 1
SECRET_LOCK_STRIPES = 64
PENDING_CALLS_MAX_DEFAULT = 64
USER_AGENT_LENGTH_MAX = 1024
OPERATION_NAME_PATTERN = re.compile(r"[A-Za-z]{1,64}")
INTERNAL_ERROR_MESSAGE = "An error occurred on the server side."
UNAVAILABLE_MESSAGE = "The request has failed due to a temporary failure of the server."
RECORDS_UNAVAILABLE_MESSAGE = "Earlier calls could not be recorded; try again."


@dataclass(frozen=True)
class WireResponse:
    status: int
    body: bytes
    request_id: str
    close_connection: bool = False

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", CONTENT_TYPE.encode("ascii")),
            (b"content-length", str(len(self.body)).encode("ascii")),
            (b"x-amzn-requestid", self.request_id.encode("ascii")),
        ]
        if self.close_connection:
            headers.append((b"connection", b"close"))
        return headers


def error_response(
    error: SecretsManagerError, request_id: str, *, close_connection: bool = False
) -> WireResponse:
    body = json.dumps({"__type": error.code, "Message": error.message}).encode("utf-8")
    return WireResponse(error.http_status, body, request_id, close_connection)


def success_response(response: dict[str, Any], request_id: str) -> WireResponse:
    return WireResponse(200, json.dumps(to_wire(response)).encode("ascii"), request_id)


def operation_of(target: str | None) -> str:
    """The operation an ``X-Amz-Target`` names, or UnknownOperationException."""
    if target is None:
        raise UnknownOperationException(
            "The request has no X-Amz-Target header; expected secretsmanager.<Operation>."
        )
    prefix, _, operation = target.partition(".")
    if prefix + "." != TARGET_PREFIX or not OPERATION_NAME_PATTERN.fullmatch(operation):
        raise UnknownOperationException(
            "The X-Amz-Target header must be secretsmanager.<Operation>."
        )
    return operation


def decode_body(body: bytes) -> dict[str, Any]:
    """The request members, SecretBinary as bytes; SerializationException otherwise."""
    if not body.strip():
        return {}
    if nesting_exceeds(body):
        raise SerializationException(
            f"The request body nests objects and arrays deeper than {NESTING_DEPTH_MAX}."
        )
    try:
        document = json.loads(
            body,
            parse_constant=reject_constant,
            parse_int=parse_integer,
            parse_float=parse_float,
        )
    except NumberOutOfRange:
        raise SerializationException(
            "A number in the request body is out of range (a whole number must fit in "
            "64 bits, any other number in a double)."
        ) from None
    except ValueError:  # invalid JSON or UTF-8, or a whole number over 4,300 digits
        raise SerializationException("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise SerializationException("The request body must be a JSON object.")
    require_unicode(document)
    binary = document.get("SecretBinary")
    if binary is not None:
        if not isinstance(binary, str):
            raise SerializationException("SecretBinary must be a base64-encoded string.")
        try:
            document["SecretBinary"] = base64.b64decode(binary, validate=True)
        except (binascii.Error, ValueError):
            raise SerializationException("SecretBinary is not valid base64.") from None
    return document


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def require_unicode(value: Any) -> None:
    """Strings decoded from ``\\ud800``-style escapes cannot be stored or answered."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SerializationException(
                "The request body contains an unpaired surrogate escape."
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            require_unicode(key)
            require_unicode(item)
    elif isinstance(value, list):
        for item in value:
            require_unicode(item)


class BodyTooLarge(Exception):
    """The body exceeded the cap; ``drained`` tells whether all of it was consumed."""

    def __init__(self, drained: bool) -> None:
        super().__init__("request body too large")
        self.drained = drained


class ClientDisconnected(Exception):
    pass


class Endpoint:
    """The ASGI application over one `SecretsManagerApi`."""

    def __init__(
        self,
        api: SecretsManagerApi,
        verifier: SignatureVerifier,
        *,
        body_size_bytes_max: int = BODY_SIZE_BYTES_MAX_DEFAULT,
        drain_size_bytes_max: int = DRAIN_SIZE_BYTES_MAX_DEFAULT,
        body_read_seconds_max: float = BODY_READ_SECONDS_MAX_DEFAULT,
        worker_threads: int = WORKER_THREADS_DEFAULT,
        writer_threads: int = WRITER_THREADS_DEFAULT,
        pending_calls_max: int = PENDING_CALLS_MAX_DEFAULT,
        recorder: CallRecorder | None = None,
        reads_on_event_loop: bool = False,
        reads_off_the_loop: frozenset[str] = frozenset(),
        on_close: Callable[[], None] | None = None,
        refusals: RefusalLimiter | None = None,
    ) -> None:
        """``recorder`` is the `CallRecorder` the API saves its records with, if any:
        flushed before each call that may change a secret, closed with the endpoint.
        ``reads_on_event_loop``: answer reads on the event loop (needs ``recorder``;
        only where a read rarely waits: SQLite, or a PostgreSQL sole writer, whose
        reads find their secrets in its cache); ``reads_off_the_loop``: the read
        operations that always wait there all the same (on PostgreSQL, ListSecrets
        reads the log's end), answered on a worker thread at once rather than refused
        on the loop first.
        ``refusals`` bounds the records of refused requests (default: DR-1's bounds)."""
        assert recorder is not None or not reads_on_event_loop, "the loop awaits records"
        assert 0 < body_size_bytes_max <= drain_size_bytes_max, "cap within the drain bound"
        assert 0 < worker_threads <= pending_calls_max, "every worker can have a call"
        assert 0 < writer_threads <= pending_calls_max, "every writer can have a call"
        self.api = api
        self.verifier = verifier
        self.body_size_bytes_max = body_size_bytes_max
        self.drain_size_bytes_max = drain_size_bytes_max
        self.body_read_seconds_max = body_read_seconds_max
        self.admission = Admission(pending_calls_max, share_max=max(1, pending_calls_max // 2))
        self.executor = ThreadPoolExecutor(worker_threads, thread_name_prefix="ledger-call")
        self.write_executor = ThreadPoolExecutor(writer_threads, thread_name_prefix="ledger-write")
        self.secret_locks = SecretLocks()
        self.recorder = recorder
        if recorder is not None:
            recorder.commit_with_calls_in_progress(lambda: self.admission.calls)
        self.reads_on_event_loop = reads_on_event_loop
        self.reads_off_the_loop = reads_off_the_loop
        self._loop_thread_ident: int | None = None
        self.on_close = on_close
        self.refusals = refusals or RefusalLimiter()
        self.closed = False

    def close(self) -> None:
        """Wait for the calls in flight, commit the queued call records, then run
        ``on_close`` (once). The server calls it at lifespan shutdown, after the last
        response: uvicorn re-raises SIGTERM once it has shut down, so code after
        ``Server.run()`` may never run."""
        if self.closed:
            return
        self.closed = True
        # Closing runs on the loop's thread (lifespan shutdown) and may read the log
        # (the last checkpoint): it may wait for the database now.
        self.api.secrets.refuse_database_waits_on(None)
        self._loop_thread_ident = None
        self.executor.shutdown(wait=True)
        self.write_executor.shutdown(wait=True)
        try:
            for counted in self.refusals.drain(self.api.secrets.now()):
                self.api.record_refusals_counted(counted)
        except InternalServiceError:
            logger.error("closing: the counts of refused requests could not be recorded")
        if self.recorder is not None:
            self.recorder.close()
        if self.on_close is not None:
            self.on_close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        # Other protocols (websocket) are not served: returning closes them.

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(uuid4())
        try:
            async with asyncio.timeout(self.body_read_seconds_max):
                body = await self._read_body(scope, receive)
        except ClientDisconnected:
            return
        except TimeoutError:
            late = RequestTimeoutException(
                f"The request body did not arrive within {self.body_read_seconds_max} seconds."
            )
            await respond(send, error_response(late, request_id, close_connection=True))
            return
        except BodyTooLarge as too_large:
            error = RequestEntityTooLargeException(
                f"The request body is larger than {self.body_size_bytes_max} bytes."
            )
            await respond(
                send, error_response(error, request_id, close_connection=not too_large.drained)
            )
            return
        request = received_request(scope, body)
        client = scope.get("client")
        source_ip = str(client[0]) if client else ""
        claimed_key = claimed_access_key_id(request.header("authorization"))
        if not self.admission.admit(source_ip, claimed_key):
            await respond(send, error_response(ServiceUnavailable(UNAVAILABLE_MESSAGE), request_id))
            return
        operation = operation_named(request.header("x-amz-target"))
        is_read = operation in READ_ONLY_OPERATIONS
        try:
            if (
                is_read
                and operation not in self.reads_off_the_loop
                and self._answers_reads_on_the_loop()
            ):
                response = await self._respond_on_the_loop(request, source_ip, request_id)
            else:
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(
                    self.executor if is_read else self.write_executor,
                    self.respond,
                    self.api,
                    request,
                    source_ip,
                    request_id,
                )
        finally:
            self.admission.release(source_ip, claimed_key)
        await respond(send, response)

    def _answers_reads_on_the_loop(self) -> bool:
        return self.reads_on_event_loop and self.recorder is not None and self.recorder.has_room()

    async def _respond_on_the_loop(
        self, request: ReceivedRequest, source_ip: str, request_id: str
    ) -> WireResponse:
        """A read answered here; durable records: once the call's records are committed."""
        recorder = self.recorder
        assert recorder is not None, "checked by _answers_reads_on_the_loop"
        self._refuse_database_waits_on_this_thread()
        receipts: list[PendingRecord] = []

        def enqueue(call: ApiCall) -> None:
            receipts.append(recorder.enqueue(call))

        response: WireResponse | None
        try:
            response = self.respond(
                self.api.recording_with(enqueue), request, source_ip, request_id
            )
        except WaitRefused:  # the call needs the database, and asked before writing
            response = None
        if not recorder.asynchronous:
            for receipt in receipts:  # if refused, only those made before (refusal counts)
                try:
                    await asyncio.wrap_future(receipt.future)
                except RecorderUnavailable:
                    logger.error("could not record request %s", request_id)
                    return error_response(InternalServiceError(UNRECORDED_MESSAGE), request_id)
        if response is None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self.executor, self.respond, self.api, request, source_ip, request_id
            )
        return response

    def _refuse_database_waits_on_this_thread(self) -> None:
        """The event loop's thread must not wait for the database: on PostgreSQL, a
        read that needs a round trip (a secret or data key not in the cache, the
        day's first read of a version, a filtered BatchGetSecretValue) raises
        `WaitRefused` there before sending anything, and runs again on a worker
        thread. A database that stops answering then holds those calls, not every
        connection."""
        thread_ident = threading.get_ident()
        if self._loop_thread_ident != thread_ident:
            self._loop_thread_ident = thread_ident
            self.api.secrets.refuse_database_waits_on(thread_ident)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = declared_length(scope)
        if declared is not None and declared > self.drain_size_bytes_max:
            raise BodyTooLarge(drained=False)
        chunks: list[bytes] = []
        size_bytes = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            size_bytes += len(chunk)
            more = bool(message.get("more_body", False))
            if size_bytes > self.body_size_bytes_max:
                chunks.clear()  # never keep more than the cap
                if size_bytes > self.drain_size_bytes_max:
                    raise BodyTooLarge(drained=False)
                if not more:
                    raise BodyTooLarge(drained=True)
                continue
            chunks.append(chunk)
            if not more:
                return b"".join(chunks)

    def respond(
        self, api: SecretsManagerApi, request: ReceivedRequest, source_ip: str, request_id: str
    ) -> WireResponse:
        """Authenticate, decode, call, encode: never raises."""
        try:
            return self._respond(api, request, source_ip, request_id)
        except Exception as error:  # a bug: answer AWS-shaped, log without the message
            stack = "".join(traceback.format_tb(error.__traceback__))
            logger.error(
                "unexpected %s in request %s:\n%s", type(error).__name__, request_id, stack
            )
            return error_response(InternalServiceError(INTERNAL_ERROR_MESSAGE), request_id)

    def _respond(
        self, api: SecretsManagerApi, request: ReceivedRequest, source_ip: str, request_id: str
    ) -> WireResponse:
        user_agent = (request.header("user-agent") or "")[:USER_AGENT_LENGTH_MAX]
        target = request.header("x-amz-target")
        try:
            now = api.secrets.now()
            for counted in self.refusals.ended(now):
                api.record_refusals_counted(counted)
            try:
                identity = self.verifier.verify(request)
            except Denial as denial:
                if self.refusals.admit(source_ip, denial.error.code, now):
                    refused = Caller(
                        "",
                        denial.claimed_access_key_id,
                        source_ip,
                        user_agent[:USER_AGENT_PREFIX_LENGTH_MAX],
                        request_id,
                    )
                    api.record_denial(operation_named(target), {}, refused, denial.error)
                return error_response(denial.error, request_id)
            caller = Caller(
                identity.principal.arn,
                identity.principal.access_key_id,
                source_ip,
                user_agent,
                request_id,
                policy=identity.principal.policy,
            )
            return success_response(self._call(api, request, target, caller), request_id)
        except SecretsManagerError as error:
            return error_response(error, request_id)

    def _call(
        self, api: SecretsManagerApi, request: ReceivedRequest, target: str | None, caller: Caller
    ) -> dict[str, Any]:
        """An authenticated request, decoded and passed to the API (which records it).
        One that names no operation of AWS's, or whose body does not decode, is
        recorded here (OOS-2)."""
        try:
            if request.method != "POST" or request.path != "/":
                raise UnknownOperationException(
                    "secret-ledger answers POST / with X-Amz-Target: secretsmanager.<Operation>."
                )
            operation = operation_of(target)
            if operation not in AWS_OPERATIONS:
                raise unsupported_operation(operation)  # secret-ledger's own ones included
            members = decode_body(request.body)
        except (UnknownOperationException, SerializationException) as error:
            api.record_denial(operation_named(target), {}, caller, error)
            raise
        if operation in READ_ONLY_OPERATIONS:
            return api.call(operation, members, caller)
        with self.secret_locks.of(members):
            self._flush_call_records()
            return api.call(operation, members, caller)

    def _flush_call_records(self) -> None:
        """Before a change: the records of calls answered earlier come first in the log."""
        if self.recorder is None:
            return
        try:
            self.recorder.flush()
        except RecorderUnavailable:
            raise InternalServiceError(RECORDS_UNAVAILABLE_MESSAGE) from None


class SecretLocks:
    """One lock per secret name for the calls that change a secret (module docstring):
    a fixed number of locks, names hashed onto them, so that the set never grows (two
    names on one lock only wait for each other)."""

    def __init__(self, stripes: int = SECRET_LOCK_STRIPES) -> None:
        assert stripes > 0, "at least one lock"
        self.locks = [threading.Lock() for _ in range(stripes)]

    def of(self, members: Mapping[str, Any]) -> threading.Lock:
        return self.locks[hash(secret_named_by(members)) % len(self.locks)]


def secret_named_by(members: Mapping[str, Any]) -> str:
    """The name of the secret a change names: ``SecretId`` (a name or an ARN, reduced
    to the name it gives) or, for CreateSecret, ``Name``; "" when it names none (the
    call's validation refuses it)."""
    named = members.get("SecretId", members.get("Name"))
    if not isinstance(named, str):
        return ""
    arn = parse_secret_arn(named)
    return named if arn is None else arn.name


def operation_named(target: str | None) -> str:
    """The operation a target names, for the record of a refused call ("" if none)."""
    try:
        return operation_of(target)
    except UnknownOperationException:
        return ""


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def received_request(scope: Scope, body: bytes) -> ReceivedRequest:
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else str(scope.get("path", "/"))
    return ReceivedRequest(
        method=str(scope.get("method", "")),
        path=path,
        query_string=bytes(scope.get("query_string", b"")).decode("latin-1"),
        headers=[
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in scope.get("headers", [])
        ],
        body=body,
    )


async def respond(send: Send, response: WireResponse) -> None:
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers()}
    )
    await send({"type": "http.response.body", "body": response.body})
