"""PostgreSQL passwords stay off command lines (rules PG-1 to PG-3)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ledger.cli import main
from ledger.cli.common import database_option
from ledger.storage import (
    PASSWORD_FROM_ENVIRONMENT_TOPIC,
    environment_for_database,
    postgres_password_from_environment,
)

URL = "postgresql://ledger@db.internal:5433/secrets"
PASSWORD = "p@ss:w/rd"


@click.command()
@database_option()
def show(database: str) -> None:
    click.echo(database)


def test_a_url_without_password_lets_each_connection_find_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PG-1: $PGPASSWORD at each connection, else '' so that libpq reads ~/.pgpass."""
    environment = environment_for_database(URL)
    assert environment["POSTGRES_PASSWORD"] == ""
    assert environment["POSTGRES_GET_PASSWORD_TOPIC"] == PASSWORD_FROM_ENVIRONMENT_TOPIC
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert postgres_password_from_environment() == ""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    assert postgres_password_from_environment() == PASSWORD
    with_password = environment_for_database("postgresql://ledger:pw@db.internal/secrets")
    assert with_password["POSTGRES_PASSWORD"] == "pw"
    assert "POSTGRES_GET_PASSWORD_TOPIC" not in with_password


def test_a_password_on_the_command_line_is_refused_without_being_repeated() -> None:
    """PG-3, for every command that opens a ledger."""
    for arguments in (["list"], ["audit", "query"], ["keys", "list"]):
        result = CliRunner().invoke(main, [*arguments, "--db", "postgresql://u:hunter2@h/db"])
        assert result.exit_code == 2, (arguments, result.output)
        assert "holds a password" in result.output
        assert "hunter2" not in result.output


def test_a_password_in_the_environment_variable_is_accepted() -> None:
    """SECRETLEDGER_DB is no command-line argument: only its owner can read it."""
    result = CliRunner().invoke(show, [], env={"SECRETLEDGER_DB": "postgresql://u:pw@h/db"})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "postgresql://u:pw@h/db"


def test_the_password_file_goes_into_the_url_in_memory(tmp_path: Path) -> None:
    """PG-2: a 0600 file, its trailing newline dropped, the password URL-quoted."""
    path = tmp_path / "db-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    result = CliRunner().invoke(show, ["--db", URL, "--db-password-file", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "postgresql://ledger:p%40ss%3Aw%2Frd@db.internal:5433/secrets"
    assert environment_for_database(result.output.strip())["POSTGRES_PASSWORD"] == PASSWORD


@pytest.mark.parametrize(
    ("mode", "content", "database", "expected"),
    [
        (0o644, "pw\n", URL, "chmod 600"),
        (0o600, "\n", URL, "holds no password"),
        (0o600, "pw\n", "ledger.db", "applies to a postgresql:// URL without a password"),
    ],
)
def test_a_bad_password_file_is_a_usage_error(
    tmp_path: Path, mode: int, content: str, database: str, expected: str
) -> None:
    path = tmp_path / "db-password"
    path.write_text(content)
    path.chmod(mode)
    result = CliRunner().invoke(show, ["--db", database, "--db-password-file", str(path)])
    assert result.exit_code == 2
    assert expected in result.output
