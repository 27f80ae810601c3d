"""Shared helpers of the read-side tests (no tests here).

`Ledger` is one ledger under test on a ``backend``, written through the Secrets
Manager API with an injected clock, and read through its `ReadModel` (for
``memory:`` built on the writing application, otherwise opened on the database like
the CLI does). `replay_label_state` is the oracle: a tiny fold of the raw log, cut
at a position or a time, that the projections must agree with.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.api import Caller, SecretsManagerApi
from ledger.application import Secrets
from ledger.crypto import Keyring
from ledger.domain import Secret, SecretName, secret_id_for_arn
from ledger.errors import SecretsManagerError
from projections import ReadModel
from projections.audit import AuditProjection
from projections.labels import LabelsProjection
from projections.runner import TRACKING_TABLE
from projections.store import ViewStore

START = datetime(2025, 3, 19, 9, 0, tzinfo=UTC)
ACCOUNT_ID = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
ROTATOR = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/rotator-role/rotation-7"
ACCESS_KEY_ID = "AKIAEXAMPLE0000ALICE"
LOG_PAGE_SIZE = 500


def token(number: int) -> str:
    """A ClientRequestToken (a version id) that is easy to read in failures."""
    return str(uuid.UUID(int=number))


class SteppingClock:
    """Stands still until moved; several calls can therefore share a timestamp."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> datetime:
        assert delta >= timedelta(0), "this clock never runs backwards"
        self.current += delta
        return self.current


class Ledger:
    """A ledger written through the API, and its read side."""

    def __init__(
        self, database: str, *, clock: SteppingClock | None = None, page_size: int = 1_000
    ) -> None:
        self.database = database
        self.clock = clock or SteppingClock()
        self.secrets = Secrets(database, keyring=Keyring.in_memory(), clock=self.clock)
        self.api = SecretsManagerApi(self.secrets)
        application = self.secrets if database == "memory:" else None
        self.read_model = ReadModel.open(
            database,
            application=application,
            page_size=page_size,
            transaction_events_max=page_size,
        )

    def call(
        self,
        operation: str,
        principal: str = ALICE,
        request_id: str | None = None,
        **members: Any,
    ) -> dict[str, Any]:
        caller = Caller(principal_arn=principal, access_key_id=ACCESS_KEY_ID)
        if request_id is not None:
            caller = dataclasses.replace(caller, request_id=request_id)
        return self.api.call(operation, members, caller)

    def attempt(
        self,
        operation: str,
        principal: str = ALICE,
        request_id: str | None = None,
        **members: Any,
    ) -> str | None:
        """Make a call that may fail; the error code, or None on success."""
        try:
            self.call(operation, principal, request_id, **members)
        except SecretsManagerError as error:
            return error.code
        return None

    def tick(self, seconds: float = 1.0) -> datetime:
        """Move the clock on: the next calls happen at the returned time."""
        return self.clock.advance(timedelta(seconds=seconds))

    def quiet_moment(self) -> datetime:
        """An instant strictly between the calls made before and after it."""
        moment = self.tick()
        self.tick()
        return moment

    def caught_up(self) -> ReadModel:
        self.read_model.catch_up()
        return self.read_model

    def log(self) -> list[tuple[int, Any]]:
        return list(log_entries(self.secrets))

    def close(self) -> None:
        self.read_model.close()
        self.secrets.close()


def log_entries(secrets: Secrets) -> Iterator[tuple[int, Any]]:
    """Every event of the log with its position, decoded."""
    position = 0
    while True:
        notifications = secrets.recorder.select_notifications(
            start=position, limit=LOG_PAGE_SIZE, inclusive_of_start=False
        )
        if not notifications:
            return
        for notification in notifications:
            yield notification.id, secrets.mapper.to_domain_event(notification)
        position = notifications[-1].id


@dataclass
class ReplayedSecret:
    """A secret's label state after folding its events up to a cut."""

    arn: str
    labels: dict[str, str] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    deleted: bool = False

    def version_ids_to_stages(self) -> dict[str, list[str]]:
        stages = {
            version_id: sorted(
                label for label, holder in self.labels.items() if holder == version_id
            )
            for version_id in self.versions
        }
        return {version_id: labels for version_id, labels in stages.items() if labels}


def is_before_cut(
    position: int, event: Any, cut_position: int | None, as_of: datetime | None
) -> bool:
    if cut_position is not None:
        return position <= cut_position
    assert as_of is not None
    timestamp: datetime = event.timestamp
    return timestamp <= as_of


def replay_label_state(
    entries: Sequence[tuple[int, Any]],
    arn: str,
    *,
    position: int | None = None,
    as_of: datetime | None = None,
) -> ReplayedSecret | None:
    """Fold the secret's events that fall before the cut; None if it did not exist."""
    secret_id = secret_id_for_arn(arn)
    state: ReplayedSecret | None = None
    for entry_position, event in entries:
        if not isinstance(event, Secret.Event) or not is_before_cut(
            entry_position, event, position, as_of
        ):
            continue
        if isinstance(event, Secret.Created):
            if event.arn == arn:
                state = ReplayedSecret(arn)
            continue
        if state is None or event.originator_id != secret_id:
            continue
        if isinstance(event, Secret.VersionCreated):
            state.versions.append(event.version_id)
        elif isinstance(event, Secret.VersionRemoved | Secret.VersionDestroyed):
            state.versions.remove(event.version_id)
        elif isinstance(event, Secret.LabelMoved):
            if event.to_version_id is None:
                del state.labels[event.label]
            else:
                state.labels[event.label] = event.to_version_id
        elif isinstance(event, Secret.Deleted):
            state.deleted = True
            state.labels.clear()
            state.versions.clear()
    return state


def replay_name_holder(
    entries: Sequence[tuple[int, Any]],
    name: str,
    *,
    position: int | None = None,
    as_of: datetime | None = None,
) -> str | None:
    """The ARN of the secret that held ``name`` at the cut, else the last one before."""
    holder: str | None = None
    for entry_position, event in entries:
        if (
            isinstance(event, SecretName.Claimed)
            and event.name == name
            and is_before_cut(entry_position, event, position, as_of)
        ):
            holder = event.arn
    return holder


def projection_rows(store: ViewStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projection table and view, sorted: for comparing two builds."""
    tables = [TRACKING_TABLE, *LabelsProjection.tables, *LabelsProjection.views]
    tables += AuditProjection.tables
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with store.read() as cursor:
        for table in tables:
            fetched = cursor.execute(f"SELECT * FROM {table}").fetchall()
            rows[table] = sorted(fetched, key=repr)
    return rows
