"""The `secretledger` command group and what every command shares.

Exit codes: 0 success, 1 an AWS-shaped error from the ledger (printed as
``<Code>: <Message>``, or as ``{"__type", "Message"}`` with --json), 2 a usage
error (click's own).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import click
from click.core import ParameterSource
from eventsourcing.persistence import PersistenceError

from ledger.api import SecretsManagerApi, to_wire
from ledger.application import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Secrets, utc_now
from ledger.crypto import KeyringError
from ledger.errors import SecretsManagerError
from ledger.private_files import read_private_file
from ledger.storage import DatabaseKind, database_kind

EXIT_AWS_ERROR = 1
DATABASE_DEFAULT = "./secretledger.db"
PASSWORD_FILE_SIZE_BYTES_MAX = 4096
PASSWORD_META_KEY = "secretledger.database_password"
DATABASE_SOURCE_META_KEY = "secretledger.database_source"

Command = Callable[..., None]
Decorator = Callable[[Command], Command]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="secret-ledger")
def main() -> None:
    """secret-ledger: an append-only, encrypted ledger of secret versions that behaves like
    AWS Secrets Manager, with label history and CloudTrail-style audit.

    \b
    Example:
      secretledger demo
      secretledger --help
    """


def database_option() -> Decorator:
    """--db, and --db-password-file for a PostgreSQL URL without its password (PG-1 to
    PG-3): the command receives ``database``, with the file's password put into the
    URL in memory, never on any command line."""
    database = click.option(
        "--db",
        "database",
        cls=DatabaseOption,
        default=DATABASE_DEFAULT,
        show_default=True,
        envvar="SECRETLEDGER_DB",
        callback=database_with_password,
        help="SQLite file path, postgresql:// URL, or memory: (nothing kept). A PostgreSQL "
        "URL names no password: it comes from $PGPASSWORD, ~/.pgpass or --db-password-file.",
    )
    password_file = click.option(
        "--db-password-file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="SECRETLEDGER_DB_PASSWORD_FILE",
        is_eager=True,
        expose_value=False,
        callback=remember_password_file,
        help="A file (mode 0600) holding the PostgreSQL password, for a --db URL without one.",
    )

    def decorator(command: Command) -> Command:
        return password_file(database(command))

    return decorator


class DatabaseOption(click.Option):
    """--db, remembering where its value came from for `database_with_password` (click
    tells a parameter's source only after its callback has run)."""

    def consume_value(
        self, ctx: click.Context, opts: Mapping[str, Any]
    ) -> tuple[Any, ParameterSource]:
        value, source = super().consume_value(ctx, opts)
        ctx.meta[DATABASE_SOURCE_META_KEY] = source
        return value, source


def remember_password_file(
    context: click.Context, parameter: click.Parameter, path: Path | None
) -> None:
    """PG-2: read before --db (eager), kept in the click context for its callback."""
    if path is None:
        return
    content = read_private_file(
        path,
        label="password file",
        size_bytes_max=PASSWORD_FILE_SIZE_BYTES_MAX,
        error=BadPasswordFile,
    )
    try:
        password = content.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", param=parameter) from None
    if not password:
        raise click.BadParameter(f"{path} holds no password", param=parameter)
    context.meta[PASSWORD_META_KEY] = password


class BadPasswordFile(click.BadParameter):
    def __init__(self, message: str) -> None:
        super().__init__(message, param_hint="--db-password-file")


def database_with_password(context: click.Context, parameter: click.Parameter, value: str) -> str:
    """PG-3: a password written into --db on the command line is refused (every user of
    the machine can read a process's arguments); PG-2: the password file's password
    goes into the URL, in memory only."""
    password: str | None = context.meta.get(PASSWORD_META_KEY)
    postgres = database_kind(value) is DatabaseKind.POSTGRES
    has_password = postgres and urlsplit(value).password is not None
    if has_password and context.meta[DATABASE_SOURCE_META_KEY] is ParameterSource.COMMANDLINE:
        raise click.BadParameter(
            "the URL holds a password, which every user of this machine can read in the "
            "process's arguments: remove it, and give it with $PGPASSWORD, ~/.pgpass or "
            "--db-password-file",
            param=parameter,
        )
    if password is None:
        return value
    if not postgres or has_password:
        raise click.BadParameter(
            "--db-password-file applies to a postgresql:// URL without a password",
            param=parameter,
        )
    parts = urlsplit(value)
    credentials = f"{parts.username}:{quote(password, safe='')}@"
    return urlunsplit(parts._replace(netloc=credentials + parts.netloc.rpartition("@")[2]))


SECRET_ID_HELP = "Name, ARN or partial ARN of the secret."


def secret_id_option(*, required: bool = True, help_text: str = SECRET_ID_HELP) -> Decorator:
    """--secret-id: the one way every command names a secret (a name, a full ARN or a
    partial ARN, as the AWS CLI takes it); the command receives ``secret_id``."""
    return click.option("--secret-id", "secret_id", required=required, help=help_text)


def json_option() -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_wire(value), indent=2, ensure_ascii=False))


