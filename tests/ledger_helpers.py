"""Helpers shared by the per-operation tests of the ledger core.

`Harness` wraps one `Secrets` ledger with an injected `FakeClock` and two faces:
``call`` goes through a `SecretsManagerApi` that records every call that changed
no secret (the face under test), ``quietly`` through one that records nothing (so
that the assertions' own reads leave the log alone). ``assert_refused`` checks the
rule "a failed call changes nothing" twice: literally (no call record: the log
does not grow at all) and as recorded (exactly one ``ApiCall.Recorded`` carrying
the error is appended, and no secret's stream changes).

`Oracle` replays the same steps against moto, for the few behaviours where moto
agrees with AWS (docs/semantics.md §13). `StandIn` is the base of the
stand-ins that change one method of a store or ledger and pass the rest through.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.crypto import Keyring
from ledger.domain import ApiCall, secret_id_for_arn
from ledger.errors import SecretsManagerError

START = datetime(2025, 3, 19, 9, 0, tzinfo=UTC)
AWSCURRENT = "AWSCURRENT"
AWSPREVIOUS = "AWSPREVIOUS"
AWSPENDING = "AWSPENDING"
NOT_FOUND_MESSAGE = "Secrets Manager can't find the specified secret."
MARKED_FOR_DELETION_MESSAGE = (
    "You can't perform this operation on the secret because it was marked for deletion."
)
TOKEN_REQUIRED_MESSAGE = (
    "You must provide a ClientRequestToken value. We recommend a UUID-type value."
)
VALUE_REQUIRED_MESSAGE = "You must provide either SecretString or SecretBinary."
BOTH_VALUES_MESSAGE = (
    "You can't specify both a binary secret value and a string secret value in the same secret."
)
INVALID_NAME_MESSAGE = (
    "Invalid name. Must be a valid name containing alphanumeric characters, "
    "or any of the following: -/_+=.@!"
)
NOTIFICATIONS_PAGE_SIZE = 100
EVENTS_READ_MAX = 10_000
VERSION_PAGES_MAX = 10


class StandIn:
    """Passes every attribute it does not define to ``wrapped``: a stand-in that
    changes one method of a store or ledger (slow, failing, counting)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def __getattr__(self, name: str) -> object:
        return getattr(self.wrapped, name)


def token(number: int) -> str:
    """A ClientRequestToken (36 characters, UUID-shaped) that is easy to read in failures."""
    return str(uuid.UUID(int=number))


def token_in_use_message(client_request_token: str, secret_arn: str) -> str:
    return (
        f"You can't use ClientRequestToken {client_request_token} because that value is "
        f"already in use for a version of secret {secret_arn}."
    )


def value_members(value: str | bytes) -> dict[str, Any]:
    if isinstance(value, bytes):
        return {"SecretBinary": value}
    return {"SecretString": value}


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> datetime:
        assert delta >= timedelta(0), "time never runs backwards"
        self.current += delta
        return self.current


