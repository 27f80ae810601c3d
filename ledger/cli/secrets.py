"""The AWS-like secret commands of `secretledger`, and `secretledger demo`.

Every command is one Secrets Manager call, made through
`SecretsManagerApi(Secrets(...)).call(...)`, so the ledger audits it like any other
call. The caller is the principal given with ``--principal`` (or
``$SECRETLEDGER_PRINCIPAL``, or ``principal`` in the configuration file), else the
account's root (CA-1); the operating-system user is recorded beside it as
``os_user``, never as the identity (CA-2). Whoever can open the database and the
keyring can do anything, so the CLI is an administrator (AZ-3): ``--principal``
names who acts, it grants nothing. Flags mirror the AWS CLI's
``aws secretsmanager`` commands:

========================  ===========================
secretledger              aws secretsmanager
========================  ===========================
create                    create-secret
put                       put-secret-value
get                       get-secret-value
describe                  describe-secret
versions                  list-secret-versions-ids
update-stage              update-secret-version-stage
delete                    delete-secret
restore                   restore-secret
list                      list-secrets
destroy-version           (none: secret-ledger's own)
========================  ===========================

``destroy-version`` crypto-shreds one version. It is not an AWS operation: it is
made as ``DestroySecretVersion`` through the same `SecretsManagerApi` (so it is
validated and audited like the others), which the HTTP endpoint does not serve.

Choices made here (documented for users in each ``--help``):

* Values: ``--secret-string S``, ``--secret-string-file F`` (UTF-8 text, ``-`` is
  stdin), ``--secret-binary B`` (base64, as AWS CLI v2 reads blobs) and
  ``--secret-binary-file F`` (raw bytes, ``-`` is stdin). The AWS CLI's
  ``file://PATH`` (for --secret-string) and ``fileb://PATH`` (for --secret-binary)
  work too, so copied AWS commands never store a path as the value. A file is read
  exactly, trailing newline included, as the AWS CLI does; at most 65,536 bytes,
  the largest value Secrets Manager accepts (a larger file is a usage error).
  A string source together with a binary source goes to the API, which refuses it
  as AWS does (InvalidParameterException); two sources of the same kind are a
  usage error.
* ``--version-stages`` takes several labels after one flag, space-separated, like
  the AWS CLI (``--version-stages AWSPENDING blue``); repeating the flag works too.
  A label that begins with ``-`` must be written ``--version-stages=-label``.
* ``--client-request-token`` defaults to a fresh UUID4, as the AWS CLI fills it in.
* ``--tags`` and ``--filters`` take the AWS JSON form only (no shorthand syntax).
* Human output by default. ``get`` prints only the value (binary as base64) and is
  the one command that reveals it. ``--json`` prints exactly the API response:
  timestamps as epoch seconds, binary as base64.
* ``--db memory:`` keeps nothing between commands; it is useful only for ``demo``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import os
import secrets as random_source
import shlex
import tempfile
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import click

from ledger import __version__
from ledger.api import Caller, SecretsManagerApi, account_principal_arn, local_caller
from ledger.application import DEFAULT_ACCOUNT_ID, DEFAULT_REGION
from ledger.auth import ARN_PATTERN
from ledger.cli.common import (
    Command,
    Decorator,
    LedgerSettings,
    aws_errors,
    keyring_option,
    ledger_options,
    main,
    opened_api,
    print_json,
    secret_id_option,
)
from ledger.errors import SecretsManagerError
from ledger.storage import SQLITE_COMPANION_SUFFIXES, DatabaseKind, database_kind

VALUE_SIZE_BYTES_MAX = 65_536
STDIN_PATH = "-"
STRING_FILE_PREFIX = "file://"
BINARY_FILE_PREFIX = "fileb://"
VERSION_STAGES_FLAG = "--version-stages"
USER_AGENT = f"secretledger-cli/{__version__}"
CONFIG_VARIABLE = "SECRETLEDGER_CONFIG"
CONFIG_KEYS = frozenset({"principal"})


def cli_caller(principal_arn: str) -> Caller:
    """The principal the CLI acts as, with the CLI's user agent; every call gets a new
    request id (an id names one audited call)."""
    return dataclasses.replace(local_caller(principal_arn), user_agent=USER_AGENT)


def config_path() -> Path:
    """CA-1: ``$SECRETLEDGER_CONFIG``, else ``$XDG_CONFIG_HOME/secretledger/config.toml``
    (``~/.config`` when XDG_CONFIG_HOME is unset)."""
    given = os.environ.get(CONFIG_VARIABLE)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "secretledger" / "config.toml"


def configured_principal(path: Path) -> str | None:
    """The ``principal`` of the configuration file, or None when there is no file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise click.UsageError(f"cannot read the configuration file {path}: {error}") from None
    unknown = sorted(set(document) - CONFIG_KEYS)
    if unknown:
        raise click.UsageError(f"{path}: unknown key(s) {unknown}; known: {sorted(CONFIG_KEYS)}")
    principal = document.get("principal")
    if principal is not None and not isinstance(principal, str):
        raise click.UsageError(f"{path}: principal must be a string (an IAM ARN)")
    return principal


