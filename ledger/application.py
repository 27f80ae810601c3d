"""`Secrets`: the write-side application service.

Each command resolves its secret, runs every check, encrypts the value, and
saves all of its events (and the new version's wrapped data key) in one
transaction. A command that raises has appended nothing. Concurrent writers to
one secret collide on the event primary key; the loser re-runs the whole
command (bounded attempts), so an acknowledged version is never lost and a
racing replay of the same token becomes the idempotent no-op it should be.
"""

from __future__ import annotations

import contextlib
import random
import secrets as random_source
import string
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import (
    Aggregate,
    DomainEventProtocol,
    MutableOrImmutableAggregate,
    Snapshot,
)
from eventsourcing.persistence import IntegrityError, Recording, Transcoder

from ledger.arn import (
    ARN_SUFFIX_ALPHABET,
    ARN_SUFFIX_LENGTH,
    is_complete_resource,
    name_of_resource,
    parse_secret_arn,
    resource_of_arn_text,
    secret_arn,
)
from ledger.crypto import DecryptionError, Envelope, Keyring, KeyringError
from ledger.domain import (
    AWSCURRENT,
    ROTATION_STEPS,
    RUNNER_EXTERNAL,
    SERVICE_PRINCIPAL,
    VERSION_COUNT_MAX_DEFAULT,
    ApiCall,
    RequestContext,
    SealedVersion,
    Secret,
    SecretName,
    StagedVersion,
    VersionRecord,
    is_filled,
    name_id_for,
    secret_id_for_arn,
)
from ledger.errors import (
    VALUE_NOT_FOUND_PREFIX,
    AccessDeniedException,
    DecryptionFailure,
    InternalServiceError,
    InvalidParameterException,
    InvalidRequestException,
    ResourceExistsException,
    ResourceNotFoundException,
    ValidationException,
    marked_for_deletion,
    secret_not_found,
    token_in_use,
    version_destroyed,
    version_not_found,
)
from ledger.policies import check_policy, validation_errors
from ledger.rotation_schedule import parse_rules
from ledger.storage import (
    DEFER_ERASURE_ARGUMENT,
    DESTROYED_DATA_KEYS_ARGUMENT,
    LEDGER_APPLICATION_NAME,
    DatabaseKind,
    DataKeyCache,
    DataKeyNotFoundError,
    DataKeyPair,
    DataKeyRecord,
    DataKeyStore,
    LastVersionsStore,
    MsgpackTranscoder,
    database_kind,
    environment_for_database,
)

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
WRITE_ATTEMPTS_MAX = 8
KEYRING_CHECK_KEYS_MAX = 8
NAMES_REMEMBERED_MAX = 100_000
WRITE_RETRY_BACKOFF_SECONDS = 0.005
RECOVERY_WINDOW_DAYS_DEFAULT = 30
RECOVERY_WINDOW_DAYS_MIN = 7
RECOVERY_WINDOW_DAYS_MAX = 30
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "/_+=.@-")
SECRET_ID_NAME_CHARACTERS = NAME_CHARACTERS | {"!"}
INVALID_NAME_MESSAGE = (
    "Invalid name. Must be a valid name containing alphanumeric characters, "
    "or any of the following: -/_+=.@!"
)
TOKEN_REQUIRED_MESSAGE = (
    "You must provide a ClientRequestToken value. We recommend a UUID-type value."
)
VALUE_REQUIRED_MESSAGE = "You must provide either SecretString or SecretBinary."
BOTH_VALUES_MESSAGE = (
    "You can't specify both a binary secret value and a string secret value in the same secret."
)
NO_ROTATION_FUNCTION_MESSAGE = "No Lambda rotation function ARN is associated with this secret."
FUNCTION_NOT_INVOCABLE_MESSAGE = (
    "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function "
    "policy grants access to the principal secretsmanager.amazonaws.com."
)
DECRYPTION_FAILURE_MESSAGE = (
    "Secrets Manager can't decrypt the protected secret text using the provided KMS key."
)

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Value:
    """A secret value in memory only: exactly one of text or bytes."""

    secret_string: str | None = None
    secret_binary: bytes | None = None

    @property
    def kind(self) -> str:
        return "string" if self.secret_string is not None else "binary"

    def plaintext(self) -> bytes:
        if self.secret_string is not None:
            return self.secret_string.encode("utf-8")
        assert self.secret_binary is not None
        return bytes(self.secret_binary)

    def __repr__(self) -> str:
        return f"Value(kind={self.kind!r}, <redacted>)"


def value_from(secret_string: str | None, secret_binary: bytes | None) -> Value | None:
    """Neither value: None; both: InvalidParameterException (rule §2.5)."""
    if secret_string is not None and secret_binary is not None:
        raise InvalidParameterException(BOTH_VALUES_MESSAGE)
    if secret_string is None and secret_binary is None:
        return None
    return Value(secret_string=secret_string, secret_binary=secret_binary)


@dataclass(frozen=True)
class Outcome:
    """A command's AWS response plus what the audit trail needs to know about it."""

    response: dict[str, Any]
    changed: bool
    resources: list[dict[str, str | None]] = field(default_factory=list)
    denials: list[dict[str, Any]] = field(default_factory=list)


def require_valid_secret_id(secret_id: str) -> None:
    """NV-2: a SecretId that is not an ARN is a name, of the characters AWS's message
    lists (NV-1 plus ``!``, which names made by other AWS services hold)."""
    if not secret_id.startswith("arn:") and not set(secret_id) <= SECRET_ID_NAME_CHARACTERS:
        raise ValidationException(INVALID_NAME_MESSAGE)


def new_arn_suffix() -> str:
    alphabet = sorted(ARN_SUFFIX_ALPHABET)
    return "".join(random_source.choice(alphabet) for _ in range(ARN_SUFFIX_LENGTH))


def function_not_invocable(lambda_arn: str) -> AccessDeniedException:
    """R5: RotateSecret names a function the service cannot run. The audit record's
    denial (AZ-12) says the service may not invoke it: no function policy lets it."""
    denial: dict[str, str | int | None] = {
        "action": "lambda:InvokeFunction",
        "resource": lambda_arn,
        "decision": "implicit-deny",
        "policy_type": "function",
        "statement_index": None,
        "sid": None,
    }
    return AccessDeniedException(FUNCTION_NOT_INVOCABLE_MESSAGE, denial)


RunnerOf = Callable[[str], str]
"""Who runs a rotation function's steps, by its ARN (``domain.RUNNER_SERVICE`` or
``RUNNER_EXTERNAL``); raises `function_not_invocable` for a function that cannot be
run (RO-5)."""


def external_runner(lambda_arn: str) -> str:
    """Without a rotation runner, every rotation waits for an external driver (RO-5)."""
    return RUNNER_EXTERNAL


def service_context(
    region: str, account_id: str, operation: str, request_id: str | None = None
) -> RequestContext:
    """The context of events the service appends on its own (lazy purge, rotation)."""
    return RequestContext(
        request_id=request_id or str(random_source.token_hex(16)),
        principal_arn=SERVICE_PRINCIPAL,
        access_key_id="",
        source_ip=SERVICE_PRINCIPAL,
        user_agent=SERVICE_PRINCIPAL,
        region=region,
        account_id=account_id,
        operation=operation,
    )


