"""The read-side commands of `secretledger`: time travel over labels, and the audit trail.

==========================  =====================================================
labels --secret-id S        the label map now, ``--as-of TIME`` or ``--at-position N``
history --secret-id S       every label move, in log order
diff --secret-id S T1 T2    labels whose version differs between two instants
audit query                 audit records, filtered; a table or JSON Lines
audit export --out DIR      CloudTrail log files (gzipped JSON)
replay                      drop projections and rebuild them from the log
follow                      keep the projections up to date (a projection process)
==========================  =====================================================

Every query first brings the projections up to date with the log, so it sees a
write made just before it. Times are ISO 8601 (``2025-03-19T09:20:11Z``; without an
offset, UTC). "As of T" includes every event stamped T. ``--secret-id`` takes a
name, a full ARN or a partial ARN, as every other command does; a name means the
secret that held it at the time asked about (names are re-used after a forced
delete), else the last one that held it before.
No command needs the keyring: the read side never sees a secret value.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from eventsourcing.persistence import PersistenceError

from ledger.cli.common import (
    EXIT_AWS_ERROR,
    database_option,
    json_option,
    main,
    secret_id_option,
)
from ledger.storage import DatabaseKind, database_kind
from projections import (
    PROJECTION_NAMES,
    AuditFilter,
    LabelMap,
    ReadModel,
    SecretNotFoundError,
    format_instant,
    parse_instant,
)
from projections.runner import POLL_INTERVAL_SECONDS_DEFAULT, BackgroundRunner
from projections.store import ExpectationFailed
from projections.writer import WriterProcessError

Command = Callable[..., None]
with_database: Callable[[Command], Command] = database_option()
with_json: Callable[[Command], Command] = json_option()
QUERY_ROWS_MAX_DEFAULT = 1_000
STATUS_INTERVAL_SECONDS = 1.0


def instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time option or argument; UTC when it has no offset."""
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


def time_option(flag: str, help_text: str) -> Callable[[Command], Command]:
    return click.option(flag, callback=instant, metavar="TIME", help=help_text)


def open_read_model(database: str, page_size: int | None = None) -> ReadModel:
    """The read model of ``--db``; usage errors for bad values, never a traceback."""
    try:
        if page_size is None:
            return ReadModel.open(database)
        return ReadModel.open(database, page_size=page_size, transaction_events_max=page_size)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--db") from None
    except (PersistenceError, OSError) as error:
        raise click.ClickException(f"cannot open the ledger: {error}") from None


@contextmanager
def caught_up(database: str) -> Iterator[ReadModel]:
    """The read model of ``--db``, brought up to date with the log."""
    model = open_read_model(database)
    try:
        model.catch_up()
        yield model
    finally:
        model.close()


@contextmanager
def not_found_errors(as_json: bool) -> Iterator[None]:
    """A secret that did not exist at the time asked about: exit 1, AWS-shaped."""
    try:
        yield
    except SecretNotFoundError as error:
        code = "ResourceNotFoundException"
        if as_json:
            click.echo(json.dumps({"__type": code, "Message": error.message}), err=True)
        else:
            click.echo(f"{code}: {error.message}", err=True)
        sys.exit(EXIT_AWS_ERROR)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_label_map(label_map: LabelMap, include_deprecated: bool) -> None:
    state = " (deleted)" if label_map.deleted else ""
    click.echo(f"{label_map.arn}{state}")
    click.echo(f"as of {format_instant(label_map.as_of)}, log position {label_map.position}")
    rows = [(version_id, " ".join(labels)) for version_id, labels in label_map.versions.items()]
    if not include_deprecated:
        rows = [row for row in rows if row[1]]
    if rows:
        print_table(("VERSION ID", "STAGES"), rows)
    else:
        click.echo("no labelled versions")


@main.command("labels")
@secret_id_option()
@time_option("--as-of", "The labels as of this time.")
@click.option(
    "--at-position",
    "position",
    type=click.IntRange(min=0),
    help="The labels after the log's first N positions (notification ids).",
)
@click.option("--include-deprecated", is_flag=True, help="Also list versions with no label.")
@with_database
@with_json
def labels(
    secret_id: str,
    as_of: datetime | None,
    position: int | None,
    include_deprecated: bool,
    database: str,
    as_json: bool,
) -> None:
    """Which version each label of the secret was on: now, --as-of TIME, or --at-position N.

    \b
    --json prints {"ARN", "Name", "AsOf", "Position", "VersionIdsToStages"} like
    DescribeSecret (plus "DeprecatedVersionIds" with --include-deprecated, and
    "Deleted": true for a deleted secret). "Position" is the log position of the
    secret's last event at or before the time asked about.

    \b
    Example:
      secretledger labels --secret-id payments/api-key --as-of 2025-03-19T09:20:11Z --json
    """
    if as_of is not None and position is not None:
        raise click.UsageError("give --as-of or --at-position, not both")
    with caught_up(database) as model, not_found_errors(as_json):
        label_map = model.labels.label_map(
            secret_id, as_of=as_of, position=position, include_deprecated=include_deprecated
        )
    if as_json:
        echo_json(label_map.to_json(include_deprecated=include_deprecated))
    else:
        print_label_map(label_map, include_deprecated)


