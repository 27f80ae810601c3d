"""`secretledger checkpoint` and `secretledger verify`: signed checkpoints and their check.

Exit codes (besides 0 ok, 1 could not run, 2 usage): 3, the log or its checkpoints
are not intact (verify; or checkpoint, which then signs nothing); 4, the log is
intact but the live projection tables differ from a rebuild (verify --projections).
The rules cited (V1-V10, W1-W9) are in docs/evidence.md.
"""

from __future__ import annotations

import datetime
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click
from eventsourcing.persistence import PersistenceError

from ledger.checkpoints import CheckpointError, format_time, parse_checkpoint_line
from ledger.cli.common import (
    checkpoints_option,
    database_option,
    default_checkpoints_path,
    default_signing_key_path,
    json_option,
    main,
    print_json,
    public_key_option,
    signing_key_option,
)
from ledger.evidence import (
    AdoptionRefused,
    CheckedCheckpoints,
    CheckpointFile,
    CheckpointFileError,
    CheckpointKeys,
    CheckpointStore,
    NoVerifierKeys,
    Problem,
    Tampered,
    Verification,
    Written,
    read_checkpoint_file,
    verify_evidence,
    write_checkpoint,
)
from ledger.signed_note import Signer, Verifier
from ledger.signing_keys import SigningKeyError, SigningKeys, default_origin, load_verifiers_pem
from ledger.storage import DatabaseKind, database_kind
from projections.check import Difference, first_difference
from projections.log import LogReader
from projections.read_model import ReadModel

EXIT_NOT_INTACT: Final = 3
EXIT_PROJECTIONS_DIFFER: Final = 4
PROGRESS_LEAVES_MIN: Final = 20_000
SEED_SIZE_BYTES: Final = 32
# How long a server's shutdown waits for the checkpoint writer to stop, then for the
# last checkpoint: a database that stopped answering must not hold the shutdown.
CHECKPOINT_STOP_SECONDS_MAX: Final = 10.0


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# Opening the log without any key: the evidence never needs the keyring.


@contextmanager
def opened_log(database: str) -> Iterator[CheckpointStore]:
    """The ledger's recorder (events and evidence tables), closed afterwards."""
    kind = database_kind(database)
    if kind is DatabaseKind.SQLITE and not Path(database).exists():
        raise click.ClickException(f"no ledger at {database}")
    if kind is DatabaseKind.MEMORY:
        raise click.BadParameter(
            "an in-memory ledger lives only inside the process that writes it",
            param_hint="--db",
        )
    try:
        log = LogReader.for_database(database)
    except (OSError, PersistenceError) as error:
        raise click.ClickException(f"cannot open the ledger: {error}") from None
    try:
        recorder: CheckpointStore = log.recorder  # type: ignore[assignment]
        yield recorder
    finally:
        log.close()


# Keys


def checkpoint_keys(
    database: str, signing_key_path: Path | None, *, has_checkpoints: bool
) -> CheckpointKeys:
    """W9: the signing key file (``<db>.signing-key`` beside SQLite; required for
    PostgreSQL; in memory for ``memory:``), created only for a ledger without checkpoints."""
    path = default_signing_key_path(database, signing_key_path)
    if path is None:
        if database_kind(database) is DatabaseKind.MEMORY:
            signer = Signer(default_origin(), secrets.token_bytes(SEED_SIZE_BYTES))
            return CheckpointKeys(signer, (signer.verifier,))
        raise click.ClickException(
            "a PostgreSQL ledger needs --signing-key FILE (or SECRETLEDGER_SIGNING_KEY): the "
            "one checkpoint signing key file every server of this ledger shares"
        )
    try:
        if path.exists():
            keys = SigningKeys.open(path)
        elif has_checkpoints:
            raise click.ClickException(
                f"signing key file {path} does not exist, and this ledger has checkpoints "
                "already: refusing to create a new key, whose checkpoints the old public keys "
                "would not verify. Pass --signing-key with the key this ledger was signed with."
            )
        else:
            keys = SigningKeys.create(path)
    except SigningKeyError as error:
        raise click.ClickException(str(error)) from None
    return CheckpointKeys(keys.signer(), tuple(keys.verifiers()))


@dataclass(frozen=True)
class VerifierKeys:
    """The public keys verify checks signatures with, and where they came from."""

    verifiers: list[Verifier] | None
    source: str


