"""`secretledger forensics`: who did what (the read side), and which versions share a
value (the write side, with the keyring). Rules F-1 to F-12: docs/forensics.md.

========================================  =============================================
forensics --secret-id S                   the timeline of a secret
forensics --principal ARN                 everything one identity did, across secrets
forensics value-reuse                     live versions that share a value
========================================  =============================================
"""

from __future__ import annotations

import sys
from datetime import datetime

import click
from click.core import ParameterSource

from ledger.cli.common import (
    LedgerSettings,
    aws_errors,
    ledger_options,
    main,
    open_secrets,
    print_json,
    secret_id_option,
)
from ledger.cli.projections import (
    caught_up,
    echo_json,
    not_found_errors,
    print_table,
    time_option,
    with_database,
    with_json,
)
from ledger.value_reuse import ValueReuse, find_value_reuse
from projections import TimelineFilter, TimelineRow, format_instant

TIMELINE_HEADER = (
    "POSITION",
    "TIME",
    "EVENT",
    "OPERATION",
    "SECRET",
    "VERSION",
    "DETAIL",
    "PRINCIPAL",
    "ACCESS KEY",
    "SOURCE IP",
    "USER AGENT",
    "REQUEST ID",
)


@main.group("forensics", invoke_without_command=True)
@secret_id_option(
    required=False,
    help_text="The secret: a full ARN, or a name or partial ARN (every secret that had it).",
)
@click.option(
    "--principal",
    "principal_arn",
    metavar="ARN",
    help="Everything this principal did, across secrets ('' for calls refused before "
    "authentication).",
)
@click.option("--version-id", help="Only the rows about this version.")
@time_option("--since", "Only rows at or after this time.")
@time_option("--until", "Only rows at or before this time.")
@with_database
@with_json
@click.pass_context
def forensics(
    ctx: click.Context,
    secret_id: str | None,
    principal_arn: str | None,
    version_id: str | None,
    since: datetime | None,
    until: datetime | None,
    database: str,
    as_json: bool,
) -> None:
    """One timeline, in log order, of everything that happened to a secret
    (--secret-id) or that one identity did (--principal): who created each version,
    every label move and why, every read and the version it served, every failed or
    refused call, deletions and restores; each row with its log position, time,
    principal, access key, source IP, user agent and request id. No keyring needed.

    \b
    --json prints a list of objects: {"Position", "Time", "Event", "Operation",
    "Secret", "VersionId", "Label", "FromVersionId", "ToVersionId", "Reason",
    "ErrorCode", "ErrorMessage", "Principal", "AccessKeyId", "SourceIp",
    "UserAgent", "RequestId"} (docs/forensics.md). Exit codes: 0, 1 (no secret ever
    had that name or ARN), 2 (usage).

    \b
    Examples:
      secretledger forensics --secret-id payments/api-key --since 2025-03-19
      secretledger forensics --principal arn:aws:iam::123456789012:user/ci --json
      secretledger forensics value-reuse --db team.db
    """
    if ctx.invoked_subcommand is not None:
        given = [
            param.opts[0]
            for param in ctx.command.params
            if param.name is not None
            and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
        ]
        if given:
            subcommand = ctx.invoked_subcommand
            msg = f"{', '.join(given)}: timeline options, not {subcommand}'s (give those after it)"
            raise click.UsageError(msg)
        return
    if (secret_id is None) == (principal_arn is None):
        raise click.UsageError("give --secret-id or --principal (one of them)")
    timeline_filter = TimelineFilter(
        secret=secret_id,
        principal_arn=principal_arn,
        version_id=version_id,
        since=since,
        until=until,
    )
    with caught_up(database) as model, not_found_errors(as_json):
        rows = model.forensics.timeline(timeline_filter)
    if as_json:
        echo_json([row.to_json() for row in rows])
    elif rows:
        print_table(TIMELINE_HEADER, [table_cells(row) for row in rows])
    else:
        click.echo("nothing happened")


def table_cells(row: TimelineRow) -> tuple[str, ...]:
    return (
        str(row.position),
        format_instant(row.event_time),
        row.event,
        row.operation or "-",
        row.secret or "-",
        row.version_id or "-",
        detail(row),
        row.principal_arn or "-",
        row.access_key_id or "-",
        row.source_ip,
        row.user_agent,
        row.request_id,
    )


def detail(row: TimelineRow) -> str:
    """A label move (``AWSCURRENT: from -> to (reason)``), a reason, or an error code."""
    if row.label is not None:
        moved = f"{row.from_version_id or '-'} -> {row.to_version_id or '-'}"
        return f"{row.label}: {moved} ({row.reason})"
    return row.reason or row.error_code or "-"


@forensics.command("value-reuse")
@ledger_options
def value_reuse(settings: LedgerSettings, as_json: bool) -> None:
    """The live versions that share a value, within one secret or across secrets:
    every live version is decrypted in memory and compared by a keyed digest drawn
    for this run only. Prints secret names, ARNs and version ids, never a value or a
    digest; stores nothing and appends nothing to the log. Versions whose data key
    was destroyed cannot be compared and are counted. A progress bar on stderr.

    \b
    --json prints {"SharedValues": [{"Scope": "within-secret" | "across-secrets",
    "Versions": [{"ARN", "Name", "VersionId"}, ...]}, ...], "SecretsScanned",
    "VersionsCompared", "DestroyedVersionsSkipped"}. Exit codes: 0 (whether or not
    values are shared), 1 (a version does not decrypt with this keyring, or the
    ledger cannot be opened), 2 (usage).

    \b
    Example:
      secretledger forensics value-reuse --db team.db --keyring team.db.keyring
    """
    secrets = open_secrets(settings)
    try:
        with aws_errors(as_json):
            secret_ids = list(secrets.secret_ids())
            with click.progressbar(
                secret_ids, label="comparing values", file=sys.stderr
            ) as progress:
                outcome = find_value_reuse(secrets, progress)
    finally:
        secrets.close()
    if as_json:
        print_json(outcome.to_json())
    else:
        print_value_reuse(outcome)


def print_value_reuse(outcome: ValueReuse) -> None:
    for number, shared in enumerate(outcome.shared, start=1):
        scope = "across secrets" if shared.across_secrets else "within one secret"
        click.echo(f"shared value {number} ({scope}):")
        for version in shared.versions:
            click.echo(f"  {version.arn}  {version.version_id}")
    click.echo(
        f"{len(outcome.shared)} shared values; {outcome.versions_compared} versions of "
        f"{outcome.secrets_scanned} secrets compared; "
        f"{outcome.destroyed_versions_skipped} destroyed versions skipped"
    )
