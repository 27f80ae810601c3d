"""`secretledger keys`: the checkpoint signing key and the keyring's key-encryption keys.

=====================  ==================================================================
keys create-signing    create the signing-key file (refused if it exists)
keys rotate-signing    add a signing key and make it active (old ones stay, to check)
keys export-public     every public signing key, PEM, to stdout (for verify-proof)
keys list              signing keys (id, created, active) and KEK ids (which is active)
keys rotate-kek        add a KEK and re-wrap every data key under it (resumable)
=====================  ==================================================================

No command prints key bytes other than public keys. The signing-key file is
``<db>.signing-key`` beside a SQLite file (K1-K5); PostgreSQL and ``memory:`` need
``--signing-key``. Exit codes: 0 success, 1 error (a file missing, refused or
unreadable; the reason is printed), 2 usage.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import click

from ledger.checkpoints import format_time
from ledger.cli.common import (
    LedgerSettings,
    database_option,
    default_signing_key_path,
    json_option,
    ledger_options,
    main,
    open_secrets,
    signing_key_option,
)
from ledger.crypto import KeyringError
from ledger.signed_note import format_key_id
from ledger.signing_keys import SigningKeyError, SigningKeys, public_key_pem
from ledger.storage import DATA_KEYS_BATCH_SIZE_MAX

REWRAP_BATCH_SIZE_DEFAULT: Final = 500


@main.group("keys")
def keys() -> None:
    """Manage the checkpoint signing key and the keyring's key-encryption keys (KEKs).

    The signing key signs checkpoints; it lives in its own 0600 file, apart from the
    keyring, and only its public half leaves the machine (`keys export-public`).

    \b
    Example:
      secretledger keys create-signing --db ./secretledger.db
      secretledger keys export-public --db ./secretledger.db > ledger-public.pem
      secretledger keys rotate-kek --db ./secretledger.db
    """


def required_signing_key_path(database: str, given: Path | None) -> Path:
    path = default_signing_key_path(database, given)
    if path is None:
        raise click.UsageError("--signing-key FILE is required for PostgreSQL and memory:")
    return path


@contextmanager
def key_errors() -> Iterator[None]:
    """A key file missing, refused or unreadable: the reason, exit 1."""
    try:
        yield
    except (SigningKeyError, KeyringError) as error:
        raise click.ClickException(str(error)) from None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


@keys.command("create-signing")
@click.option(
    "--origin",
    help="The log's name in signed checkpoints (default: secret-ledger.local/<random>). "
    "Never changes afterwards.",
)
@database_option()
@signing_key_option()
@json_option()
def create_signing(
    origin: str | None, database: str, signing_key_path: Path | None, as_json: bool
) -> None:
    """Create the checkpoint signing-key file (0600) with one Ed25519 key. An
    existing file is never overwritten: that is an error (exit 1).

    \b
    Example:
      secretledger keys create-signing --db ./secretledger.db
    """
    path = required_signing_key_path(database, signing_key_path)
    with key_errors():
        signing_keys = SigningKeys.create(path, origin=origin)
    key_id = format_key_id(signing_keys.active_key_id)
    if as_json:
        echo_json({"path": str(path), "origin": signing_keys.origin, "key_id": key_id})
    else:
        click.echo(f"created signing key {key_id} of {signing_keys.origin} in {path}")


@keys.command("rotate-signing")
@database_option()
@signing_key_option()
@json_option()
def rotate_signing(database: str, signing_key_path: Path | None, as_json: bool) -> None:
    """Add a signing key and make it active. Older keys stay in the file, so their
    public keys still check the checkpoints they signed: export the public keys again.

    \b
    Example:
      secretledger keys rotate-signing --db ./secretledger.db
    """
    path = required_signing_key_path(database, signing_key_path)
    with key_errors():
        signing_keys = SigningKeys.open(path)
        key_id = format_key_id(signing_keys.rotate())
    if as_json:
        echo_json({"path": str(path), "origin": signing_keys.origin, "active_key_id": key_id})
    else:
        click.echo(f"signing key {key_id} of {signing_keys.origin} is now active")


@keys.command("export-public")
@database_option()
@signing_key_option()
@json_option()
def export_public(database: str, signing_key_path: Path | None, as_json: bool) -> None:
    """Print every public signing key, oldest first, as PEM (what `verify-proof
    --public-key` reads). --json: the origin and, per key, its id, creation time,
    whether it is active, its PEM and its C2SP verifier key.

    \b
    Example:
      secretledger keys export-public --db ./secretledger.db > ledger-public.pem
    """
    path = required_signing_key_path(database, signing_key_path)
    with key_errors():
        signing_keys = SigningKeys.open(path)
    if not as_json:
        click.echo(signing_keys.public_keys_pem(), nl=False)
        return
    echo_json(
        {
            "origin": signing_keys.origin,
            "keys": [
                {
                    **_signing_key_json(info.key_id, info.created, info.active),
                    "pem": public_key_pem(info.verifier),
                    "vkey": info.verifier.vkey(),
                }
                for info in signing_keys.list_keys()
            ],
        }
    )


def _signing_key_json(key_id: int, created: datetime.datetime, active: bool) -> dict[str, Any]:
    return {"key_id": format_key_id(key_id), "created": format_time(created), "active": active}


@keys.command("list")
@signing_key_option()
@ledger_options
def list_keys(settings: LedgerSettings, signing_key_path: Path | None, as_json: bool) -> None:
    """List the signing keys (id, creation time, which is active) and the keyring's
    key-encryption key ids (which is active). Never prints key bytes.

    \b
    Example:
      secretledger keys list --db ./secretledger.db --json
    """
    path = default_signing_key_path(settings.database, signing_key_path)
    signing: dict[str, Any] | None = None
    if path is not None and path.exists():
        with key_errors():
            signing_keys = SigningKeys.open(path)
        signing = {
            "path": str(path),
            "origin": signing_keys.origin,
            "keys": [
                _signing_key_json(info.key_id, info.created, info.active)
                for info in signing_keys.list_keys()
            ],
        }
    secrets = open_secrets(settings)
    try:
        keyring = secrets.keyring
        kek = {"active_key_id": keyring.active_key_id, "key_ids": sorted(keyring.key_ids)}
    finally:
        secrets.close()
    if as_json:
        echo_json({"signing_keys": signing, "key_encryption_keys": kek})
        return
    if signing is None:
        click.echo("signing keys: none (create them with `secretledger keys create-signing`)")
    else:
        click.echo(f"signing keys of {signing['origin']} ({signing['path']}):")
        for key in signing["keys"]:
            marker = "  active" if key["active"] else ""
            click.echo(f"  {key['key_id']}  created {key['created']}{marker}")
    click.echo("key-encryption keys:")
    for key_id in kek["key_ids"]:
        click.echo(f"  {key_id}{'  active' if key_id == kek['active_key_id'] else ''}")


@keys.command("rotate-kek")
@click.option(
    "--resume",
    is_flag=True,
    help="Add no KEK: re-wrap what is not under the active one yet (after a stopped run, "
    "or after servers that still wrapped under the old KEK were restarted).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, DATA_KEYS_BATCH_SIZE_MAX),
    default=REWRAP_BATCH_SIZE_DEFAULT,
    show_default=True,
    help="Data keys re-wrapped per transaction.",
)
@ledger_options
def rotate_kek(settings: LedgerSettings, resume: bool, batch_size: int, as_json: bool) -> None:
    """Add a key-encryption key to the keyring, make it active, and re-wrap every data
    key under it, a batch per transaction, with a progress bar on stderr. No event is
    written or changed: only wrapped data keys are. Old KEKs stay in the keyring.

    A key already under the active KEK is skipped, so a stopped run is finished with
    --resume. Servers keep wrapping new versions under the KEK they loaded until they
    restart: restart them, then run --resume once more.

    \b
    Example:
      secretledger keys rotate-kek --db ./secretledger.db
      secretledger keys rotate-kek --db ./secretledger.db --resume
    """
    secrets = open_secrets(settings)
    try:
        with key_errors():
            if not resume:
                secrets.keyring.rotate()
        active_key_id = secrets.keyring.active_key_id
        examined = rewrapped = 0
        with (
            key_errors(),
            click.progressbar(
                length=secrets.data_keys.data_key_count(),
                label="re-wrapping data keys",
                file=click.get_text_stream("stderr"),
            ) as bar,
        ):
            for batch in secrets.rewrap_data_keys(batch_size=batch_size):
                examined += batch.examined
                rewrapped += batch.rewrapped
                bar.update(batch.examined)
    finally:
        secrets.close()
    if as_json:
        echo_json(
            {
                "active_key_id": active_key_id,
                "added": not resume,
                "examined": examined,
                "rewrapped": rewrapped,
            }
        )
    else:
        added = "resumed under" if resume else "added"
        click.echo(f"{added} KEK {active_key_id}: re-wrapped {rewrapped} of {examined} data keys")