class Harness:
    """One ledger under test, seen through the Secrets Manager API."""

    def __init__(self, secrets: Secrets, clock: FakeClock) -> None:
        self.secrets = secrets
        self.clock = clock
        self.api = SecretsManagerApi(secrets)
        self.quiet_api = SecretsManagerApi(secrets, record_calls=False)

    # Calls

    def call(self, operation: str, **members: Any) -> dict[str, Any]:
        return self.api.call(operation, members)

    def quietly(self, operation: str, **members: Any) -> dict[str, Any]:
        return self.quiet_api.call(operation, members)

    def create(
        self,
        name: str,
        client_request_token: str | None = None,
        value: str | bytes | None = None,
        **members: Any,
    ) -> dict[str, Any]:
        if client_request_token is not None:
            members["ClientRequestToken"] = client_request_token
        if value is not None:
            members.update(value_members(value))
        return self.call("CreateSecret", Name=name, **members)

    def put(
        self,
        secret_id: str,
        client_request_token: str,
        value: str | bytes,
        stages: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        members: dict[str, Any] = {"ClientRequestToken": client_request_token}
        members.update(value_members(value))
        if stages is not None:
            members["VersionStages"] = list(stages)
        return self.call("PutSecretValue", SecretId=secret_id, **members)

    def stage(
        self,
        secret_id: str,
        label: str,
        move_to: str | None = None,
        remove_from: str | None = None,
    ) -> dict[str, Any]:
        members: dict[str, Any] = {}
        if move_to is not None:
            members["MoveToVersionId"] = move_to
        if remove_from is not None:
            members["RemoveFromVersionId"] = remove_from
        return self.call(
            "UpdateSecretVersionStage", SecretId=secret_id, VersionStage=label, **members
        )

    # Observations (through the quiet face: they append nothing)

    def labels(self, secret_id: str) -> dict[str, list[str]]:
        """Every live version, deprecated ones included with [], mapped to its labels."""
        versions = self.all_versions(secret_id)
        return {entry["VersionId"]: entry.get("VersionStages", []) for entry in versions}

    def all_versions(self, secret_id: str) -> list[dict[str, Any]]:
        """ListSecretVersionIds with IncludeDeprecated, every page, newest first."""
        request: dict[str, Any] = {"SecretId": secret_id, "IncludeDeprecated": True}
        versions: list[dict[str, Any]] = []
        for _ in range(VERSION_PAGES_MAX):
            response = self.quietly("ListSecretVersionIds", **request)
            versions.extend(response["Versions"])
            if "NextToken" not in response:
                return versions
            request["NextToken"] = response["NextToken"]
        raise AssertionError(f"more than {VERSION_PAGES_MAX} pages of versions")

    def current_value(self, secret_id: str) -> str | bytes:
        response = self.quietly("GetSecretValue", SecretId=secret_id)
        if "SecretString" in response:
            return str(response["SecretString"])
        return bytes(response["SecretBinary"])

    def log_length(self) -> int:
        return self.secrets.recorder.max_notification_id() or 0

    def stream_length(self, secret_arn: str) -> int:
        return len(list(self.secrets.events.get(secret_id_for_arn(secret_arn))))

    def events_since(self, log_length: int) -> list[Any]:
        """Every event appended after position ``log_length``, in log order."""
        events: list[Any] = []
        position = log_length
        while len(events) < EVENTS_READ_MAX:
            notifications = self.secrets.recorder.select_notifications(
                start=position, limit=NOTIFICATIONS_PAGE_SIZE, inclusive_of_start=False
            )
            if not notifications:
                return events
            events.extend(self.secrets.mapper.to_domain_event(item) for item in notifications)
            position = notifications[-1].id
        raise AssertionError(f"more than {EVENTS_READ_MAX} events since {log_length}")

    def event_types_since(self, log_length: int) -> list[str]:
        return [type(event).__qualname__ for event in self.events_since(log_length)]

    # The rule "a failed call changes nothing"

    def assert_refused(
        self,
        operation: str,
        request: Mapping[str, Any],
        code: str,
        message: str | None = None,
        secret_arns: Sequence[str] = (),
    ) -> SecretsManagerError:
        """The call fails with ``code`` (and ``message`` when given), appends nothing
        without call recording, and only its own ApiCall record with recording."""
        streams_before = [self.stream_length(arn) for arn in secret_arns]
        log_before = self.log_length()
        with pytest.raises(SecretsManagerError) as quiet_failure:
            self.quiet_api.call(operation, request)
        quiet_error = quiet_failure.value
        got = f"{quiet_error.code}: {quiet_error.message}"
        assert quiet_error.code == code, f"expected {code}, got {got}"
        assert message is None or quiet_error.message == message, f"expected {message}, got {got}"
        assert self.log_length() == log_before, "a failed call appended events"
        with pytest.raises(SecretsManagerError) as recorded_failure:
            self.api.call(operation, request)
        error = recorded_failure.value
        assert (error.code, error.message) == (quiet_error.code, quiet_error.message), (
            f"the recorded call failed differently: {error.code}: {error.message}"
        )
        status = 500 if code == "InternalServiceError" else 400
        assert error.http_status == status, f"HTTP {error.http_status}, not {status}"
        appended = self.events_since(log_before)
        appended_types = [type(event).__qualname__ for event in appended]
        assert appended_types == ["ApiCall.Recorded"], f"appended {appended_types}"
        record = appended[0]
        assert isinstance(record, ApiCall.Recorded)
        assert (record.error_code, record.error_message) == (error.code, error.message), (
            f"recorded {record.error_code}: {record.error_message}"
        )
        assert record.request["operation"] == operation, record.request["operation"]
        streams_after = [self.stream_length(arn) for arn in secret_arns]
        assert streams_after == streams_before, f"streams {streams_before} -> {streams_after}"
        return error


@contextmanager
def case(title: str) -> Iterator[None]:
    """Names a table row in any failure raised inside it.

    Tables of cases run as loops inside one test, each row on its own secret, so
    that a backend (a PostgreSQL database above all) is opened once per table
    rather than once per row; this keeps the row visible when one fails."""
    try:
        yield
    except (Exception, pytest.fail.Exception) as failure:
        raise AssertionError(f"[{title}] {type(failure).__name__}: {failure}") from failure


@contextmanager
def open_harness(backend: str, **options: Any) -> Iterator[Harness]:
    """A ledger on ``backend`` with a fake clock and (unless given) an in-memory keyring."""
    clock = FakeClock()
    options.setdefault("keyring", Keyring.in_memory())
    secrets = Secrets(backend, clock=clock, **options)
    try:
        yield Harness(secrets, clock)
    finally:
        secrets.close()


# Worked-example notation: v1, v2, ... are token(1), token(2), ...; CUR, PREV and
# PEND are the AWS-managed labels; other labels are written as they are.

SHORT_LABELS = {"CUR": AWSCURRENT, "PREV": AWSPREVIOUS, "PEND": AWSPENDING}


def version(short: str) -> str:
    assert short.startswith("v"), short
    return token(int(short[1:]))


def label(short: str) -> str:
    return SHORT_LABELS.get(short, short)


def short_label_map(labels: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """A version -> labels map in worked-example notation, labels sorted."""
    long_to_short = {value: key for key, value in SHORT_LABELS.items()}
    return {
        f"v{uuid.UUID(version_id).int}": sorted(long_to_short.get(item, item) for item in items)
        for version_id, items in labels.items()
    }


def labelled_only(labels: Mapping[str, list[str]]) -> dict[str, list[str]]:
    return {version_id: sorted(items) for version_id, items in labels.items() if items}


Step = tuple[Any, ...]


def run_step(harness: Harness, secret_id: str, step: Step) -> dict[str, Any]:
    """Run one worked-example step: ("put", "v2", ["PEND"] | None) or
    ("stage", "CUR", move "v2" | None, remove "v1" | None)."""
    kind = step[0]
    if kind == "put":
        _, short_version, stages = step
        stages_long = None if stages is None else [label(item) for item in stages]
        value = f"value of {short_version}"
        return harness.put(secret_id, version(short_version), value, stages_long)
    assert kind == "stage", step
    _, short_label, move_to, remove_from = step
    return harness.stage(
        secret_id,
        label(short_label),
        None if move_to is None else version(move_to),
        None if remove_from is None else version(remove_from),
    )


class Oracle:
    """moto, driven with the same steps, for the behaviours where it matches AWS."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def call(self, operation: str, **members: Any) -> dict[str, Any]:
        """Returns the response, or {"Error": {"Code", "Message"}} on a client error."""
        from botocore.exceptions import ClientError

        method = getattr(self.client, snake_case(operation))
        try:
            response: dict[str, Any] = method(**members)
        except ClientError as error:
            return {"Error": dict(error.response["Error"])}
        response.pop("ResponseMetadata", None)
        return response

    def labels(self, secret_id: str) -> dict[str, list[str]]:
        response = self.call("ListSecretVersionIds", SecretId=secret_id, IncludeDeprecated=True)
        versions = response["Versions"]
        return {entry["VersionId"]: entry.get("VersionStages", []) for entry in versions}


def snake_case(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


@contextmanager
def open_oracle(region: str = "us-east-1") -> Iterator[Oracle]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client(
            "secretsmanager",
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield Oracle(client)


def outcome_of(harness: Harness, operation: str, **members: Any) -> dict[str, Any]:
    """The ledger's answer in the oracle's shape: the response or {"Error": ...}."""
    try:
        return harness.call(operation, **members)
    except SecretsManagerError as error:
        return {"Error": {"Code": error.code, "Message": error.message}}