@dataclass
class SecretIdsRead:
    """The ids of the secrets created up to ``position`` in the log, in order."""

    ids: list[UUID] = field(default_factory=list)
    position: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Secrets(Application[UUID]):
    """The ledger of secrets, with AWS Secrets Manager semantics."""

    name = LEDGER_APPLICATION_NAME
    snapshotting_intervals = {Secret: 200}  # noqa: RUF012 (eventsourcing's class attribute)
    env = {  # noqa: RUF012
        "AGGREGATE_CACHE_MAXSIZE": "1000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }

    def __init__(
        self,
        database: str = "memory:",
        *,
        keyring: Keyring | None = None,
        keyring_path: Path | None = None,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        clock: Callable[[], datetime] = utc_now,
        version_count_max: int = VERSION_COUNT_MAX_DEFAULT,
    ) -> None:
        super().__init__(env=environment_for_database(database))
        self.database = database
        try:
            self.keyring = keyring or open_keyring(
                database, keyring_path, log_has_events=self.log_has_events()
            )
            self.envelope = Envelope(self.keyring)
            recorder = self.recorder
            assert isinstance(recorder, DataKeyStore), "the ledger's recorder keeps data keys"
            self.data_keys: DataKeyStore = recorder
            assert isinstance(recorder, LastVersionsStore), "the ledger's recorder lists versions"
            self.last_versions: LastVersionsStore = recorder
            self.data_key_cache = DataKeyCache()
            self._require_keyring_opens_a_stored_key()
        except KeyringError:
            self.close()
            raise
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.version_count_max = version_count_max
        self.secret_ids_by_name: dict[str, UUID] = {}
        self.secret_ids_read = SecretIdsRead()

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """The library's save, without its runtime Protocol checks (slow on Python
        3.11, and a put's largest fixed cost after the commit): the ledger saves only
        its own aggregates, all in one transaction.

        The data keys that the events say are destroyed (`shredding_of`) are deleted
        in that same transaction: no caller can forget them."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in objs:
            if aggregate is None:
                continue
            assert isinstance(aggregate, Aggregate), "the ledger saves aggregates only"
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        assert DESTROYED_DATA_KEYS_ARGUMENT not in kwargs, "the events say which keys go"
        destroyed, is_routine = shredding_of(processing_event.events)
        if destroyed:
            processing_event.saved_kwargs[DESTROYED_DATA_KEYS_ARGUMENT] = destroyed
            processing_event.saved_kwargs[DEFER_ERASURE_ARGUMENT] = is_routine
            self.data_key_cache.forget(destroyed)
        recordings = self._store_events(processing_event)
        if destroyed:  # and any read between the first forget and the commit
            self.data_key_cache.forget(destroyed)
        self._snapshot_saved(processing_event)
        self._notify(recordings)
        return recordings

    def assume_sole_writer(self) -> None:
        """This process promises to be the only writer of the ledger: commands use
        the cached secrets and names without asking the store for newer events (one
        query fewer per aggregate, on SQLite one transaction fewer per command). A
        write by another process is still caught at insert: the conflict drops the
        aggregates it touched from the cache (`_store_events`), and `with_retries`
        runs the command again on what the store holds. Reads of a secret that
        another process changed may be stale until this process writes it: hence the
        promise."""
        self.repository.fastforward = False

    def refuse_database_waits_on(self, thread_ident: int | None) -> None:
        """Have the store refuse a round trip asked for on the thread ``thread_ident``
        (the server's event loop; None: no thread) with `WaitRefused`, before sending
        anything, instead of waiting for the answer. PostgreSQL only, whose answers
        cross the network: SQLite and memory stores wait for nothing but local files
        and locks, and are left as they are."""
        stores = [self.recorder] + ([] if self.snapshots is None else [self.snapshots.recorder])
        for store in stores:
            refuse_waits_on = getattr(store, "refuse_waits_on", None)  # PostgreSQL's
            if refuse_waits_on is not None:
                refuse_waits_on(thread_ident)

    def save_call_records(self, calls: Sequence[ApiCall]) -> None:
        """Save call records in one transaction. Unlike `save`, which collects (and so
        drains) an aggregate's pending events before it writes, a failed attempt leaves
        them pending: the group commit (`ledger.call_records`) saves the same records
        again after a failure, and must not save nothing."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for call in calls:
            assert call.pending_events, "a call record is saved once"
            processing_event.events.extend(call.pending_events)
        recordings = self._store_events(processing_event)
        for call in calls:
            call.collect_events()
        self._notify(recordings)

    def _store_events(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Put a save's events in the event store, and keep a copy of each saved secret
        and name in the cache, so the next command does not fold the events it has
        just written again. (Call records are never read back through the
        repository, so they stay out of the cache.) After a conflict, the cached
        copies of the aggregates involved may be behind the store: they are dropped,
        so that a retry reads them afresh."""
        cache = self.repository.cache
        try:
            recordings = self.events.put(
                processing_event.events,
                tracking=processing_event.tracking,
                **processing_event.saved_kwargs,
            )
        except IntegrityError:
            if cache is not None:
                for aggregate_id in processing_event.aggregates:
                    with contextlib.suppress(KeyError):
                        cache.get(aggregate_id, evict=True)
            raise
        if cache is not None:
            for aggregate_id, aggregate in processing_event.aggregates.items():
                if isinstance(aggregate, Secret | SecretName):
                    cache.put(aggregate_id, deepcopy(aggregate))
        return recordings

    def _snapshot_saved(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Snapshot from the aggregate just saved (it is exactly at its stored version)
        instead of the library's way of folding the events again from the store."""
        if self.snapshots is None:
            return
        for aggregate in processing_event.aggregates.values():
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is None:
                continue
            versions = [
                event.originator_version
                for event in processing_event.events
                if event.originator_id == aggregate.id
            ]
            if versions and (min(versions) - 1) // interval != max(versions) // interval:
                self.snapshots.put([Snapshot.take(aggregate)])

    def _require_keyring_opens_a_stored_key(self) -> None:
        """KR3: among the first stored data keys whose version is still known, the
        keyring must unwrap at least one; otherwise it is another ledger's keyring (or a
        key in it was replaced) and every read would fail with DecryptionFailure."""
        tried = 0
        for record in self.data_keys.select_data_keys(None, KEYRING_CHECK_KEYS_MAX):
            secret = self._get_secret(record.secret_id)
            version = secret.versions.get(record.version_id) if secret is not None else None
            if secret is None or version is None or not is_filled(version):
                continue
            tried += 1
            if self.envelope.opens_data_key(
                key_id=record.key_id,
                wrapped_key=record.wrapped_key,
                secret_arn=secret.arn,
                version_id=record.version_id,
                kind=version["kind"],
            ):
                return
        if tried:
            raise KeyringError(
                f"keyring {self.keyring.path_text} opens none of the {tried} stored data keys "
                "tried: it is not the keyring this ledger was written with (or one of its "
                "keys was replaced). Pass --keyring with the right file."
            )

    def log_has_events(self) -> bool:
        return self.recorder.max_notification_id() is not None

    def construct_transcoder(self) -> Transcoder:
        return MsgpackTranscoder()

    # Time

    def now(self) -> datetime:
        now = self.clock()
        assert now.tzinfo is not None, "the clock must return timezone-aware datetimes"
        return now

    # Resolution of SecretId (names, full ARNs, partial ARNs)

    def arn_for(self, name: str, suffix: str) -> str:
        return secret_arn(region=self.region, account_id=self.account_id, name=name, suffix=suffix)

    def find_secret(self, secret_id: str) -> Secret:
        """The live secret for a name, full ARN or partial ARN, or ResourceNotFoundException
        (ValidationException for a name AWS would refuse, NV-2).

        A secret whose recovery window has passed is purged here (§14 #15: lazily)."""
        require_valid_secret_id(secret_id)
        secret = self._alive(self._lookup(secret_id))
        if secret is None:
            raise secret_not_found()
        return secret

    def _found(self, secret_id: str, resolved: Secret | None) -> Secret:
        """`find_secret`, or the live secret `resolve` found (the same checks, one look-up)."""
        if resolved is None:
            return self.find_secret(secret_id)
        require_valid_secret_id(secret_id)
        return resolved

    def resolve(self, secret_id: str) -> Secret | None:
        """The live secret a ``SecretId`` names, or None, for authorization (AZ-10),
        which must know the secret before the operation looks it up. It writes
        nothing: a secret whose recovery window has passed is None here, and is purged
        by the operation's own look-up, so a call refused by its parameters or its
        policy appends no purge."""
        secret = self._lookup(secret_id)
        if secret is None or secret.is_deleted or self._is_past_recovery_window(secret):
            return None
        return secret

    def _alive(self, secret: Secret | None) -> Secret | None:
        """None for a deleted secret, and for one whose recovery window has passed,
        which is purged on the way (its name is released).

        Concurrent readers may find the window passed at once: each tries the purge,
        one appends ``SecretDeleted``, the others conflict and read the secret again
        (now deleted: None, as AWS answers after a deletion; or restored by a racing
        RestoreSecret: the secret). So a read never fails for another's purge."""
        if secret is None or secret.is_deleted:
            return None
        if not self._is_past_recovery_window(secret):
            return secret
        secret_id = secret.id
        return self.with_retries(lambda: self._purged_or_alive(secret_id))

    def _purged_or_alive(self, secret_id: UUID) -> Secret | None:
        """The secret as stored now, purged first if its window has passed."""
        secret = self._get_secret(secret_id)
        if secret is None or secret.is_deleted:
            return None
        if self._is_past_recovery_window(secret):
            self._purge(secret)
            return None
        return secret

    def _is_past_recovery_window(self, secret: Secret) -> bool:
        deletion_date = secret.deletion_date
        return deletion_date is not None and self.now() >= deletion_date

    def _lookup(self, secret_id: str) -> Secret | None:
        if not secret_id.startswith("arn:"):
            return self._secret_named(secret_id)
        parsed = parse_secret_arn(secret_id)
        if parsed is None or (parsed.region, parsed.account_id) != (self.region, self.account_id):
            return None
        if parsed.is_complete:
            return self._get_secret(secret_id_for_arn(secret_id))
        return self._secret_named(parsed.resource)

    def _secret_named(self, name: str) -> Secret | None:
        """Names are remembered once resolved: a remembered secret that has since been
        deleted (here or by another process) sends the lookup back to the name."""
        remembered = self.secret_ids_by_name.get(name)
        if remembered is not None:
            secret = self._get_secret(remembered)
            if secret is not None and not secret.is_deleted:
                return secret
        holder = self._get_name(name)
        if holder is None or holder.secret_id is None:
            return None
        if len(self.secret_ids_by_name) >= NAMES_REMEMBERED_MAX:
            self.secret_ids_by_name.clear()
        self.secret_ids_by_name[name] = holder.secret_id
        return self._get_secret(holder.secret_id)

    def _get_secret(self, secret_id: UUID) -> Secret | None:
        try:
            secret: object = self.repository.get(secret_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(secret, Secret)
        return secret

    def _get_name(self, name: str) -> SecretName | None:
        try:
            holder: object = self.repository.get(name_id_for(name))
        except AggregateNotFoundError:
            return None
        assert isinstance(holder, SecretName)
        return holder

    def _purge(self, secret: Secret) -> None:
        context = service_context(self.region, self.account_id, "DeleteSecret")
        self._delete_now(secret, forced=False, request=context)

    def _delete_now(self, secret: Secret, *, forced: bool, request: RequestContext) -> None:
        now = self.now()
        secret.delete(forced=forced, request=request, now=now)
        holder = self._get_name(secret.name)
        if holder is not None:
            holder.release(secret.id, request=request, now=now)
        self.save(secret, holder)

    # Retries

    def with_retries(self, command: Callable[[], T]) -> T:
        """Re-run a whole command after an optimistic-concurrency conflict."""
        for attempt in range(1, WRITE_ATTEMPTS_MAX + 1):
            try:
                return command()
            except IntegrityError:
                if attempt == WRITE_ATTEMPTS_MAX:
                    break
                backoff_seconds = WRITE_RETRY_BACKOFF_SECONDS * (2 ** (attempt - 1))
                time.sleep(random.uniform(0, backoff_seconds))
        raise InternalServiceError(
            f"The request conflicted with {WRITE_ATTEMPTS_MAX} concurrent writes; try again."
        )

    # Commands

    def create_secret(
        self,
        *,
        name: str,
        request: RequestContext,
        client_request_token: str | None = None,
        value: Value | None = None,
        description: str | None = None,
        kms_key_id: str | None = None,
        tags: list[dict[str, str]] | None = None,
    ) -> Outcome:
        if not set(name) <= NAME_CHARACTERS:
            raise ValidationException(INVALID_NAME_MESSAGE)
        if value is not None and client_request_token is None:
            raise InvalidRequestException(TOKEN_REQUIRED_MESSAGE)
        return self.with_retries(
            lambda: self._create_secret(
                name, request, client_request_token, value, description, kms_key_id, tags or []
            )
        )

    def _create_secret(
        self,
        name: str,
        request: RequestContext,
        token: str | None,
        value: Value | None,
        description: str | None,
        kms_key_id: str | None,
        tags: list[dict[str, str]],
    ) -> Outcome:
        existing = self._alive(self._secret_named(name))
        if existing is not None:
            return self._create_over_existing(existing, token, value, request)
        now = self.now()
        holder = self._get_name(name) or SecretName.register(name, request=request, now=now)
        secret = Secret.create(
            name=name,
            arn=self.arn_for(name, new_arn_suffix()),
            description=description,
            kms_key_id=kms_key_id,
            tags=tags,
            request=request,
            now=now,
        )
        holder.claim(secret.id, secret.arn, request=request, now=now)
        response: dict[str, Any] = {"ARN": secret.arn, "Name": name}
        data_keys: list[DataKeyRecord] = []
        if value is not None and token is not None:
            data_keys.append(self._add_version(secret, token, value, None, request, now))
            response["VersionId"] = token
        self.save(holder, secret, data_keys=data_keys)
        return Outcome(response, changed=True, resources=[{"secret_arn": secret.arn}])

    def _create_over_existing(
        self, existing: Secret, token: str | None, value: Value | None, request: RequestContext
    ) -> Outcome:
        """Name taken: scheduled -> InvalidRequestException; the same token and value as
        the original create -> the same response; otherwise ResourceExistsException."""
        if existing.is_scheduled_for_deletion():
            raise InvalidRequestException(
                "You can't create this secret because a secret with this name is already "
                "scheduled for deletion."
            )
        replayed = existing.versions.get(token or "")
        if token is not None and value is not None and replayed and is_filled(replayed):
            self._require_same_value(existing, token, value)
            response = {"ARN": existing.arn, "Name": existing.name, "VersionId": token}
            return Outcome(response, changed=False, resources=[{"secret_arn": existing.arn}])
        raise ResourceExistsException(
            f"The operation failed because the secret {existing.name} already exists."
        )

    def put_secret_value(
        self,
        *,
        secret_id: str,
        request: RequestContext,
        client_request_token: str | None,
        value: Value | None,
        version_stages: list[str] | None = None,
        both_values: bool = False,
        resolved: Secret | None = None,
    ) -> Outcome:
        """Checks in the order of reference section 2.2: token, secret, deletion state,
        value (``both_values``: the request carried SecretString and SecretBinary),
        replay, labels and quota. ``resolved``: the live secret authorization found,
        used by the first attempt (a retry after a conflict reads it afresh)."""
        if client_request_token is None:
            raise InvalidRequestException(TOKEN_REQUIRED_MESSAGE)
        token = client_request_token
        in_hand = [resolved] if resolved is not None else []
        return self.with_retries(
            lambda: self._put_secret_value(
                secret_id,
                request,
                token,
                value,
                version_stages,
                both_values,
                in_hand.pop() if in_hand else None,
            )
        )

    def _put_secret_value(
        self,
        secret_id: str,
        request: RequestContext,
        token: str,
        value: Value | None,
        stages: list[str] | None,
        both_values: bool,
        resolved: Secret | None,
    ) -> Outcome:
        secret = self._found(secret_id, resolved)
        if secret.is_scheduled_for_deletion():
            raise marked_for_deletion()
        if both_values:
            raise InvalidParameterException(BOTH_VALUES_MESSAGE)
        if value is None:
            raise InvalidRequestException(VALUE_REQUIRED_MESSAGE)
        resources: list[dict[str, str | None]] = [{"secret_arn": secret.arn, "version_id": token}]
        data_key = self._write_value(secret, token, value, stages, request, self.now())
        if data_key is None:
            return Outcome(self._put_response(secret, token), changed=False, resources=resources)
        self._save_with_new_versions(secret, [data_key])
        return Outcome(self._put_response(secret, token), changed=True, resources=resources)

    def _write_value(
        self,
        secret: Secret,
        token: str,
        value: Value,
        stages: list[str] | None,
        request: RequestContext,
        now: datetime,
    ) -> DataKeyRecord | None:
        """A put's value: a new version (T4), the value of a version a rotation staged
        (RO-4), or a replay (T5-T7: None, nothing to save)."""
        existing = secret.versions.get(token)
        if existing is None or not is_filled(existing):
            return self._add_version(secret, token, value, stages, request, now)
        self._require_same_value(secret, token, value)
        return None

    def _save_with_new_versions(self, secret: Secret, data_keys: list[DataKeyRecord]) -> None:
        """Saves a put's events with its new versions' data keys (docs/events.md VD-3).

        v1 kept the data key of each version that retention removed, and a v1 snapshot
        counts those versions without naming them (``Secret.upcast_v1_v2``): a secret
        loaded from such a snapshot does not know their tokens, so a put reusing one
        passes the secret's checks and then conflicts on the data-key table, attempt
        after attempt. On a conflict, a stored key whose version the secret, read
        again after the conflict, does not hold is exactly such a version (a
        concurrent put of the same token would be there, and every later removal or
        destruction deletes the key): its token is in use."""
        try:
            self.save(secret, data_keys=data_keys)
        except IntegrityError:
            for record in data_keys:
                if self._is_kept_key_of_lost_version(secret.id, record.version_id):
                    raise token_in_use(record.version_id, secret.arn) from None
            raise

    def _is_kept_key_of_lost_version(self, secret_id: UUID, version_id: str) -> bool:
        if self.data_keys.select_data_key(secret_id, version_id) is None:
            return False
        stored = self._get_secret(secret_id)
        return stored is not None and version_id not in stored.versions

    def _put_response(self, secret: Secret, version_id: str) -> dict[str, Any]:
        """T8: a replay answers with the version's current labels, none if deprecated."""
        response: dict[str, Any] = {"ARN": secret.arn, "Name": secret.name, "VersionId": version_id}
        labels = secret.labels_of(version_id)
        if labels:
            response["VersionStages"] = labels
        return response

    def _require_same_value(self, secret: Secret, token: str, value: Value) -> None:
        """T5-T7: a reused token must carry the same kind and bytes: compared with the
        version the token names, in that version's fingerprint format (S-3)."""
        version = secret.versions[token]
        assert is_filled(version), "a staged version is filled, never replayed (RO-4)"
        sealing = version["sealing"]
        replayed = secret.replayed_version(token, self._fingerprint(secret, token, sealing, value))
        assert replayed is not None, "a replayed token names an existing version"

    def _fingerprint(self, secret: Secret, version_id: str, sealing: int, value: Value) -> bytes:
        return self.keyring.fingerprint(
            sealing=sealing,
            secret_arn=secret.arn,
            version_id=version_id,
            kind=value.kind,
            value=value.plaintext(),
        )

    def _add_version(
        self,
        secret: Secret,
        token: str,
        value: Value,
        stages: list[str] | None,
        request: RequestContext,
        now: datetime,
    ) -> DataKeyRecord:
        """Seal the value of version ``token`` and trigger its events: a new version, or
        one a rotation staged, filled (RO-4); returns its wrapped data key. (A token of
        a destroyed or removed version is refused by the secret.)"""
        sealed = self.envelope.seal(
            value.plaintext(), secret_arn=secret.arn, version_id=token, kind=value.kind
        )
        version = SealedVersion(
            version_id=token,
            kind=value.kind,
            ciphertext=sealed.ciphertext,
            nonce=sealed.nonce,
            fingerprint=self._fingerprint(secret, token, sealed.sealing, value),
            sealing=sealed.sealing,
        )
        if token in secret.versions:
            secret.fill_version(version, stages, request=request, now=now)
        else:
            secret.add_version(
                version, stages, request=request, now=now, version_count_max=self.version_count_max
            )
        return DataKeyRecord(
            secret_id=secret.id,
            version_id=token,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
        )

    def update_secret(
        self,
        *,
        secret_id: str,
        request: RequestContext,
        client_request_token: str | None = None,
        value: Value | None = None,
        description: str | None = None,
        kms_key_id: str | None = None,
    ) -> Outcome:
        if value is not None and client_request_token is None:
            raise InvalidRequestException(TOKEN_REQUIRED_MESSAGE)
        return self.with_retries(
            lambda: self._update_secret(
                secret_id, request, client_request_token, value, description, kms_key_id
            )
        )

    def _update_secret(
        self,
        secret_id: str,
        request: RequestContext,
        token: str | None,
        value: Value | None,
        description: str | None,
        kms_key_id: str | None,
    ) -> Outcome:
        secret = self.find_secret(secret_id)
        if secret.is_scheduled_for_deletion():
            raise marked_for_deletion()
        response: dict[str, Any] = {"ARN": secret.arn, "Name": secret.name}
        resources: list[dict[str, str | None]] = [{"secret_arn": secret.arn}]
        now = self.now()
        data_keys: list[DataKeyRecord] = []
        if value is not None and token is not None:
            response["VersionId"] = token
            data_key = self._write_value(secret, token, value, None, request, now)
            if data_key is not None:
                data_keys.append(data_key)
        secret.update_metadata(description, kms_key_id, request=request, now=now)
        changed = bool(secret.pending_events)
        if changed:
            self._save_with_new_versions(secret, data_keys)
        return Outcome(response, changed=changed, resources=resources)

    def update_secret_version_stage(
        self,
        *,
        secret_id: str,
        request: RequestContext,
        version_stage: str,
        move_to_version_id: str | None = None,
        remove_from_version_id: str | None = None,
    ) -> Outcome:
        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.update_stage(
                version_stage,
                move_to_version_id,
                remove_from_version_id,
                request=request,
                now=self.now(),
            )
            changed = bool(secret.pending_events)
            if changed:
                self.save(secret)
            response = {"ARN": secret.arn, "Name": secret.name}
            return Outcome(response, changed=changed, resources=[{"secret_arn": secret.arn}])

        return self.with_retries(command)

    def delete_secret(
        self,
        *,
        secret_id: str,
        request: RequestContext,
        recovery_window_in_days: int | None = None,
        force_delete_without_recovery: bool | None = None,
    ) -> Outcome:
        forced = bool(force_delete_without_recovery)
        if forced and recovery_window_in_days is not None:
            raise InvalidParameterException(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays."
            )
        window_days = recovery_window_in_days
        if window_days is None:
            window_days = RECOVERY_WINDOW_DAYS_DEFAULT
        if not RECOVERY_WINDOW_DAYS_MIN <= window_days <= RECOVERY_WINDOW_DAYS_MAX:
            raise InvalidParameterException(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive)."
            )
        return self.with_retries(
            lambda: self._delete_secret(secret_id, request, forced, window_days)
        )

    def _delete_secret(
        self, secret_id: str, request: RequestContext, forced: bool, window_days: int
    ) -> Outcome:
        try:
            secret = self.find_secret(secret_id)
        except ResourceNotFoundException:
            if forced:
                return Outcome(self._forced_delete_of_unknown(secret_id), changed=False)
            raise
        if forced:
            self._delete_now(secret, forced=True, request=request)
            deletion_date = secret.modified_on
        else:
            secret.schedule_deletion(window_days, request=request, now=self.now())
            self.save(secret)
            assert secret.deletion_date is not None
            deletion_date = secret.deletion_date
        response = {"ARN": secret.arn, "Name": secret.name, "DeletionDate": deletion_date}
        return Outcome(response, changed=True, resources=[{"secret_arn": secret.arn}])

    def _forced_delete_of_unknown(self, secret_id: str) -> dict[str, Any]:
        """AWS reports success for a forced delete of an unknown secret, with a
        synthesised ARN; nothing is written."""
        if secret_id.startswith("arn:"):
            resource = resource_of_arn_text(secret_id)
            name = name_of_resource(resource)
            arn = secret_id if is_complete_resource(resource) else f"{secret_id}-{new_arn_suffix()}"
        else:
            name = secret_id
            arn = self.arn_for(name, new_arn_suffix())
        return {"ARN": arn, "Name": name, "DeletionDate": self.now()}

    def restore_secret(self, *, secret_id: str, request: RequestContext) -> Outcome:
        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.restore(request=request, now=self.now())
            changed = bool(secret.pending_events)
            if changed:
                self.save(secret)
            response = {"ARN": secret.arn, "Name": secret.name}
            return Outcome(response, changed=changed, resources=[{"secret_arn": secret.arn}])

        return self.with_retries(command)

    # Rotation (docs/rotation.md)

    def rotate_secret(
        self,
        *,
        secret_id: str,
        request: RequestContext,
        client_request_token: str | None,
        rotation_lambda_arn: str | None = None,
        rotation_rules: dict[str, Any] | None = None,
        rotate_immediately: bool = True,
        runner_of: RunnerOf = external_runner,
    ) -> Outcome:
        """RotateSecret, checks in the order R1-R6 (RO-1, RO-2): token, secret,
        deletion state, a function ARN, whether it can run, an unfinished rotation."""
        if client_request_token is None:
            raise InvalidParameterException(TOKEN_REQUIRED_MESSAGE)
        require_valid_secret_id(secret_id)
        token = client_request_token
        return self.with_retries(
            lambda: self._rotate_secret(
                secret_id,
                request,
                token,
                rotation_lambda_arn or None,
                rotation_rules,
                rotate_immediately,
                runner_of,
            )
        )

    def _rotate_secret(
        self,
        secret_id: str,
        request: RequestContext,
        token: str,
        lambda_arn: str | None,
        rules: dict[str, Any] | None,
        rotate_immediately: bool,
        runner_of: RunnerOf,
    ) -> Outcome:
        secret = self.find_secret(secret_id)
        if secret.is_scheduled_for_deletion():
            raise marked_for_deletion()
        if lambda_arn is None and secret.rotation is not None:
            lambda_arn = secret.rotation["lambda_arn"]
        if lambda_arn is None:
            raise InvalidRequestException(NO_ROTATION_FUNCTION_MESSAGE)
        runner = runner_of(lambda_arn)
        response = {"ARN": secret.arn, "Name": secret.name, "VersionId": token}
        resources: list[dict[str, str | None]] = [{"secret_arn": secret.arn}]
        if secret.rotation_in_progress() == token:
            return Outcome(response, changed=False, resources=resources)  # a retried call
        secret.rotate(
            token, lambda_arn, rules, rotate_immediately, runner, request=request, now=self.now()
        )
        self.save(secret)
        return Outcome(response, changed=True, resources=resources)

    def cancel_rotate_secret(self, *, secret_id: str, request: RequestContext) -> Outcome:
        """CancelRotateSecret (RO-9): rotation off; AWSPENDING stays; ``VersionId`` is
        the unfinished rotation's version, if there is one."""
        require_valid_secret_id(secret_id)

        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.disable_rotation(request=request, now=self.now())
            changed = bool(secret.pending_events)
            if changed:
                self.save(secret)
            response = {"ARN": secret.arn, "Name": secret.name}
            unfinished = secret.rotation_in_progress()
            if unfinished is not None:
                response["VersionId"] = unfinished
            return Outcome(response, changed=changed, resources=[{"secret_arn": secret.arn}])

        return self.with_retries(command)

    def rotation_context(self, secret_arn: str, operation: str) -> RequestContext:
        """The context of one rotation attempt's events: the service's, with the request
        id ``Rotation-<secret ARN>-<uuid>`` shared by the attempt's events (RO-7)."""
        request_id = f"Rotation-{secret_arn}-{uuid4()}"
        return service_context(self.region, self.account_id, operation, request_id)

    def live_secret(self, secret_id: UUID) -> Secret | None:
        """A secret by aggregate id, None once deleted (or purged on the way)."""
        return self._alive(self._get_secret(secret_id))

    def start_due_rotation(self, secret_id: UUID, version_id: str, runner: str) -> bool:
        """RO-8: stage the rotation of a secret whose window has opened (False when it
        is not due any more: another server started it, rotation was turned off...)."""

        def command() -> bool:
            secret = self.live_secret(secret_id)
            now = self.now()
            if secret is None or not secret.is_rotation_due(now):
                return False
            context = self.rotation_context(secret.arn, "RotateSecret")
            secret.start_scheduled_rotation(version_id, runner, request=context, now=now)
            self.save(secret)
            return True

        return self.with_retries(command)

    def begin_rotation_attempt(self, secret_id: UUID, request: RequestContext) -> int | None:
        """RO-6: the number of the attempt just started, or None when the secret has no
        rotation in progress any more (finished, abandoned, cancelled, deleted)."""

        def command() -> int | None:
            secret = self.live_secret(secret_id)
            if secret is None or not self.rotation_wanted(secret):
                return None
            attempt = secret.start_rotation_attempt(request=request, now=self.now())
            self.save(secret)
            return attempt

        return self.with_retries(command)

    @staticmethod
    def rotation_wanted(secret: Secret) -> bool:
        """A rotation is in progress, rotation is on, and the secret is not scheduled
        for deletion: its steps may (still) run."""
        return (
            secret.rotation is not None
            and secret.rotation["enabled"]
            and secret.rotation_in_progress() is not None
            and secret.deletion_date is None
        )

    def fail_rotation_attempt(
        self,
        secret_id: UUID,
        version_id: str,
        attempt: int,
        step: str,
        error_message: str,
        request: RequestContext,
    ) -> None:
        """RO-7: record a failed attempt (not for a secret deleted meanwhile)."""
        assert step in ROTATION_STEPS, "a step of the protocol"

        def command() -> None:
            secret = self.live_secret(secret_id)
            if secret is None:
                return
            secret.fail_rotation_attempt(
                version_id, attempt, step, error_message, request=request, now=self.now()
            )
            self.save(secret)

        self.with_retries(command)

    def finish_rotation(
        self, secret_id: UUID, version_id: str, attempt: int, request: RequestContext
    ) -> bool:
        """RO-6: after finishSecret returned: success if ``version_id`` holds AWSCURRENT,
        otherwise a failed attempt. Whether it succeeded."""

        def command() -> bool:
            secret = self.live_secret(secret_id)
            if secret is None:
                return False
            now = self.now()
            if secret.labels.get(AWSCURRENT) != version_id:
                secret.fail_rotation_attempt(
                    version_id,
                    attempt,
                    "finishSecret",
                    f"The finishSecret step returned but version {version_id} is not AWSCURRENT.",
                    request=request,
                    now=now,
                )
                self.save(secret)
                return False
            secret.complete_rotation(version_id, attempt, request=request, now=now)
            self.save(secret)
            return True

        return self.with_retries(command)

    # Tags and the resource policy (docs/policies.md)

    def tag_resource(
        self, *, secret_id: str, request: RequestContext, tags: list[dict[str, str]]
    ) -> Outcome:
        require_valid_secret_id(secret_id)

        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.tag(tags, request=request, now=self.now())
            return self._saved_if_changed(secret, {})

        return self.with_retries(command)

    def untag_resource(
        self, *, secret_id: str, request: RequestContext, tag_keys: list[str]
    ) -> Outcome:
        require_valid_secret_id(secret_id)

        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.untag(tag_keys, request=request, now=self.now())
            return self._saved_if_changed(secret, {})

        return self.with_retries(command)

    def put_resource_policy(
        self,
        *,
        secret_id: str,
        request: RequestContext,
        resource_policy: str,
        block_public_policy: bool = False,
    ) -> Outcome:
        require_valid_secret_id(secret_id)

        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.put_resource_policy(
                resource_policy,
                block_public_policy=block_public_policy,
                request=request,
                now=self.now(),
            )
            return self._saved_if_changed(secret, {"ARN": secret.arn, "Name": secret.name})

        return self.with_retries(command)

    def delete_resource_policy(self, *, secret_id: str, request: RequestContext) -> Outcome:
        require_valid_secret_id(secret_id)

        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.delete_resource_policy(request=request, now=self.now())
            return self._saved_if_changed(secret, {"ARN": secret.arn, "Name": secret.name})

        return self.with_retries(command)

    def get_resource_policy(self, *, secret_id: str, request: RequestContext) -> Outcome:
        """RP-12: allowed on a secret scheduled for deletion; ``ResourcePolicy`` only
        when one is attached, as the text it was put with."""
        require_valid_secret_id(secret_id)
        secret = self.find_secret(secret_id)
        response: dict[str, Any] = {"ARN": secret.arn, "Name": secret.name}
        if secret.resource_policy is not None:
            response["ResourcePolicy"] = secret.resource_policy
        return Outcome(response, changed=False, resources=[{"secret_arn": secret.arn}])

    def validate_resource_policy(
        self, *, resource_policy: str, request: RequestContext, secret_id: str | None = None
    ) -> Outcome:
        """RP-9: every finding of the grammar, else of broad access; ``SecretId``, when
        given, must name a secret (one scheduled for deletion too)."""
        resources: list[dict[str, str | None]] = []
        if secret_id is not None:
            require_valid_secret_id(secret_id)
            resources.append({"secret_arn": self.find_secret(secret_id).arn})
        findings = check_policy(resource_policy).findings
        response = {
            "PolicyValidationPassed": not findings,
            "ValidationErrors": validation_errors(findings),
        }
        return Outcome(response, changed=False, resources=resources)

    def _saved_if_changed(self, secret: Secret, response: dict[str, Any]) -> Outcome:
        """Save the secret's new events, if the command triggered any."""
        changed = bool(secret.pending_events)
        if changed:
            self.save(secret)
        return Outcome(response, changed=changed, resources=[{"secret_arn": secret.arn}])

    def destroy_version(
        self, *, secret_id: str, version_id: str, request: RequestContext
    ) -> Outcome:
        """Crypto-shred one version (secret-ledger's own DestroySecretVersion): its labels
        leave it, a ``VersionDestroyed`` event is appended and its wrapped data key is
        deleted, all in one transaction. Refused for the AWSCURRENT version; a version
        destroyed (or removed) already answers the same with nothing written."""

        def command() -> Outcome:
            secret = self.find_secret(secret_id)
            secret.destroy_version(version_id, request=request, now=self.now())
            changed = bool(secret.pending_events)
            if changed:
                self.save(secret)
            response = {"ARN": secret.arn, "Name": secret.name, "VersionId": version_id}
            resources: list[dict[str, str | None]] = [
                {"secret_arn": secret.arn, "version_id": version_id}
            ]
            return Outcome(response, changed=changed, resources=resources)

        return self.with_retries(command)

    # Queries

    def get_secret_value(
        self,
        *,
        secret_id: str,
        request: RequestContext,
        version_id: str | None = None,
        version_stage: str | None = None,
        resolved: Secret | None = None,
    ) -> Outcome:
        """``resolved``: the secret as `resolve` found it for authorization, if live (one
        look-up per call; the read acts on what was authorized)."""
        secret = self._found(secret_id, resolved)
        if secret.is_scheduled_for_deletion():
            raise marked_for_deletion()
        version = select_version(secret, version_id, version_stage)
        plaintext = self.decrypt(secret, version)
        self._note_access(secret, version["version_id"], request)
        response: dict[str, Any] = {
            "ARN": secret.arn,
            "Name": secret.name,
            "VersionId": version["version_id"],
        }
        if version["kind"] == "string":
            response["SecretString"] = plaintext.decode("utf-8")
        else:
            response["SecretBinary"] = plaintext
        labels = secret.labels_of(version["version_id"])
        if labels:
            response["VersionStages"] = labels
        response["CreatedDate"] = version["created_date"]
        resources: list[dict[str, str | None]] = [
            {"secret_arn": secret.arn, "version_id": version["version_id"]}
        ]
        return Outcome(response, changed=False, resources=resources)

    def _note_access(self, secret: Secret, version_id: str, request: RequestContext) -> None:
        """LA-2: the first read of a version on a UTC day appends ``Secret.Accessed``
        (re-run on a write conflict, with the secret as stored); later reads that day
        write nothing. The note never fails the read it belongs to: when concurrent
        writers win every attempt, the date is left for the next read that day."""
        if not secret.access_changes(version_id, self.now()):
            return

        in_hand = [secret]  # the first attempt's; a retry gets the stored secret

        def command() -> None:
            current = in_hand.pop() if in_hand else self._get_secret(secret.id)
            if current is None or current.is_deleted or version_id not in current.versions:
                return
            current.note_access(version_id, request=request, now=self.now())
            if current.pending_events:
                self.save(current)

        with contextlib.suppress(InternalServiceError):  # every attempt lost to writers
            self.with_retries(command)

    def decrypt(self, secret: Secret, version: VersionRecord) -> bytes:
        """The plaintext of one of the secret's versions, in memory; DecryptionFailure
        when the keyring cannot open it."""
        pair = (secret.id, version["version_id"])
        cached = self.data_key_cache.get(pair)
        if cached is not None:  # re-wrapped since, perhaps: the keyring keeps every KEK
            return self._open(secret, version, cached)
        generation = self.data_key_cache.generation
        data_key = self.data_keys.select_data_key(*pair)
        if data_key is None:
            raise DecryptionFailure(DECRYPTION_FAILURE_MESSAGE)
        plaintext = self._open(secret, version, data_key)
        self.data_key_cache.keep(data_key, generation)
        return plaintext

    def _open(self, secret: Secret, version: VersionRecord, data_key: DataKeyRecord) -> bytes:
        try:
            return self.envelope.open(
                ciphertext=version["ciphertext"],
                nonce=version["nonce"],
                key_id=data_key.key_id,
                wrapped_key=data_key.wrapped_key,
                secret_arn=secret.arn,
                version_id=version["version_id"],
                kind=version["kind"],
                sealing=version["sealing"],
            )
        except (DecryptionError, KeyringError):
            # KeyringError: the keyring lacks the key-encryption key that wrapped this
            # version's data key (another or a lost keyring file): a decryption failure.
            raise DecryptionFailure(DECRYPTION_FAILURE_MESSAGE) from None

    # Key-encryption key rotation (rules RW1-RW4 of docs/evidence.md)

    def rewrap_data_keys(self, *, batch_size: int) -> Generator[RewrapBatch, None, None]:
        """Re-wrap every data key that is not under the keyring's active KEK, in
        batches of ``batch_size`` (one transaction each), yielding after each batch.

        RW2: a key already under the active KEK is skipped, so a run that stopped
        half-way resumes where it stopped. RW3: only wrapped keys change; no event is
        written. RW4: a key destroyed between the read and the write of its batch
        makes the batch fail as a whole; it is read again (the key now absent)."""
        assert batch_size > 0, "batches hold at least one key"
        active_key_id = self.keyring.active_key_id
        after: tuple[UUID, str] | None = None
        while True:
            for attempt in range(1, WRITE_ATTEMPTS_MAX + 1):
                batch = self.data_keys.select_data_keys(after, batch_size)
                pending = [record for record in batch if record.key_id != active_key_id]
                try:
                    self.data_keys.replace_data_keys([self._rewrapped(r) for r in pending])
                    self.data_key_cache.forget((r.secret_id, r.version_id) for r in pending)
                    break
                except DataKeyNotFoundError:
                    if attempt == WRITE_ATTEMPTS_MAX:
                        raise
            if not batch:
                return
            after = (batch[-1].secret_id, batch[-1].version_id)
            yield RewrapBatch(examined=len(batch), rewrapped=len(pending))

    def _rewrapped(self, record: DataKeyRecord) -> DataKeyRecord:
        """The data key wrapped again under the active KEK, bound as ``_decrypt`` binds
        it: to the secret's ARN, the version id and the value's kind."""
        secret = self._get_secret(record.secret_id)
        assert secret is not None, "a data key is saved with its secret's events"
        key_id, wrapped_key = self.envelope.rewrap(
            key_id=record.key_id,
            wrapped_key=record.wrapped_key,
            secret_arn=secret.arn,
            version_id=record.version_id,
            kind=self._version_kind(secret, record.version_id),
        )
        return DataKeyRecord(record.secret_id, record.version_id, key_id, wrapped_key)

    def _version_kind(self, secret: Secret, version_id: str) -> str:
        """The kind of a version: from the secret, else (a version retention removed
        before its key was destroyed with it) from its ``VersionCreated`` event."""
        version = secret.versions.get(version_id)
        if version is not None and is_filled(version):
            return version["kind"]
        for event in self.events.get(secret.id):
            if (
                isinstance(event, Secret.VersionCreated | Secret.VersionFilled)
                and event.version_id == version_id
            ):
                kind: str = event.kind
                return kind
        raise AssertionError("a data key is saved with its version's VersionCreated")

    def describe_secret(
        self, *, secret_id: str, request: RequestContext, resolved: Secret | None = None
    ) -> Outcome:
        """``resolved``: as for `get_secret_value`."""
        secret = self._found(secret_id, resolved)
        return Outcome(describe(secret), changed=False, resources=[{"secret_arn": secret.arn}])

    def list_versions(
        self, *, secret_id: str
    ) -> tuple[Secret, list[VersionRecord | StagedVersion]]:
        """The live versions of a secret, newest first (§14 #11); scheduled secrets allowed."""
        secret = self.find_secret(secret_id)
        return secret, list(reversed(secret.versions.values()))

    def iterate_secrets(self, page_size: int = 500) -> Iterator[Secret]:
        """Every live secret, in creation order, purging any whose window has passed."""
        secret_ids = self.secret_ids(page_size)
        current = self._current_cached_secrets(secret_ids)
        for secret_id in secret_ids:
            cached = current.get(secret_id)
            secret = self._alive(cached if cached is not None else self._get_secret(secret_id))
            if secret is not None:
                yield secret

    def _current_cached_secrets(self, secret_ids: Sequence[UUID]) -> dict[UUID, Secret]:
        """Copies of the cached secrets among ``secret_ids`` that are at their newest
        stored version, checked with one read of the log's versions: the repository
        would ask the store once per secret (a round trip each on PostgreSQL). Empty
        for a sole writer, whose cache the repository trusts without asking."""
        cache = self.repository.cache
        if cache is None or not self.repository.fastforward:
            return {}
        cached: dict[UUID, Secret] = {}
        for secret_id in secret_ids:
            with contextlib.suppress(KeyError):
                aggregate = cache.get(secret_id)
                if isinstance(aggregate, Secret):
                    cached[secret_id] = aggregate
        if not cached:
            return {}
        last_versions = self.last_versions.select_last_versions(list(cached))
        return {
            secret_id: deepcopy(secret)
            for secret_id, secret in cached.items()
            if last_versions.get(secret_id) == secret.version
        }

    def secret_ids(self, page_size: int = 500) -> list[UUID]:
        """The id of every secret ever created, deleted ones included, in creation
        order: a read of the log that, unlike `iterate_secrets`, writes nothing.

        A secret's creation never leaves the log, so the ids read are kept
        (`SecretIdsRead`) and each call reads only the log after the last position
        read: ListSecrets no longer scans the whole log (20,000 events: 10 ms of a
        17 ms ListSecrets of 50 secrets). Positions only grow in commit order: both
        engines append one transaction at a time (SQLite's lock; PostgreSQL's
        exclusive table lock). The end is read before the lock is taken, so that a
        thread that must not wait for the database (`refuse_database_waits_on`) is
        refused before it could wait for the lock held by one that does."""
        read = self.secret_ids_read
        end = self.recorder.max_notification_id() or 0
        with read.lock:
            while read.position < end:
                notifications = self.recorder.select_notifications(
                    start=read.position,
                    limit=page_size,
                    stop=end,
                    topics=[Secret.Created.TOPIC],
                    inclusive_of_start=False,
                )
                for notification in notifications:
                    originator_id = notification.originator_id
                    assert isinstance(originator_id, UUID)
                    assert notification.id > read.position, "positions grow"
                    read.ids.append(originator_id)
                    read.position = notification.id
                if len(notifications) < page_size:
                    read.position = end  # nothing else was created up to the end read
            return list(read.ids)

    def stored_secret(self, secret_id: UUID) -> Secret:
        """A secret as stored (deleted or past its recovery window: never purged here)."""
        secret = self._get_secret(secret_id)
        assert secret is not None, "a secret id read from the log names a stored secret"
        return secret


@dataclass(frozen=True)
class RewrapBatch:
    """One batch of a KEK rotation: keys read, and how many of them were re-wrapped."""

    examined: int
    rewrapped: int


def shredding_of(events: Sequence[object]) -> tuple[list[DataKeyPair], bool]:
    """The (secret id, version id) of every data key the events say is destroyed, and
    whether only retention destroyed them (routine: its erasure from SQLite's files
    may wait; see `SQLiteDataKeyRecorder`)."""
    destroyed: list[DataKeyPair] = []
    is_routine = True
    for event in events:
        if isinstance(event, Secret.VersionDestroyed):
            destroyed.append((event.originator_id, event.version_id))
            is_routine = False
        elif isinstance(event, Secret.VersionRemoved) and event.data_key_destroyed:
            destroyed.append((event.originator_id, event.version_id))
    return destroyed, is_routine


def select_version(
    secret: Secret, version_id: str | None, version_stage: str | None
) -> VersionRecord:
    """The version a read names, with its value. A version staged by a rotation has
    none yet: it is not found, in the VersionId or the label form of the message,
    as the read named it (RO-3)."""
    if version_id is not None:
        version = secret.versions.get(version_id)
        if version is None and secret.is_gone(version_id):
            raise version_destroyed(version_id)
        if version is None:
            raise version_not_found(version_id)
        if version_stage is not None and secret.labels.get(version_stage) != version_id:
            raise InvalidRequestException(
                "You provided a VersionStage that is not associated to the provided VersionId."
            )
        if not is_filled(version):
            raise version_not_found(version_id)
        return version
    label = version_stage if version_stage is not None else AWSCURRENT
    holder = secret.labels.get(label)
    if holder is None:
        raise ResourceNotFoundException(f"{VALUE_NOT_FOUND_PREFIX} staging label: {label}")
    held = secret.versions[holder]
    if not is_filled(held):
        raise ResourceNotFoundException(f"{VALUE_NOT_FOUND_PREFIX} staging label: {label}")
    return held


def describe(secret: Secret) -> dict[str, Any]:
    """DescribeSecret's answer: only members that have a value."""
    response: dict[str, Any] = {"ARN": secret.arn, "Name": secret.name}
    if secret.description:  # NV-4: an empty description is no description
        response["Description"] = secret.description
    if secret.kms_key_id is not None:
        response["KmsKeyId"] = secret.kms_key_id
    response.update(rotation_members(secret))
    response["LastChangedDate"] = secret.modified_on
    if secret.last_accessed_date is not None:
        response["LastAccessedDate"] = secret.last_accessed_date
    if secret.deletion_date is not None:
        response["DeletedDate"] = secret.deletion_date
    if secret.rotation is not None and secret.rotation["next_rotation_date"] is not None:
        response["NextRotationDate"] = secret.rotation["next_rotation_date"]
    if secret.ever_tagged:  # TG-7: absent if never tagged, [] once all are removed
        response["Tags"] = [dict(tag) for tag in secret.tags]
    stages = secret.version_ids_to_stages()
    if stages:
        response["VersionIdsToStages"] = stages
    response["CreatedDate"] = secret.created_on
    return response


def rotation_members(secret: Secret) -> dict[str, Any]:
    """RO-11: RotationEnabled, RotationLambdaARN, RotationRules and LastRotatedDate,
    once rotation was ever configured (NextRotationDate is placed by the caller)."""
    rotation = secret.rotation
    if rotation is None:
        return {}
    members: dict[str, Any] = {
        "RotationEnabled": rotation["enabled"],
        "RotationLambdaARN": rotation["lambda_arn"],
    }
    if rotation["rules"]:
        rotated = rotation["last_rotated_date"] is not None
        members["RotationRules"] = parse_rules(rotation["rules"]).shown_rules(rotated)
    if rotation["last_rotated_date"] is not None:
        members["LastRotatedDate"] = rotation["last_rotated_date"]
    return members


def open_keyring(database: str, keyring_path: Path | None, *, log_has_events: bool) -> Keyring:
    """The keyring of the ledger at ``database`` (rules KR1-KR3 of docs/evidence.md).

    Beside a SQLite file by default (``<db>.keyring``); in memory for ``memory:``;
    PostgreSQL needs an explicit path, the one file every server shares. A keyring
    is created only for a ledger whose log is still empty: a new keyring could open
    none of the values already stored, and every new version sealed under it would
    be unreadable to the servers that hold the right one."""
    kind = database_kind(database)
    if keyring_path is None:
        if kind is DatabaseKind.MEMORY:
            return Keyring.in_memory()
        if kind is DatabaseKind.POSTGRES:
            raise KeyringError(
                "a PostgreSQL ledger needs an explicit keyring (--keyring FILE, or "
                "SECRETLEDGER_KEYRING): the one file every server of this ledger shares"
            )
        keyring_path = Path(database + ".keyring")
    if log_has_events and not keyring_path.exists():
        raise KeyringError(
            f"keyring {keyring_path} does not exist, and this ledger already holds events: "
            "refusing to create a new keyring, which could open none of the stored values. "
            "Pass --keyring with the keyring this ledger was written with."
        )
    return Keyring.open(keyring_path, create=not log_has_events)