@main.command("history")
@secret_id_option()
@click.option("--label", help="Only this label.")
@time_option("--since", "Only moves at or after this time.")
@time_option("--until", "Only moves at or before this time.")
@with_database
@with_json
def history(
    secret_id: str,
    label: str | None,
    since: datetime | None,
    until: datetime | None,
    database: str,
    as_json: bool,
) -> None:
    """Every label move of the secret, in log order: who moved which label from which
    version to which, when, and why (REASON, see docs/events.md). A deletion shows
    as every label leaving its version (reason detached-by-deletion).

    \b
    Example:
      secretledger history --secret-id payments/api-key --label AWSCURRENT --since 2025-03-01
    """
    with caught_up(database) as model, not_found_errors(as_json):
        moves = model.labels.history(secret_id, label=label, since=since, until=until)
    if as_json:
        echo_json([move.to_json() for move in moves])
        return
    print_table(
        (
            "POSITION",
            "TIME",
            "LABEL",
            "FROM",
            "TO",
            "REASON",
            "OPERATION",
            "PRINCIPAL",
            "REQUEST ID",
        ),
        [
            (
                str(move.position),
                format_instant(move.event_time),
                move.label,
                move.from_version_id or "-",
                move.to_version_id or "-",
                move.reason,
                move.operation,
                move.principal_arn,
                move.request_id,
            )
            for move in moves
        ],
    )


@main.command("diff")
@secret_id_option()
@click.argument("first", metavar="T1", callback=instant)
@click.argument("second", metavar="T2", callback=instant)
@with_database
@with_json
def diff(secret_id: str, first: datetime, second: datetime, database: str, as_json: bool) -> None:
    """The labels of the secret whose version differs between T1 and T2 ("-": not attached).

    \b
    Example:
      secretledger diff --secret-id payments/api-key 2025-03-19T09:00Z 2025-03-19T10:00Z
    """
    with caught_up(database) as model, not_found_errors(as_json):
        changes = model.labels.diff(secret_id, first, second)
    if as_json:
        echo_json([change.to_json() for change in changes])
        return
    if not changes:
        click.echo("no label changed")
        return
    print_table(
        ("LABEL", "AT T1", "AT T2"),
        [
            (change.label, change.before_version_id or "-", change.after_version_id or "-")
            for change in changes
        ],
    )


@main.group("audit")
def audit() -> None:
    """CloudTrail-style audit records of every call (no secret value in any of them)."""


@audit.command("query")
@secret_id_option(
    required=False,
    help_text="A full ARN (that secret), or a name or partial ARN (every secret that had it).",
)
@click.option("--principal", "principal_arn", help="The caller's principal ARN.")
@click.option("--event-name", help="An operation or service event name, e.g. GetSecretValue.")
@click.option("--error-code", help="Failed calls with this errorCode, e.g. AccessDeniedException.")
@time_option("--since", "Records at or after this eventTime.")
@time_option("--until", "Records at or before this eventTime.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=QUERY_ROWS_MAX_DEFAULT,
    show_default=True,
    help="At most this many records.",
)
@with_database
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines: one whole record a line.")
def audit_query(
    secret_id: str | None,
    principal_arn: str | None,
    event_name: str | None,
    error_code: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    database: str,
    as_json: bool,
) -> None:
    """Audit records in log order, filtered by secret, principal, event name, error
    code and time. A denied call's record names, in additionalEventData, the policy
    and statement (Sid) that denied it (secretLedger.denials).

    \b
    Example:
      secretledger audit query --secret-id payments/api-key --event-name GetSecretValue
      secretledger audit query --principal arn:aws:iam::123456789012:user/ci --json
      secretledger audit query --error-code AccessDeniedException --json
    """
    audit_filter = AuditFilter(
        secret=secret_id,
        principal_arn=principal_arn,
        event_name=event_name,
        error_code=error_code,
        since=since,
        until=until,
    )
    with caught_up(database) as model:
        records = []
        for record in model.audit.records(audit_filter):
            records.append(record)
            if len(records) == limit:
                break
    if as_json:
        for record in records:
            click.echo(record.text)
        return
    print_table(
        ("EVENT TIME", "EVENT", "PRINCIPAL", "SECRET", "ERROR", "REQUEST ID"),
        [
            (
                format_instant(record.event_time),
                record.event_name,
                record.principal_arn,
                record.secret or "-",
                record.error_code or "-",
                record.request_id,
            )
            for record in records
        ],
    )