def verifier_keys(
    database: str,
    public_key_path: Path | None,
    signing_key_path: Path | None,
    origin: str | None,
) -> VerifierKeys:
    """V8: --public-key if given (kept apart from the ledger), else the public keys of
    the signing key file; none when there is no checkpoint to check."""
    if origin is None:
        return VerifierKeys(None, "no checkpoint to check")
    try:
        if public_key_path is not None:
            pem = public_key_path.read_text(encoding="ascii", errors="replace")
            return VerifierKeys(
                load_verifiers_pem(pem, origin=origin), f"public keys from {public_key_path}"
            )
        path = default_signing_key_path(database, signing_key_path)
        if path is None:
            return VerifierKeys(None, "no public key given")
        verifiers = SigningKeys.open(path).verifiers()
    except (SigningKeyError, OSError) as error:
        raise click.ClickException(str(error)) from None
    return VerifierKeys(
        verifiers,
        f"public keys of the signing key file {path} (kept beside the ledger: pass "
        "--public-key with a copy kept elsewhere for evidence independent of this machine)",
    )


def first_origin(store: CheckpointStore, checkpoint_file: CheckpointFile | None) -> str | None:
    """The log's name, from its first readable checkpoint (database, then file)."""
    lines = [row.line for row in store.select_checkpoints()]
    if checkpoint_file is not None:
        lines.extend(checkpoint_file.lines)
    for line in lines:
        try:
            return parse_checkpoint_line(line).origin
        except CheckpointError:
            continue
    return None


# secretledger checkpoint


@main.command("checkpoint")
@database_option()
@signing_key_option()
@checkpoints_option()
@click.option(
    "--adopt-unchained",
    is_flag=True,
    help="Once, for a log written before the hash chain existed (its chain is empty): hash "
    "its events into the chain and sign a first checkpoint. Evidence for them starts at "
    "that checkpoint; a signed adoption statement precedes it in the checkpoint file.",
)
@json_option()
def checkpoint(
    database: str,
    signing_key_path: Path | None,
    checkpoints_path: Path | None,
    adopt_unchained: bool,
    as_json: bool,
) -> None:
    """Sign a checkpoint of the log now: store it and append it to the checkpoint file.

    Nothing is written when nothing was appended since the last checkpoint. Exit 3
    (and nothing signed) when the log or the checkpoints are not intact.

    \b
    Example:
      secretledger checkpoint --db ./secretledger.db
      scp ./secretledger.db.checkpoints audit-host:ledger/
    """
    path = default_checkpoints_path(database, checkpoints_path)
    with opened_log(database) as store:
        keys = checkpoint_keys(
            database,
            signing_key_path,
            has_checkpoints=store.select_latest_checkpoint() is not None,
        )
        try:
            written = write_checkpoint(
                store, keys, now=utc_now, checkpoint_path=path, adopt_unchained=adopt_unchained
            )
        except Tampered as tampered:
            report_problem(tampered.problem, as_json)
            sys.exit(EXIT_NOT_INTACT)
        except (AdoptionRefused, CheckpointFileError) as error:
            raise click.ClickException(str(error)) from None
    report_written(written, path, as_json)


def report_written(written: Written, path: Path | None, as_json: bool) -> None:
    checkpoint = written.checkpoint
    adopted = None if written.adoption is None else written.adoption.tree_size
    if as_json:
        document: dict[str, Any] = {"written": checkpoint is not None, "sequence": written.sequence}
        if checkpoint is None:
            document["reason"] = written.reason
        else:
            document.update(
                tree_size=checkpoint.tree_size,
                position=checkpoint.position,
                root=checkpoint.root.hex(),
                chain_head=checkpoint.chain_head.hex(),
                time=format_time(checkpoint.time),
                key_id=f"{checkpoint.key_id:08x}",
                checkpoints_file=None if path is None else str(path),
                adopted_unchained=adopted,
            )
        print_json(document)
        return
    if checkpoint is None:
        click.echo(f"no checkpoint written: {written.reason}")
        return
    if adopted is not None:
        click.echo(
            f"adopted {adopted} events written before the hash chain existed: evidence for "
            "them starts at this checkpoint (nothing shows what happened to them before it)"
        )
    click.echo(
        f"checkpoint {written.sequence}: {checkpoint.tree_size} events up to position "
        f"{checkpoint.position}, root {checkpoint.root.hex()}, signed by key "
        f"{checkpoint.key_id:08x} at {format_time(checkpoint.time)}"
    )
    if path is not None:
        click.echo(f"appended to {path}" + (" after the adoption statement" if adopted else ""))


