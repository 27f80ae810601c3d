"""`secretledger prove` and `secretledger verify-proof`: proofs of the log, checked offline.

========================================  ===============================================
prove --secret-id S --version-id V        inclusion proof of the version's first event
prove --position P                        inclusion proof of any stored event
prove --consistency --from-size A         consistency proof between two checkpoints
verify-proof FILE --public-key KEYS       check a proof offline (no database)
========================================  ===============================================

The proof format is ``secret-ledger-proof/v1`` (docs/evidence.md, PF1-PF9). A version
is found without scanning the log: the label projection records the position of every
version's ``VersionCreated`` (``LabelQueries.version_creation``, one index seek), after
being brought up to date as every query command does. Proofs are made against the
latest signed checkpoint; an event it does not cover yet needs
``secretledger checkpoint`` first.

Exit codes: ``prove`` 0 proof printed, 1 no proof possible (no such secret, version or
position, not yet checkpointed, damaged evidence), 2 usage. ``verify-proof`` 0 valid,
3 invalid (the reason is printed), 1 unusable public-key file, 2 usage.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final
from uuid import UUID

import click
from eventsourcing.persistence import ApplicationRecorder

from ledger.checkpoints import Checkpoint, format_time
from ledger.cli.common import (
    EXIT_AWS_ERROR,
    database_option,
    json_option,
    main,
    public_key_option,
    secret_id_option,
)
from ledger.cli.projections import caught_up, not_found_errors, open_read_model
from ledger.domain import Secret
from ledger.proofs import (
    PROOF_SIZE_BYTES_MAX,
    InvalidProof,
    Proof,
    ProofStore,
    ProofUnavailable,
    VerifiedConsistency,
    VerifiedInclusion,
    parse_proof,
    prove_consistency,
    prove_inclusion,
    verify_proof,
)
from ledger.signed_note import format_key_id
from ledger.signing_keys import SigningKeyError
from ledger.storage import EvidenceStore

EXIT_INVALID_PROOF: Final = 3
PUBLIC_KEY_FILE_SIZE_BYTES_MAX: Final = 1_048_576


@contextmanager
def proof_errors(as_json: bool) -> Iterator[None]:
    """No proof can be made: the reason, exit 1 (``{"__type", "Message"}`` with --json)."""
    try:
        yield
    except ProofUnavailable as error:
        if as_json:
            click.echo(json.dumps({"__type": "ProofUnavailable", "Message": str(error)}), err=True)
        else:
            click.echo(f"ProofUnavailable: {error}", err=True)
        sys.exit(EXIT_AWS_ERROR)


def proof_store(recorder: ApplicationRecorder) -> ProofStore:
    assert isinstance(recorder, EvidenceStore), "the ledger's recorder keeps the evidence"
    return recorder


@main.command("prove")
@secret_id_option(
    required=False, help_text="Name, ARN or partial ARN of the secret (with --version-id)."
)
@click.option(
    "--version-id",
    help="The version whose creation to prove: its VersionCreated (PendingVersionStaged for "
    "a version a rotation staged, RO-3).",
)
@click.option("--position", type=click.IntRange(min=0), help="Prove the event at this position.")
@click.option("--consistency", is_flag=True, help="Prove that the log only grew (see below).")
@click.option(
    "--from-size",
    type=click.IntRange(min=0),
    help="With --consistency: the tree size of the earlier checkpoint.",
)
@click.option(
    "--to-size",
    type=click.IntRange(min=0),
    help="With --consistency: the tree size of the later checkpoint (default: the latest).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the proof to this file instead of stdout.",
)
@database_option()
@json_option()
def prove(
    secret_id: str | None,
    version_id: str | None,
    position: int | None,
    consistency: bool,
    from_size: int | None,
    to_size: int | None,
    out: Path | None,
    database: str,
    as_json: bool,
) -> None:
    """Print a proof (JSON, format secret-ledger-proof/v1) that an event is in the log,
    or that the log only grew, against signed checkpoints.

    \b
    --secret-id S --version-id V   the VersionCreated event of that version
    --position P                   the event stored at position P (notification id)
    --consistency --from-size A [--to-size B]
                                   from the checkpoint of A events to the one of B
                                   (default: the latest checkpoint)

    Inclusion proofs are made against the latest checkpoint; an event it does not
    cover yet needs `secretledger checkpoint` first. The proof holds the event as
    stored (its ciphertext, never a value). Check it anywhere with
    `secretledger verify-proof`. --json prints errors as JSON. Exit codes: 0 proof
    printed, 1 no proof possible (the reason is printed), 2 usage error.

    \b
    Example:
      secretledger prove --secret-id prod/payments/api-key --version-id $V --out v.proof
      secretledger prove --consistency --from-size 1000 --out grew.proof
    """
    by_version = secret_id is not None or version_id is not None
    modes = [by_version, position is not None, consistency]
    if sum(modes) != 1:
        raise click.UsageError(
            "give --secret-id with --version-id, or --position, or --consistency"
        )
    if by_version and (secret_id is None or version_id is None):
        raise click.UsageError("--secret-id and --version-id go together")
    if consistency and from_size is None:
        raise click.UsageError("--consistency needs --from-size")
    if not consistency and (from_size is not None or to_size is not None):
        raise click.UsageError("--from-size and --to-size go with --consistency")
    started = time.perf_counter()
    with proof_errors(as_json), not_found_errors(as_json):
        if secret_id is not None and version_id is not None:
            proof: Proof = _prove_version(database, secret_id, version_id)
        else:
            proof = _prove_from_log(database, position, from_size, to_size)
    elapsed_milliseconds = (time.perf_counter() - started) * 1000
    text = json.dumps(proof.to_json(), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} in {elapsed_milliseconds:.1f} ms", err=True)


VERSION_CREATION_TOPICS = frozenset(
    {Secret.VersionCreated.TOPIC, Secret.PendingVersionStaged.TOPIC}
)
"""The events a version begins with: with its value, or staged by a rotation (RO-3)."""


def _prove_version(database: str, secret_id: str, version_id: str) -> Proof:
    with caught_up(database) as model:
        creation = model.labels.version_creation(secret_id, version_id)
        proof = prove_inclusion(proof_store(model.log.recorder), creation.position)
    event = proof.event
    if event.topic not in VERSION_CREATION_TOPICS or event.originator_id != UUID(
        creation.secret_id
    ):
        raise ProofUnavailable(
            f"the label projection places version {version_id} at position "
            f"{creation.position}, which holds another event: run `secretledger replay`"
        )
    return proof


def _prove_from_log(
    database: str, position: int | None, from_size: int | None, to_size: int | None
) -> Proof:
    model = open_read_model(database)
    try:
        store = proof_store(model.log.recorder)
        if position is not None:
            return prove_inclusion(store, position)
        assert from_size is not None, "checked with the options"
        return prove_consistency(store, from_size, to_size)
    finally:
        model.close()


@main.command("verify-proof")
@click.argument("proof_file", type=click.File("rb"))
@public_key_option()
@click.option("--origin", help="Also require the checkpoints to be of this log (origin).")
@json_option()
def verify_proof_command(
    proof_file: IO[bytes], public_key_path: Path | None, origin: str | None, as_json: bool
) -> None:
    """Check a proof from `secretledger prove` offline, with no database: the
    checkpoints' signatures with the public keys of --public-key (PEM, from
    `secretledger keys export-public`), then the proof against their signed roots.
    The event's leaf is recomputed from its stored fields (PROOF_FILE "-": stdin).

    Prints what was proved: the event's position, topic and originator (and the
    version id its state names), and each checkpoint's origin, size, time and key.

    \b
    Exit codes: 0 valid, 3 invalid (the reason is printed), 1 unusable public key
    file, 2 usage error. --json prints {"valid": true, ...} or
    {"valid": false, "reason": "..."}.

    \b
    Example:
      secretledger verify-proof v.proof --public-key ledger-public.pem
    """
    if public_key_path is None:
        raise click.UsageError("--public-key is required: the log's public keys (PEM)")
    public_keys_pem = _read_public_keys(public_key_path)
    try:
        verified = verify_proof(
            parse_proof(proof_file.read(PROOF_SIZE_BYTES_MAX + 1)), public_keys_pem, origin=origin
        )
    except InvalidProof as error:
        _report_invalid(str(error), as_json)
        sys.exit(EXIT_INVALID_PROOF)
    except SigningKeyError as error:
        raise click.ClickException(f"cannot use {public_key_path}: {error}") from None
    summary = _summary(verified)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


def _read_public_keys(path: Path) -> str:
    try:
        with path.open("rb") as file:
            content = file.read(PUBLIC_KEY_FILE_SIZE_BYTES_MAX + 1)
    except OSError as error:
        raise click.ClickException(f"cannot read {path}: {error.strerror}") from None
    if len(content) > PUBLIC_KEY_FILE_SIZE_BYTES_MAX:
        raise click.ClickException(f"{path} is larger than a public key file may be")
    try:
        return content.decode("ascii")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not a PEM text file") from None


def _report_invalid(reason: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"valid": False, "reason": reason}, indent=2))
    else:
        click.echo(f"invalid proof: {reason}")


def _checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "origin": checkpoint.origin,
        "tree_size": checkpoint.tree_size,
        "position": checkpoint.position,
        "time": format_time(checkpoint.time),
        "key_id": format_key_id(checkpoint.key_id),
    }


def _summary(verified: VerifiedInclusion | VerifiedConsistency) -> dict[str, Any]:
    if isinstance(verified, VerifiedConsistency):
        return {
            "valid": True,
            "type": "consistency",
            "first_checkpoint": _checkpoint_summary(verified.first),
            "second_checkpoint": _checkpoint_summary(verified.second),
        }
    event = verified.event
    return {
        "valid": True,
        "type": "inclusion",
        "position": event.position,
        "leaf_index": verified.leaf_index,
        "topic": event.topic,
        "originator_id": str(event.originator_id),
        "originator_version": event.originator_version,
        "version_id": event.version_id(),
        "checkpoint": _checkpoint_summary(verified.checkpoint),
    }


def _describe_checkpoint(checkpoint: dict[str, Any]) -> str:
    return (
        f"{checkpoint['tree_size']} events up to position {checkpoint['position']}, "
        f"signed {checkpoint['time']} by key {checkpoint['key_id']} of {checkpoint['origin']}"
    )


def _print_summary(summary: dict[str, Any]) -> None:
    if summary["type"] == "consistency":
        click.echo("valid consistency proof: the log only grew")
        click.echo(f"  from  {_describe_checkpoint(summary['first_checkpoint'])}")
        click.echo(f"  to    {_describe_checkpoint(summary['second_checkpoint'])}")
        return
    click.echo("valid inclusion proof")
    click.echo(f"  event       position {summary['position']} (leaf {summary['leaf_index']})")
    click.echo(f"  topic       {summary['topic']}")
    click.echo(f"  originator  {summary['originator_id']} version {summary['originator_version']}")
    if summary["version_id"] is not None:
        click.echo(f"  version id  {summary['version_id']}")
    click.echo(f"  checkpoint  {_describe_checkpoint(summary['checkpoint'])}")