def checked_principal(principal_arn: str, origin: str) -> str:
    if not ARN_PATTERN.fullmatch(principal_arn):
        raise click.UsageError(
            f"{origin}: {principal_arn!r} is not an IAM ARN with a 12-digit account id "
            "(arn:aws:iam::123456789012:user/alice)"
        )
    return principal_arn


def principal_option(command: Command) -> Command:
    """Adds --principal; the command receives ``caller: Caller`` (CA-1, CA-2)."""

    @functools.wraps(command)
    def with_caller(*, settings: LedgerSettings, principal_arn: str | None, **options: Any) -> None:
        if principal_arn is not None:
            principal = checked_principal(principal_arn, "--principal")
        else:
            path = config_path()
            configured = configured_principal(path)
            principal = (
                checked_principal(configured, str(path))
                if configured is not None
                else account_principal_arn(settings.account_id)
            )
        command(settings=settings, caller=cli_caller(principal), **options)

    option = click.option(
        "--principal",
        "principal_arn",
        metavar="ARN",
        envvar="SECRETLEDGER_PRINCIPAL",
        help="Who the call is recorded as (an IAM ARN). Default: 'principal' in the "
        "configuration file ($SECRETLEDGER_CONFIG, else ~/.config/secretledger/config.toml), "
        "else the account's root. Your operating-system user is recorded beside it. The "
        "CLI is an administrator: the principal grants nothing.",
    )
    return option(with_caller)


def call(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    operation: str,
    request: dict[str, Any],
) -> dict[str, Any]:
    """One audited call; an AWS error prints ``<Code>: <Message>`` and exits 1."""
    response: dict[str, Any] | None = None
    with aws_errors(as_json), opened_api(settings) as api:
        response = api.call(operation, without_none(request), caller)
    assert response is not None, "aws_errors exits on every error"
    return response


def without_none(request: dict[str, Any]) -> dict[str, Any]:
    return {member: value for member, value in request.items() if value is not None}


# Values: from the command line, a file, or stdin


def read_value_file(path: str, option_name: str) -> bytes:
    """The exact bytes of a file (``-``: stdin), refusing more than a value may hold."""
    try:
        if path == STDIN_PATH:
            content = click.get_binary_stream("stdin").read(VALUE_SIZE_BYTES_MAX + 1)
        else:
            with Path(path).open("rb") as file:
                content = file.read(VALUE_SIZE_BYTES_MAX + 1)
    except OSError as error:
        raise click.BadParameter(
            f"cannot read {path}: {error.strerror or type(error).__name__}", param_hint=option_name
        ) from None
    if len(content) > VALUE_SIZE_BYTES_MAX:
        raise click.BadParameter(
            f"{'stdin' if path == STDIN_PATH else path} holds more than {VALUE_SIZE_BYTES_MAX} "
            "bytes, the largest value Secrets Manager accepts",
            param_hint=option_name,
        )
    return content


def decode_text(content: bytes, option_name: str) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(
            "is not UTF-8 text; use --secret-binary-file for bytes", param_hint=option_name
        ) from None


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        raise click.BadParameter(
            "is not valid base64; use --secret-binary-file for raw bytes",
            param_hint="--secret-binary",
        ) from None


def only_one(first: tuple[str, str | None], second: tuple[str, str | None]) -> None:
    if first[1] is not None and second[1] is not None:
        raise click.UsageError(f"Give {first[0]} or {second[0]}, not both.")


def value_members(
    secret_string: str | None,
    secret_string_file: str | None,
    secret_binary: str | None,
    secret_binary_file: str | None,
) -> dict[str, Any]:
    """SecretString and/or SecretBinary for the request, from whichever option was given."""
    only_one(("--secret-string", secret_string), ("--secret-string-file", secret_string_file))
    only_one(("--secret-binary", secret_binary), ("--secret-binary-file", secret_binary_file))
    members: dict[str, Any] = {}
    if secret_string is not None and secret_string.startswith(STRING_FILE_PREFIX):
        path = secret_string.removeprefix(STRING_FILE_PREFIX)
        content = read_value_file(path, "--secret-string")
        members["SecretString"] = decode_text(content, "--secret-string")
    elif secret_string is not None:
        members["SecretString"] = secret_string
    elif secret_string_file is not None:
        content = read_value_file(secret_string_file, "--secret-string-file")
        members["SecretString"] = decode_text(content, "--secret-string-file")
    if secret_binary is not None and secret_binary.startswith(BINARY_FILE_PREFIX):
        path = secret_binary.removeprefix(BINARY_FILE_PREFIX)
        members["SecretBinary"] = read_value_file(path, "--secret-binary")
    elif secret_binary is not None:
        members["SecretBinary"] = decode_base64(secret_binary)
    elif secret_binary_file is not None:
        members["SecretBinary"] = read_value_file(secret_binary_file, "--secret-binary-file")
    return members