@audit.command("export")
@click.option(
    "--out",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write AWSLogs/… into.",
)
@time_option("--since", "Records at or after this eventTime.")
@time_option("--until", "Records at or before this eventTime.")
@with_database
def audit_export(
    directory: Path, since: datetime | None, until: datetime | None, database: str
) -> None:
    """Write the audit records as CloudTrail log files under DIR/AWSLogs/<account>/
    CloudTrail/<region>/YYYY/MM/DD/, one series of files per hour of eventTime.

    \b
    The files are deterministic: the same log always gives the same files, byte for
    byte (gzip without a timestamp; the 16-character unique part of each name is the
    start of the SHA-256 of its uncompressed content; the time in the name is that of
    its newest record). Files already in DIR are left alone; CloudTrail consumers
    dedupe on eventID. Paths written are printed, one a line.

    \b
    Example:
      secretledger audit export --out ./trail --since 2025-03-01
    """
    with caught_up(database) as model:
        try:
            paths = model.audit.export(directory, since=since, until=until)
        except OSError as error:
            raise click.ClickException(f"cannot write to {directory}: {error}") from None
    for path in paths:
        click.echo(str(path))


@main.command("replay")
@click.option(
    "--projection",
    "names",
    multiple=True,
    type=click.Choice(PROJECTION_NAMES),
    help="Only this projection (repeatable). Default: all.",
)
@with_database
def replay(names: tuple[str, ...], database: str) -> None:
    """Drop projections and rebuild them from position zero of the log, with a
    progress bar on stderr. Safe to interrupt: the rebuild resumes at the next query.
    For a SQLite file or PostgreSQL, the SQL runs in a second process beside the
    decoding, so a rebuild uses two cores.

    \b
    Example:
      secretledger replay --projection audit
    """
    model = open_read_model(database)
    try:
        with click.progressbar(
            length=max(model.log.last_position(), 1),
            label=f"rebuilding {', '.join(names or PROJECTION_NAMES)}",
            file=sys.stderr,
        ) as bar:
            position = model.rebuild(list(names), progress=bar.update)
    except (WriterProcessError, ExpectationFailed) as error:
        msg = f"the rebuild stopped: {error} (run replay again, or any query, to resume)"
        raise click.ClickException(msg) from None
    finally:
        model.close()
    click.echo(f"rebuilt up to log position {position}", err=True)


@main.command("follow")
@click.option("--once", is_flag=True, help="Catch up with the log, then exit.")
@click.option(
    "--poll-interval-seconds",
    type=click.FloatRange(min=0.01, max=60),
    default=POLL_INTERVAL_SECONDS_DEFAULT,
    show_default=True,
    help="How often to look for new events (SQLite); PostgreSQL is woken by NOTIFY.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 10_000),
    hidden=True,
    help="Entries per page and per transaction (tests).",
)
@with_database
def follow(once: bool, poll_interval_seconds: float, page_size: int | None, database: str) -> None:
    """Keep the projections up to date with the log until interrupted (Ctrl-C): a
    projection process, possibly on another machine than the writers. `serve` runs
    the same runner in-process.
    """
    model = open_read_model(database, page_size)
    try:
        if once:
            position = model.catch_up()
            click.echo(f"caught up to log position {position}", err=True)
            return
        listen_url = database if database_kind(database) is DatabaseKind.POSTGRES else None
        background = BackgroundRunner(
            model.runner, listen_url=listen_url, poll_interval_seconds=poll_interval_seconds
        )
        model.runner.prepare()
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        background.start()
        try:
            while not stopping.wait(STATUS_INTERVAL_SECONDS):
                if background.last_error is not None:
                    click.echo(f"projection runner: {background.last_error}", err=True)
                    background.last_error = None
        except KeyboardInterrupt:
            pass
        finally:
            background.stop()
        click.echo(f"stopped at log position {background.position}", err=True)
    finally:
        model.close()