def report_problem(problem: Problem, as_json: bool) -> None:
    if as_json:
        print_json(problem.to_json())
        return
    where = "" if problem.position is None else f" at position {problem.position}"
    click.echo(f"NOT INTACT: {problem.kind}{where}: {problem.detail}")


# secretledger verify


@main.command("verify")
@database_option()
@checkpoints_option()
@public_key_option()
@signing_key_option()
@click.option(
    "--projections",
    "check_projections",
    is_flag=True,
    help="Also rebuild the projections apart (in memory) and compare the live tables "
    "with them; exit 4 at the first row that differs.",
)
@json_option()
def verify(
    database: str,
    checkpoints_path: Path | None,
    public_key_path: Path | None,
    signing_key_path: Path | None,
    check_projections: bool,
    as_json: bool,
) -> None:
    """Check that the log was not edited: recompute the hash chain and the Merkle roots
    from the stored events, check every checkpoint (database and file) and compare them.

    Exit 0 intact; 3 not intact (the first bad position and what is wrong are printed:
    inserted, deleted, modified, reordered, chain-altered, unchained, forged, truncated,
    checkpoint-invalid, checkpoint-missing); 4 projections differ; 1 could not run.

    \b
    Example:
      secretledger verify --db ./secretledger.db --public-key ./ledger.pem \\
          --checkpoints /mnt/audit/secretledger.db.checkpoints --json
    """
    path = default_checkpoints_path(database, checkpoints_path)
    checkpoint_file = open_checkpoint_file(path, required=checkpoints_path is not None)
    with opened_log(database) as store:
        keys = verifier_keys(
            database, public_key_path, signing_key_path, first_origin(store, checkpoint_file)
        )
        verification = run_verification(store, keys, checkpoint_file)
    difference = None
    if verification.intact and check_projections:
        difference = projections_difference(database)
    checked = verification.intact and check_projections
    report_verification(verification, keys, checkpoint_file, as_json, checked, difference)
    if not verification.intact:
        sys.exit(EXIT_NOT_INTACT)
    if difference is not None:
        sys.exit(EXIT_PROJECTIONS_DIFFER)


def open_checkpoint_file(path: Path | None, *, required: bool) -> CheckpointFile | None:
    if path is None or (not required and not path.exists()):
        return None
    try:
        return read_checkpoint_file(path)
    except OSError as error:
        raise click.ClickException(f"cannot read checkpoint file {path}: {error}") from None


def run_verification(
    store: CheckpointStore, keys: VerifierKeys, checkpoint_file: CheckpointFile | None
) -> Verification:
    leaves = store.event_hash_count()
    try:
        with progress_bar(leaves, "verifying the log") as progress:
            return verify_evidence(store, keys.verifiers, checkpoint_file, progress=progress)
    except NoVerifierKeys as error:
        raise click.ClickException(
            f"{error}: pass --public-key FILE (or --signing-key FILE)"
        ) from None