def value_options(command: Command) -> Command:
    options = [
        click.option(
            "--secret-string",
            metavar="TEXT",
            help="The value as text (visible in shell history: prefer --secret-string-file).",
        ),
        click.option(
            "--secret-string-file",
            metavar="PATH",
            help="Read the text value from a file, exactly; '-' reads stdin.",
        ),
        click.option(
            "--secret-binary", metavar="BASE64", help="The value as base64-encoded bytes."
        ),
        click.option(
            "--secret-binary-file",
            metavar="PATH",
            help="Read the binary value from a file, exactly; '-' reads stdin.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def token_option() -> Decorator:
    return click.option(
        "--client-request-token",
        metavar="TOKEN",
        default=None,
        help="Idempotency token, becomes the VersionId (32-64 characters). Default: a new UUID4.",
    )


def json_list(text: str | None, option_name: str) -> list[Any] | None:
    """A JSON array from the command line, for --tags and --filters."""
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(
            f"is not valid JSON ({error.msg})", param_hint=option_name
        ) from None
    if not isinstance(parsed, list):
        raise click.BadParameter("must be a JSON array", param_hint=option_name)
    return parsed


# --version-stages A B C, as the AWS CLI takes it


def expand_list_option(arguments: Sequence[str], flag: str) -> list[str]:
    """``FLAG a b c`` becomes ``FLAG a FLAG b FLAG c``: the words after the flag up to
    the next one that starts with ``-``. ``FLAG`` followed by no such word is a usage
    error (a label that starts with ``-`` is written ``FLAG=-label``)."""
    expanded: list[str] = []
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        index += 1
        if argument == "--":
            expanded.extend(arguments[index - 1 :])
            break
        if argument == flag:
            if index == len(arguments) or arguments[index].startswith("-"):
                raise click.UsageError(f"Option '{flag}' requires at least one label.")
        else:
            expanded.append(argument)
            if not argument.startswith(flag + "="):
                continue
        while index < len(arguments) and not arguments[index].startswith("-"):
            expanded.extend([flag, arguments[index]])
            index += 1
    return expanded


class VersionStagesCommand(click.Command):
    """A command whose --version-stages takes several space-separated labels."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            expanded = expand_list_option(args, VERSION_STAGES_FLAG)
        except click.UsageError as error:
            error.ctx = ctx
            raise
        return super().parse_args(ctx, expanded)


# Human output


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_labels(labels: Sequence[str]) -> str:
    return ", ".join(labels) if labels else "(none: deprecated)"


def echo_fields(fields: Sequence[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in fields) + 1
    for label, value in fields:
        click.echo(f"  {label + ':':<{width}} {value}")


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> None:
    widths = [
        max(len(header), *(len(row[column]) for row in rows))
        for column, header in enumerate(headers)
    ]
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo(indent + "  ".join(cells).rstrip())


def echo_next_token(response: dict[str, Any]) -> None:
    if "NextToken" in response:
        click.echo(f"More results: add --next-token {response['NextToken']}")


# Commands


@main.command("create", short_help="Create a secret (CreateSecret).")
@click.option("--name", required=True, help="Name of the new secret (1-512 characters).")
@value_options
@token_option()
@click.option("--description", help="Description (stored and logged in clear).")
@click.option("--kms-key-id", help="KMS key id: stored as metadata only (the keyring encrypts).")
@click.option("--tags", metavar="JSON", help='Tags: \'[{"Key": "team", "Value": "payments"}]\'.')
@ledger_options
@principal_option
def create_command(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    name: str,
    secret_string: str | None,
    secret_string_file: str | None,
    secret_binary: str | None,
    secret_binary_file: str | None,
    client_request_token: str | None,
    description: str | None,
    kms_key_id: str | None,
    tags: str | None,
) -> None:
    """Create a secret, with or without a first value (CreateSecret).

    The first value gets AWSCURRENT.

    \b
    Examples:
      printf %s "$API_KEY" | secretledger create --name prod/payments/api-key \\
          --secret-string-file -
      secretledger create --name prod/db --description "Orders database" \\
          --tags '[{"Key": "team", "Value": "payments"}]'
    """
    request = {
        "Name": name,
        "ClientRequestToken": client_request_token or str(uuid4()),
        **value_members(secret_string, secret_string_file, secret_binary, secret_binary_file),
        "Description": description,
        "KmsKeyId": kms_key_id,
        "Tags": json_list(tags, "--tags"),
    }
    response = call(settings, caller, as_json, "CreateSecret", request)
    if as_json:
        print_json(response)
        return
    click.echo(f"Created secret {response['Name']}")
    fields = [("ARN", response["ARN"])]
    if "VersionId" in response:
        fields.append(("VersionId", response["VersionId"]))
    echo_fields(fields)
    if "VersionId" not in response:
        click.echo(
            f"No value yet: secretledger put --secret-id {shlex.quote(name)} --secret-string-file -"
        )


@main.command("put", cls=VersionStagesCommand, short_help="Store a new version (PutSecretValue).")
@secret_id_option()
@value_options
@token_option()
@click.option(
    "--version-stages",
    multiple=True,
    metavar="LABEL...",
    help="Labels for the new version, space-separated as in the AWS CLI "
    "(--version-stages AWSPENDING blue). Default: AWSCURRENT.",
)
@ledger_options
@principal_option
def put_command(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    secret_id: str,
    secret_string: str | None,
    secret_string_file: str | None,
    secret_binary: str | None,
    secret_binary_file: str | None,
    client_request_token: str | None,
    version_stages: tuple[str, ...],
) -> None:
    """Store a new version of a secret's value (PutSecretValue).

    Without --version-stages the new version gets AWSCURRENT and the version that
    held it gets AWSPREVIOUS. Retrying with the same token and value changes
    nothing; the same token with another value is refused.

    \b
    Examples:
      printf %s "$NEW_KEY" | secretledger put --secret-id prod/payments/api-key \\
          --secret-string-file -
      secretledger put --secret-id prod/payments/api-key --secret-string-file key.txt \\
          --version-stages AWSPENDING blue
    """
    request = {
        "SecretId": secret_id,
        "ClientRequestToken": client_request_token or str(uuid4()),
        **value_members(secret_string, secret_string_file, secret_binary, secret_binary_file),
        "VersionStages": list(version_stages) if version_stages else None,
    }
    response = call(settings, caller, as_json, "PutSecretValue", request)
    if as_json:
        print_json(response)
        return
    click.echo(f"Stored version {response['VersionId']} of {response['Name']}")
    echo_fields(
        [
            ("ARN", response["ARN"]),
            ("VersionStages", format_labels(response.get("VersionStages", []))),
        ]
    )


@main.command("get", short_help="Print a value (GetSecretValue).")
@secret_id_option()
@click.option("--version-id", help="Read this version (even if deprecated).")
@click.option("--version-stage", help="Read the version holding this label. Default: AWSCURRENT.")
@ledger_options
@principal_option
def get_command(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    secret_id: str,
    version_id: str | None,
    version_stage: str | None,
) -> None:
    """Print a secret's value (GetSecretValue): the only command that reveals it.

    Prints the value alone, so it can be piped; a binary value is printed as base64.
    --json prints the whole response (VersionId, VersionStages, CreatedDate).

    \b
    Examples:
      secretledger get --secret-id prod/payments/api-key
      secretledger get --secret-id prod/payments/api-key --version-stage AWSPREVIOUS
      secretledger get --secret-id prod/certificate | base64 -d > certificate.der
    """
    request = {"SecretId": secret_id, "VersionId": version_id, "VersionStage": version_stage}
    response = call(settings, caller, as_json, "GetSecretValue", request)
    if as_json:
        print_json(response)
    elif "SecretString" in response:
        click.echo(response["SecretString"])
    else:
        click.echo(base64.b64encode(response["SecretBinary"]).decode("ascii"))


@main.command("describe", short_help="Show metadata and labels (DescribeSecret).")
@secret_id_option()
@ledger_options
@principal_option
def describe_command(
    settings: LedgerSettings, caller: Caller, as_json: bool, secret_id: str
) -> None:
    """Show a secret's metadata and which version holds which label (DescribeSecret).

    Never shows a value.

    \b
    Example:
      secretledger describe --secret-id prod/payments/api-key
    """
    response = call(settings, caller, as_json, "DescribeSecret", {"SecretId": secret_id})
    if as_json:
        print_json(response)
        return
    click.echo(response["Name"])
    fields = [("ARN", response["ARN"])]
    if "Description" in response:
        fields.append(("Description", response["Description"]))
    if "KmsKeyId" in response:
        fields.append(("KmsKeyId", response["KmsKeyId"]))
    fields.append(("Created", format_time(response["CreatedDate"])))
    fields.append(("Last changed", format_time(response["LastChangedDate"])))
    if "DeletedDate" in response:
        fields.append(("Deletion date", format_time(response["DeletedDate"])))
    if "Tags" in response:
        tags = ", ".join(f"{tag.get('Key')}={tag.get('Value')}" for tag in response["Tags"])
        fields.append(("Tags", tags))
    echo_fields(fields)
    stages: dict[str, list[str]] = response.get("VersionIdsToStages", {})
    if not stages:
        click.echo("  No labelled versions.")
        return
    click.echo("  Labels:")
    rows = [[version_id, ", ".join(labels)] for version_id, labels in stages.items()]
    echo_table(["VERSION ID", "LABELS"], rows, indent="    ")


@main.command("versions", short_help="List versions (ListSecretVersionIds).")
@secret_id_option()
@click.option("--include-deprecated", is_flag=True, help="Also list versions with no label.")
@click.option("--max-results", type=int, help="Page size (1-100).")
@click.option("--next-token", help="Continue a listing where the previous page stopped.")
@ledger_options
@principal_option
def versions_command(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    secret_id: str,
    include_deprecated: bool,
    max_results: int | None,
    next_token: str | None,
) -> None:
    """List a secret's versions, newest first (ListSecretVersionIds).

    \b
    Examples:
      secretledger versions --secret-id prod/payments/api-key
      secretledger versions --secret-id prod/payments/api-key --include-deprecated
    """
    request = {
        "SecretId": secret_id,
        "IncludeDeprecated": include_deprecated or None,
        "MaxResults": max_results,
        "NextToken": next_token,
    }
    response = call(settings, caller, as_json, "ListSecretVersionIds", request)
    if as_json:
        print_json(response)
        return
    versions: list[dict[str, Any]] = response["Versions"]
    if not versions:
        click.echo(f"No versions listed for {response['Name']}.")
    else:
        rows = [
            [
                version["VersionId"],
                format_time(version["CreatedDate"]),
                format_labels(version.get("VersionStages", [])),
            ]
            for version in versions
        ]
        echo_table(["VERSION ID", "CREATED", "LABELS"], rows)
    echo_next_token(response)


@main.command("update-stage", short_help="Move a label (UpdateSecretVersionStage).")
@secret_id_option()
@click.option("--version-stage", required=True, help="The label to attach, move or remove.")
@click.option("--move-to-version-id", help="Attach the label to this version.")
@click.option(
    "--remove-from-version-id", help="Take the label from this version (required if it holds it)."
)
@ledger_options
@principal_option
def update_stage_command(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    secret_id: str,
    version_stage: str,
    move_to_version_id: str | None,
    remove_from_version_id: str | None,
) -> None:
    """Attach, move or remove a staging label (UpdateSecretVersionStage).

    Moving AWSCURRENT also moves AWSPREVIOUS to the version AWSCURRENT left.

    \b
    Examples:
      secretledger update-stage --secret-id prod/payments/api-key --version-stage AWSCURRENT \\
          --move-to-version-id NEW_VERSION_ID --remove-from-version-id OLD_VERSION_ID
      secretledger update-stage --secret-id prod/payments/api-key --version-stage blue \\
          --move-to-version-id NEW_VERSION_ID
    """
    request = {
        "SecretId": secret_id,
        "VersionStage": version_stage,
        "MoveToVersionId": move_to_version_id,
        "RemoveFromVersionId": remove_from_version_id,
    }
    response = call(settings, caller, as_json, "UpdateSecretVersionStage", request)
    if as_json:
        print_json(response)
        return
    name = response["Name"]
    if move_to_version_id and remove_from_version_id:
        click.echo(
            f"Moved {version_stage} of {name} from version {remove_from_version_id} "
            f"to version {move_to_version_id}"
        )
    elif move_to_version_id:
        click.echo(f"Attached {version_stage} of {name} to version {move_to_version_id}")
    else:
        click.echo(f"Removed {version_stage} of {name} from version {remove_from_version_id}")


@main.command("delete", short_help="Delete a secret (DeleteSecret).")
@secret_id_option()
@click.option(
    "--recovery-window-in-days", type=int, help="Days before deletion (7-30). Default: 30."
)
@click.option(
    "--force-delete-without-recovery",
    is_flag=True,
    help="Delete now, with no recovery window.",
)
@ledger_options
@principal_option
def delete_command(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    secret_id: str,
    recovery_window_in_days: int | None,
    force_delete_without_recovery: bool,
) -> None:
    """Schedule a secret for deletion, or delete it now (DeleteSecret).

    The ledger keeps its history either way; a scheduled secret can be restored
    until its deletion date.

    \b
    Examples:
      secretledger delete --secret-id prod/payments/api-key --recovery-window-in-days 7
      secretledger delete --secret-id scratch/test --force-delete-without-recovery
    """
    request = {
        "SecretId": secret_id,
        "RecoveryWindowInDays": recovery_window_in_days,
        "ForceDeleteWithoutRecovery": force_delete_without_recovery or None,
    }
    response = call(settings, caller, as_json, "DeleteSecret", request)
    if as_json:
        print_json(response)
    elif force_delete_without_recovery:
        click.echo(f"Deleted {response['Name']} now, without recovery")
    else:
        click.echo(
            f"Scheduled {response['Name']} for deletion on {format_time(response['DeletionDate'])}"
        )
        click.echo(f"Until then: secretledger restore --secret-id {shlex.quote(response['Name'])}")


@main.command("restore", short_help="Cancel a deletion (RestoreSecret).")
@secret_id_option()
@ledger_options
@principal_option
def restore_command(
    settings: LedgerSettings, caller: Caller, as_json: bool, secret_id: str
) -> None:
    """Cancel a secret's scheduled deletion (RestoreSecret).

    \b
    Example:
      secretledger restore --secret-id prod/payments/api-key
    """
    response = call(settings, caller, as_json, "RestoreSecret", {"SecretId": secret_id})
    if as_json:
        print_json(response)
    else:
        click.echo(f"Restored {response['Name']}: it is no longer scheduled for deletion")


@main.command("destroy-version", short_help="Shred one version's value for good.")
@secret_id_option()
@click.option("--version-id", required=True, help="The version to destroy.")
@ledger_options
@principal_option
def destroy_version_command(
    settings: LedgerSettings, caller: Caller, as_json: bool, secret_id: str, version_id: str
) -> None:
    """Destroy one version's value for good (crypto-shredding; not an AWS operation).

    Appends a VersionDestroyed event and deletes the version's wrapped data key in
    the same transaction; other labels leave the version first. The version disappears
    from every answer, its value can never be decrypted again, and its id can never be
    reused as a ClientRequestToken. History keeps that it existed and who destroyed it.
    The version holding AWSCURRENT is refused: move AWSCURRENT first (update-stage).
    Destroying a version that is already gone changes nothing.

    \b
    Example:
      secretledger destroy-version --secret-id prod/payments/api-key \\
          --version-id OLD_VERSION_ID
    """
    request = {"SecretId": secret_id, "VersionId": version_id}
    response = call(settings, caller, as_json, "DestroySecretVersion", request)
    if as_json:
        print_json(response)
    else:
        click.echo(f"Destroyed version {response['VersionId']} of {response['Name']}")


@main.command("list", short_help="List secrets (ListSecrets).")
@click.option(
    "--include-planned-deletion", is_flag=True, help="Also list secrets scheduled for deletion."
)
@click.option(
    "--filters",
    metavar="JSON",
    help='Filters: \'[{"Key": "name", "Values": ["prod/"]}]\' (keys: name, description, '
    "tag-key, tag-value, all; prefix match; '!' negates).",
)
@click.option("--max-results", type=int, help="Page size (1-100).")
@click.option("--next-token", help="Continue a listing where the previous page stopped.")
@click.option("--sort-order", type=click.Choice(["asc", "desc"]), help="By creation date.")
@ledger_options
@principal_option
def list_command(
    settings: LedgerSettings,
    caller: Caller,
    as_json: bool,
    include_planned_deletion: bool,
    filters: str | None,
    max_results: int | None,
    next_token: str | None,
    sort_order: str | None,
) -> None:
    """List secrets, newest first (ListSecrets). Never shows a value.

    \b
    Examples:
      secretledger list
      secretledger list --filters '[{"Key": "name", "Values": ["prod/"]}]'
    """
    request = {
        "IncludePlannedDeletion": include_planned_deletion or None,
        "Filters": json_list(filters, "--filters"),
        "MaxResults": max_results,
        "NextToken": next_token,
        "SortOrder": sort_order,
    }
    response = call(settings, caller, as_json, "ListSecrets", request)
    if as_json:
        print_json(response)
        return
    secrets: list[dict[str, Any]] = response["SecretList"]
    if not secrets:
        click.echo("No secrets.")
    else:
        rows = [
            [
                entry["Name"],
                format_time(entry["LastChangedDate"]),
                str(len(entry.get("SecretVersionsToStages", {}))),
                format_time(entry["DeletedDate"]) if "DeletedDate" in entry else "-",
            ]
            for entry in secrets
        ]
        echo_table(["NAME", "LAST CHANGED", "LABELLED VERSIONS", "DELETION DATE"], rows)
    echo_next_token(response)


# The demo


DEMO_SECRET_NAME = "demo/payments/api-key"
DEMO_COMMAND_PREFIX = "  $ secretledger "


class RotationDemo:
    """A rotation story told step by step against a fresh ledger.

    Versions are called v1, v2, ... in the output; each value is random and never
    printed. Each step shows the equivalent CLI command and the label map after it
    (from DescribeSecret; a deprecated version shows as ``v1[]``)."""

    def __init__(self, api: SecretsManagerApi, account_id: str) -> None:
        self.api = api
        self.account_id = account_id
        self.version_ids: list[str] = []
        self.values: list[str] = []

    def alias(self, version_id: str) -> str:
        return f"v{self.version_ids.index(version_id) + 1}"

    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        return self.api.call(operation, request, cli_caller(account_principal_arn(self.account_id)))

    def new_value(self) -> str:
        value = f"sk_demo_{random_source.token_hex(16)}"
        self.values.append(value)
        return value

    def new_version_id(self) -> str:
        version_id = str(uuid4())
        self.version_ids.append(version_id)
        return version_id

    def step(self, title: str, command: str) -> None:
        click.echo("")
        click.echo(title)
        click.echo(DEMO_COMMAND_PREFIX + command)

    def label_map(self) -> str:
        stages = self.call("DescribeSecret", {"SecretId": DEMO_SECRET_NAME}).get(
            "VersionIdsToStages", {}
        )
        return "  ".join(
            f"{self.alias(version_id)}[{', '.join(stages.get(version_id, []))}]"
            for version_id in self.version_ids
        )

    def show_labels(self) -> None:
        click.echo(f"  labels: {self.label_map()}")

    def put(self, version_id: str, value: str, stages: list[str] | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {
            "SecretId": DEMO_SECRET_NAME,
            "ClientRequestToken": version_id,
            "SecretString": value,
        }
        if stages is not None:
            request["VersionStages"] = stages
        return self.call("PutSecretValue", request)

    def move(self, label: str, to_version_id: str, from_version_id: str | None) -> None:
        request = {
            "SecretId": DEMO_SECRET_NAME,
            "VersionStage": label,
            "MoveToVersionId": to_version_id,
        }
        if from_version_id is not None:
            request["RemoveFromVersionId"] = from_version_id
        self.call("UpdateSecretVersionStage", request)

    def run(self) -> None:
        secret = f"--secret-id {DEMO_SECRET_NAME}"
        v1 = self.new_version_id()
        self.step(
            "1. Create the secret with its first value (read from stdin, never from the "
            "command line)",
            f"create --name {DEMO_SECRET_NAME} --secret-string-file - --client-request-token {v1}",
        )
        self.call(
            "CreateSecret",
            {"Name": DEMO_SECRET_NAME, "ClientRequestToken": v1, "SecretString": self.new_value()},
        )
        click.echo(f"  v1 = {v1}")
        self.show_labels()

        v2 = self.new_version_id()
        self.step(
            "2. Put a second value: AWSCURRENT moves to it, AWSPREVIOUS follows to v1",
            f"put {secret} --secret-string-file - --client-request-token {v2}",
        )
        self.put(v2, self.new_value())
        click.echo(f"  v2 = {v2}")
        self.show_labels()

        self.step(
            "3. Attach a custom label: blue marks the version the blue fleet uses",
            f"update-stage {secret} --version-stage blue --move-to-version-id {v2}",
        )
        self.move("blue", v2, None)
        self.show_labels()

        v3 = self.new_version_id()
        self.step(
            "4. Rotation, phase 1: stage a candidate as AWSPENDING; readers still get v2",
            f"put {secret} --secret-string-file - --client-request-token {v3} "
            "--version-stages AWSPENDING",
        )
        self.put(v3, self.new_value(), ["AWSPENDING"])
        click.echo(f"  v3 = {v3}")
        self.show_labels()
        self.show_current()

        self.step(
            "5. Rotation, phase 2: promote v3; AWSPREVIOUS follows to v2, v1 is now deprecated",
            f"update-stage {secret} --version-stage AWSCURRENT "
            f"--move-to-version-id {v3} --remove-from-version-id {v2}",
        )
        self.move("AWSCURRENT", v3, v2)
        self.show_labels()

        self.step(
            "6. Rollback: the new key is rejected downstream; move AWSCURRENT back to v2",
            f"update-stage {secret} --version-stage AWSCURRENT "
            f"--move-to-version-id {v2} --remove-from-version-id {v3}",
        )
        self.move("AWSCURRENT", v2, v3)
        self.show_labels()
        self.show_current()

        self.retry_and_mistake(secret, v2)
        self.show_versions(secret)

    def show_current(self) -> None:
        response = self.call("GetSecretValue", {"SecretId": DEMO_SECRET_NAME})
        click.echo(f"  get returns {self.alias(response['VersionId'])} (value not printed here)")

    def version_count(self) -> int:
        response = self.call(
            "ListSecretVersionIds", {"SecretId": DEMO_SECRET_NAME, "IncludeDeprecated": True}
        )
        return len(response["Versions"])

    def retry_and_mistake(self, secret: str, v2: str) -> None:
        self.step(
            "7. Idempotent retry: step 2 is sent again (same token, same value)",
            f"put {secret} --secret-string-file - --client-request-token {v2}",
        )
        response = self.put(v2, self.values[1])
        click.echo(
            f"  answer: VersionId {self.alias(response['VersionId'])}, the same version; "
            f"still {self.version_count()} versions, no label moved (only the call is audited)"
        )
        self.show_labels()

        self.step(
            "8. A mistake refused: the same token with a different value",
            f"put {secret} --secret-string-file - --client-request-token {v2}",
        )
        try:
            self.put(v2, self.new_value())
        except SecretsManagerError as error:
            click.echo(f"  refused: {error.code}: {error.message}")
        else:
            raise AssertionError("a reused token with another value must be refused")
        click.echo(
            f"  no version written, no label moved: still {self.version_count()} versions "
            "(the refused call is audited)"
        )
        self.show_labels()

    def show_versions(self, secret: str) -> None:
        self.step(
            "9. Every version, including the deprecated one, newest first",
            f"versions {secret} --include-deprecated",
        )
        response = self.call(
            "ListSecretVersionIds", {"SecretId": DEMO_SECRET_NAME, "IncludeDeprecated": True}
        )
        rows = [
            [
                self.alias(version["VersionId"]),
                version["VersionId"],
                format_labels(version.get("VersionStages", [])),
            ]
            for version in response["Versions"]
        ]
        echo_table(["", "VERSION ID", "LABELS"], rows, indent="  ")


def value_hits_in_files(database: str, values: Sequence[str]) -> int | None:
    """Occurrences of the values in the SQLite files (database, WAL, shared memory,
    journal); None when the ledger is not a SQLite file."""
    if database_kind(database) is not DatabaseKind.SQLITE:
        return None
    contents = [
        path.read_bytes()
        for suffix in ("", *SQLITE_COMPANION_SUFFIXES)
        if (path := Path(database + suffix)).is_file()
    ]
    return sum(content.count(value.encode("utf-8")) for content in contents for value in values)


@main.command("demo", short_help="Tell a rotation story on a fresh ledger.")
@click.option(
    "--db",
    "database",
    default=None,
    help="A fresh ledger to tell the story in. Default: a new temporary SQLite file.",
)
@keyring_option()
def demo_command(database: str | None, keyring_path: Path | None) -> None:
    """Tell a rotation story on a fresh ledger, step by step.

    Creates demo/payments/api-key, puts a second value, attaches a custom label,
    rotates through AWSPENDING, rolls back, retries a put idempotently and shows a
    conflicting retry refused, printing the label map after each step. Values are
    random and never printed. Refuses a --db that already holds events.

    \b
    Examples:
      secretledger demo
      secretledger demo --db /tmp/demo.db
    """
    if database is None:
        database = str(Path(tempfile.mkdtemp(prefix="secretledger-demo-")) / "demo.db")
    settings = LedgerSettings(database, keyring_path, DEFAULT_REGION, DEFAULT_ACCOUNT_ID)
    with opened_api(settings) as api:
        if api.secrets.log_has_events():
            raise click.BadParameter(
                "already holds events; the demo needs a fresh ledger (omit --db for a "
                "temporary one)",
                param_hint="--db",
            )
        click.echo(f"secret-ledger demo: a rotation story in {database}")
        click.echo("Versions are named v1, v2, ... below; values are random and never printed.")
        story = RotationDemo(api, DEFAULT_ACCOUNT_ID)
        with aws_errors(as_json=False):
            story.run()
    echo_encryption_check(database, story.values)
    echo_pointers(database, keyring_path)


def echo_encryption_check(database: str, values: Sequence[str]) -> None:
    click.echo("")
    click.echo("10. Values are stored encrypted")
    hits = value_hits_in_files(database, values)
    if hits is None:
        click.echo("  (not a SQLite file: the raw-bytes check applies to SQLite only)")
    else:
        click.echo(f"  searched the raw database files for the {len(values)} values: {hits} hits")


def echo_pointers(database: str, keyring_path: Path | None) -> None:
    if database_kind(database) is DatabaseKind.MEMORY:
        return
    database_argument = shlex.quote(database)
    if keyring_path is not None:
        database_argument += f" --keyring {shlex.quote(str(keyring_path))}"
    click.echo("")
    click.echo("Explore:")
    click.echo(f"  secretledger describe --secret-id {DEMO_SECRET_NAME} --db {database_argument}")
    for command_name in ("labels", "history"):
        if command_name in main.commands:  # the read side, when it is registered
            click.echo(
                f"  secretledger {command_name} --secret-id {DEMO_SECRET_NAME} "
                f"--db {database_argument}"
            )
