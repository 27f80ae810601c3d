"""Shared fixtures: the storage backends every ledger test can run against.

``backend`` yields a ``--db`` value (``memory:``, a SQLite file path, or a
``postgresql://`` URL naming a fresh database) and is parametrised over all three.

PostgreSQL needs ``SECRETLEDGER_TEST_POSTGRES_URL``: a server URL whose user may
create databases, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``. Each test
gets its own database, created from ``template0`` and dropped afterwards. Without the
variable the PostgreSQL cases are skipped locally, and fail when ``CI`` is set, so
that CI can never pass by silently skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    import psycopg

POSTGRES_URL_VARIABLE: Final = "SECRETLEDGER_TEST_POSTGRES_URL"
POSTGRES_CONNECT_TIMEOUT_SECONDS: Final = 10
FALSE_WORDS: Final = frozenset({"", "0", "false", "no", "off"})


def is_running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in FALSE_WORDS


def skip_or_fail_without_postgres(reason: str) -> None:
    if is_running_in_ci():
        pytest.fail(f"{reason} (CI is set, so PostgreSQL tests must run, not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The URL of a PostgreSQL server that tests may create databases on."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if not url:
        skip_or_fail_without_postgres(f"{POSTGRES_URL_VARIABLE} is not set")
    return url


@pytest.fixture(scope="session")
def postgres_admin_connection(postgres_server_url: str) -> Iterator[psycopg.Connection[object]]:
    """One autocommit connection per session, for CREATE/DROP DATABASE."""
    try:
        import psycopg
    except ImportError:
        skip_or_fail_without_postgres("psycopg is not installed (pip install -e '.[postgres]')")
    with psycopg.connect(
        postgres_server_url, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS
    ) as connection:
        yield connection


@pytest.fixture
def postgres_database_url(
    postgres_server_url: str, postgres_admin_connection: psycopg.Connection[object]
) -> Iterator[str]:
    """A URL naming a brand-new, empty database, dropped (forcibly) after the test."""
    from psycopg import sql

    database_name = f"t_{uuid.uuid4().hex}"
    database = sql.Identifier(database_name)
    postgres_admin_connection.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(database)
    )
    try:
        yield urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{database_name}"))
    finally:
        postgres_admin_connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database)
        )


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``--db`` value for a fresh, empty store of each kind."""
    kind: str = request.param
    if kind == "memory":
        return "memory:"
    if kind == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    assert kind == "postgres", kind
    url: str = request.getfixturevalue("postgres_database_url")
    return url