@contextmanager
def progress_bar(length: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A bar on stderr for long runs; ``progress(done)`` takes the total done so far."""
    if length < PROGRESS_LEAVES_MIN:
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        shown = [0]

        def progress(done: int) -> None:
            bar.update(done - shown[0])
            shown[0] = done

        yield progress


def report_verification(
    verification: Verification,
    keys: VerifierKeys,
    checkpoint_file: CheckpointFile | None,
    as_json: bool,
    projections_checked: bool,
    difference: Difference | None,
) -> None:
    file_text = "no checkpoint file" if checkpoint_file is None else str(checkpoint_file.path)
    if as_json:
        document = verification.to_json()
        document["keys"] = keys.source
        document["checkpoints_file"] = None if checkpoint_file is None else file_text
        if projections_checked:
            document["projections"] = "identical" if difference is None else difference.to_json()
        print_json(document)
        return
    if verification.problem is not None:
        report_problem(verification.problem, as_json=False)
        click.echo(f"(checked with {keys.source})")
        return
    click.echo(
        f"intact: {verification.tree_size} events up to position {verification.position}, "
        f"root {verification.root.hex()}, chain head {verification.chain_head.hex()}"
    )
    click.echo(
        f"checkpoints: {verification.checkpoints_database} in the database, "
        f"{verification.checkpoints_file} in {file_text}; checked with {keys.source}"
    )
    if checkpoint_file is None:
        click.echo("without a checkpoint file kept elsewhere, a truncated tail cannot show")
    if verification.adoption is not None:
        click.echo(
            f"the first {verification.adoption.tree_size} events (up to position "
            f"{verification.adoption.position}) predate the hash chain and were adopted: "
            "evidence for them starts at checkpoint 0"
        )
    if projections_checked and difference is None:
        click.echo("projections: the live tables equal a rebuild from the log")
    if difference is not None:
        click.echo(
            f"PROJECTIONS DIFFER: table {difference.table}, key {difference.key}: live "
            f"{difference.live} vs rebuilt {difference.rebuilt} (at position "
            f"{difference.position})"
        )


def projections_difference(database: str) -> Difference | None:
    """The first row of the live projection tables that differs from a rebuild apart."""
    with ReadModel.open(database) as model:
        leaves = model.log.last_position()
        with progress_bar(leaves, "rebuilding the projections apart") as progress:
            return first_difference(model, progress=progress)


# The background writer of `serve`


class CheckpointScheduler:
    """W5: writes a checkpoint every ``every_events`` events or ``every_seconds``
    seconds (whichever first, and only if something is new), and one at ``stop``."""

    def __init__(
        self,
        store: CheckpointStore,
        keys: CheckpointKeys,
        checkpoint_path: Path | None,
        *,
        every_events: int,
        every_seconds: float,
    ) -> None:
        assert every_events > 0 and every_seconds > 0, "positive intervals"
        self.store = store
        self.keys = keys
        self.checkpoint_path = checkpoint_path
        self.every_events = every_events
        self.every_seconds = every_seconds
        latest = store.select_latest_checkpoint()
        self.last_size = 0 if latest is None else latest.tree_size
        self.last_attempt = time.monotonic()
        # What the last checkpoint found; the next reads only what is newer (W6).
        self.checked = CheckedCheckpoints()
        self.last_problem: Problem | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then write the last checkpoint, each within
        ``CHECKPOINT_STOP_SECONDS_MAX`` (a database that does not answer makes both
        wait for it, with retries, for minutes): past that, the last checkpoint is
        not written, and that is said."""
        bound_seconds = CHECKPOINT_STOP_SECONDS_MAX
        self._stopping.set()
        self._thread.join(bound_seconds)
        if self._thread.is_alive():
            say(
                f"last checkpoint not written: the checkpoint writer was still waiting for "
                f"the database after {bound_seconds:g} s"
            )
            return
        last = threading.Thread(target=self.attempt, name="last-checkpoint", daemon=True)
        last.start()
        last.join(bound_seconds)
        if last.is_alive():
            say(f"last checkpoint not written: the database did not answer in {bound_seconds:g} s")

    def _run(self) -> None:
        poll_seconds = min(1.0, self.every_seconds)
        while not self._stopping.wait(poll_seconds):
            try:
                size = self.store.event_hash_count()
            except (PersistenceError, OSError) as error:  # the next poll tries again
                say(f"checkpoint writer cannot read the log's size: {type(error).__name__}")
                continue
            due = time.monotonic() - self.last_attempt >= self.every_seconds
            if size - self.last_size >= self.every_events or (due and size > self.last_size):
                self.attempt()

    def attempt(self) -> None:
        self.last_attempt = time.monotonic()
        try:
            written = write_checkpoint(
                self.store,
                self.keys,
                now=utc_now,
                checkpoint_path=self.checkpoint_path,
                checked=self.checked,
            )
        except Tampered as tampered:
            if tampered.problem != self.last_problem:
                say(
                    f"NOT INTACT, no checkpoint signed: {tampered.problem.kind} at position "
                    f"{tampered.problem.position}: {tampered.problem.detail}"
                )
            self.last_problem = tampered.problem
            return
        except (CheckpointFileError, PersistenceError, OSError) as error:
            say(f"checkpoint not written: {error}")
            return
        self.last_problem = None
        if written.checkpoint is not None:
            say(f"checkpoint {written.sequence}: {written.checkpoint.tree_size} events")
        self.checked = written.checked
        newest = written.checked.last  # another server's, maybe
        self.last_size = 0 if newest is None else newest.tree_size


def say(message: str) -> None:
    click.echo(f"secret-ledger: {message}", err=True)
