"""The `secretledger` command group and what every command shares.

Exit codes: 0 success, 1 an AWS-shaped error from the ledger (printed as
``<Code>: <Message>``, or as ``{"__type", "Message"}`` with --json), 2 a usage
error (click's own).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click

from ledger.errors import SecretsManagerError

EXIT_AWS_ERROR = 1
DATABASE_DEFAULT = "./secretledger.db"


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


def database_option() -> Any:
    return click.option(
        "--db",
        "database",
        default=DATABASE_DEFAULT,
        show_default=True,
        envvar="SECRETLEDGER_DB",
        help="SQLite file path, postgresql:// URL, or memory: (nothing kept).",
    )


def json_option() -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def to_jsonable(value: Any) -> Any:
    """AWS wire conventions: timestamps as epoch seconds, bytes as base64."""
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


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