@contextmanager
def aws_errors(as_json: bool) -> Iterator[None]:
    """Print an AWS-shaped error and exit 1, never a traceback."""
    try:
        yield
    except SecretsManagerError as error:
        if as_json:
            click.echo(json.dumps({"__type": error.code, "Message": error.message}), err=True)
        else:
            click.echo(f"{error.code}: {error.message}", err=True)
        sys.exit(EXIT_AWS_ERROR)


# Opening the ledger: the options every write-side command shares, declared once.


@dataclasses.dataclass(frozen=True)
class LedgerSettings:
    """Where the ledger lives and which account and region its ARNs name."""

    database: str
    keyring_path: Path | None
    region: str
    account_id: str


def keyring_option() -> Decorator:
    return click.option(
        "--keyring",
        "keyring_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="SECRETLEDGER_KEYRING",
        help="Keyring file. Default: <db>.keyring beside a SQLite file, in memory for "
        "memory:; required for PostgreSQL (one file shared by every server). A keyring is "
        "created only for a ledger that holds no events yet.",
    )


def region_option() -> Decorator:
    return click.option(
        "--region",
        default=DEFAULT_REGION,
        show_default=True,
        envvar="SECRETLEDGER_REGION",
        help="Region named in ARNs and audit records.",
    )


def account_id_option() -> Decorator:
    return click.option(
        "--account-id",
        default=DEFAULT_ACCOUNT_ID,
        show_default=True,
        envvar="SECRETLEDGER_ACCOUNT_ID",
        help="12-digit account named in ARNs and in the caller's IAM user ARN.",
    )


def ledger_options(command: Command) -> Command:
    """Adds --db, --keyring, --region, --account-id and --json; the command receives
    ``settings: LedgerSettings`` and ``as_json: bool``."""

    @functools.wraps(command)
    def with_settings(
        *,
        database: str,
        keyring_path: Path | None,
        region: str,
        account_id: str,
        **options: Any,
    ) -> None:
        settings = LedgerSettings(database, keyring_path, region, account_id)
        command(settings=settings, **options)

    options = [
        database_option(),
        keyring_option(),
        region_option(),
        account_id_option(),
        json_option(),
    ]
    decorated: Command = with_settings
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def open_secrets(settings: LedgerSettings, clock: Callable[[], datetime] = utc_now) -> Secrets:
    """The write side of the ledger at ``settings.database`` (``clock``: its time).

    A malformed --db is a usage error (exit 2); a ledger that cannot be opened
    (unreadable file, missing or wrong keyring, unreachable server) exits 1."""
    try:
        return Secrets(
            settings.database,
            keyring_path=settings.keyring_path,
            region=settings.region,
            account_id=settings.account_id,
            clock=clock,
        )
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--db") from None
    except (KeyringError, OSError, PersistenceError) as error:
        raise click.ClickException(f"cannot open the ledger: {error}") from None


@contextmanager
def opened_api(settings: LedgerSettings) -> Iterator[SecretsManagerApi]:
    """The API over the ledger at ``settings.database``, closed afterwards."""
    secrets = open_secrets(settings)
    try:
        yield SecretsManagerApi(secrets)
    finally:
        secrets.close()


# The evidence files: where checkpoints are shipped and which key signs them.

CHECKPOINTS_SUFFIX = ".checkpoints"
SIGNING_KEY_SUFFIX = ".signing-key"


def checkpoints_option() -> Decorator:
    return click.option(
        "--checkpoints",
        "checkpoints_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="SECRETLEDGER_CHECKPOINTS",
        help="Checkpoint file: one signed JSON line per checkpoint, meant to be shipped off "
        "the machine. Default: <db>.checkpoints beside a SQLite file; none for PostgreSQL "
        "unless given.",
    )


def signing_key_option() -> Decorator:
    return click.option(
        "--signing-key",
        "signing_key_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="SECRETLEDGER_SIGNING_KEY",
        help="Ed25519 checkpoint signing key file (0600, apart from the keyring). Default: "
        "<db>.signing-key beside a SQLite file; required for PostgreSQL.",
    )


def public_key_option() -> Decorator:
    return click.option(
        "--public-key",
        "public_key_path",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="PEM file of the checkpoint signers' public keys (from `secretledger keys "
        "export-public`), kept apart from the ledger.",
    )


def default_checkpoints_path(database: str, given: Path | None) -> Path | None:
    """The checkpoint file: as given, else ``<db>.checkpoints`` for SQLite, else none."""
    if given is not None:
        return given
    if database_kind(database) is DatabaseKind.SQLITE:
        return Path(database + CHECKPOINTS_SUFFIX)
    return None


def default_signing_key_path(database: str, given: Path | None) -> Path | None:
    """The signing key file: as given, else ``<db>.signing-key`` for SQLite; None for
    ``memory:`` (a key in memory) and for PostgreSQL (which must name one)."""
    if given is not None:
        return given
    if database_kind(database) is DatabaseKind.SQLITE:
        return Path(database + SIGNING_KEY_SUFFIX)
    return None
