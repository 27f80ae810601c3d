"""Inclusion and consistency proofs (docs/evidence.md PF1-PF9): made from the store,
checked offline with the public keys only, and refused when anything was changed.

Until the checkpoint writer lands, ``write_checkpoint`` stands in for it: it walks the
hash rows, stores every perfect subtree they complete (M5) and signs the head.
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner, Result
from ledger_helpers import Harness, open_harness, token

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.checkpoints import (
    Checkpoint,
    parse_checkpoint_line,
    parse_checkpoint_note,
    sign_checkpoint,
    to_line,
)
from ledger.cli import main
from ledger.domain import Secret
from ledger.merkle import GENESIS_CHAIN_HASH, CompactRange
from ledger.proofs import (
    PROOF_FORMAT,
    ConsistencyProof,
    InclusionProof,
    InvalidProof,
    ProofUnavailable,
    VerifiedConsistency,
    VerifiedInclusion,
    parse_proof,
    prove_consistency,
    prove_inclusion,
    verify_proof,
)
from ledger.signed_note import Signer
from ledger.signing_keys import SigningKeys, public_key_pem
from ledger.storage import EventHash, EvidenceStore
from projections.log import LogReader

ORIGIN: Final = "secret-ledger.test/proofs"
SIGNER: Final = Signer(ORIGIN, bytes(range(32)))
OTHER_SIGNER: Final = Signer(ORIGIN, bytes(32))
PUBLIC_PEM: Final = public_key_pem(SIGNER.verifier)
SIGNED_AT: Final = datetime.datetime(2025, 3, 19, 9, 0, tzinfo=datetime.UTC)
HASH_PAGE_SIZE: Final = 1000
EXIT_INVALID_PROOF: Final = 3


def all_hash_rows(store: EvidenceStore) -> list[EventHash]:
    rows: list[EventHash] = []
    while page := store.select_event_hashes(len(rows), HASH_PAGE_SIZE):
        rows.extend(page)
    return rows


def write_checkpoint(store: EvidenceStore, signer: Signer = SIGNER) -> Checkpoint:
    """Sign the log's current head and store it with its perfect subtrees."""
    stored = store.select_checkpoints()
    previous = parse_checkpoint_line(stored[-1].line) if stored else None
    rows = all_hash_rows(store)
    tree = CompactRange()
    nodes = [node for row in rows for node in tree.append(row.leaf_hash)]
    store.insert_merkle_nodes([(node.level, node.node_index, node.hash) for node in nodes])
    checkpoint = sign_checkpoint(
        signer,
        tree_size=tree.size,
        root=tree.root(),
        position=rows[-1].notification_id if rows else 0,
        chain_head=rows[-1].chain_hash if rows else GENESIS_CHAIN_HASH,
        time=SIGNED_AT + datetime.timedelta(seconds=len(stored)),
        previous=previous,
    )
    store.insert_checkpoint(len(stored), checkpoint.tree_size, to_line(checkpoint))
    return checkpoint


def evidence(harness: Harness) -> Any:
    recorder = harness.secrets.recorder
    assert isinstance(recorder, EvidenceStore)
    return recorder


def round_trip(proof: InclusionProof | ConsistencyProof) -> InclusionProof | ConsistencyProof:
    """What a verifier elsewhere reads: the proof as JSON text, parsed back."""
    return parse_proof(json.dumps(proof.to_json()))


def add_events(harness: Harness, secret_count: int, puts: int, offset: int) -> None:
    for number in range(secret_count):
        name = f"team/secret-{offset + number}"
        harness.create(name, token(offset * 1000 + number * 100 + 99), f"initial {number}")
        for put in range(puts):
            harness.put(name, token(offset * 1000 + number * 100 + put), f"value {put}")


@pytest.fixture
def harness(backend: str) -> Iterator[Harness]:
    with open_harness(backend) as opened:
        yield opened


def test_random_inclusion_and_consistency_proofs_verify_offline(harness: Harness) -> None:
    store = evidence(harness)
    chooser = random.Random(8)
    checkpoints: list[Checkpoint] = []
    for round_number in range(5):
        add_events(harness, chooser.randint(1, 3), chooser.randint(0, 4), round_number * 10)
        checkpoints.append(write_checkpoint(store))
        rows = all_hash_rows(store)
        assert checkpoints[-1].tree_size == len(rows)
        for row in [*chooser.sample(rows, min(len(rows), 8)), rows[0], rows[-1]]:
            proof = round_trip(prove_inclusion(store, row.notification_id))
            verified = verify_proof(proof, PUBLIC_PEM, origin=ORIGIN)
            assert isinstance(verified, VerifiedInclusion)
            assert verified.event.position == row.notification_id
            assert verified.leaf_index == row.leaf_index
            assert verified.checkpoint == checkpoints[-1]
    for _ in range(12):
        first, second = sorted(chooser.sample(checkpoints, 2), key=lambda c: c.tree_size)
        consistency = round_trip(prove_consistency(store, first.tree_size, second.tree_size))
        verified_growth = verify_proof(consistency, PUBLIC_PEM)
        assert verified_growth == VerifiedConsistency(first, second)
    to_latest = prove_consistency(store, checkpoints[0].tree_size)
    assert to_latest.second_checkpoint_line == to_line(checkpoints[-1])


def test_a_version_proof_names_its_version_and_holds_no_plaintext(harness: Harness) -> None:
    created = harness.create("app/db", token(1), "canary-plaintext-7f3a")
    write_checkpoint(evidence(harness))
    rows = all_hash_rows(evidence(harness))
    proofs = [prove_inclusion(evidence(harness), row.notification_id) for row in rows]
    version_proofs = [p for p in proofs if p.event.topic == Secret.VersionCreated.TOPIC]
    assert [p.event.version_id() for p in version_proofs] == [created["VersionId"]]
    for proof in proofs:
        assert "canary-plaintext-7f3a" not in json.dumps(proof.to_json())
        assert b"canary-plaintext-7f3a" not in proof.event.state


# --------------------------------------------------------------------------------------
# Altered proofs
# --------------------------------------------------------------------------------------


def flip_base64(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode("ascii")


def forged_line(line: str, signer: Signer, **changes: Any) -> str:
    """The checkpoint of ``line`` with ``changes``, signed by ``signer``."""
    original = parse_checkpoint_line(line)
    fields: dict[str, Any] = {
        "tree_size": original.tree_size,
        "root": original.root,
        "position": original.position,
        "chain_head": original.chain_head,
        "time": original.time,
    }
    fields.update(changes)
    return to_line(sign_checkpoint(signer, previous=None, **fields))


def with_note_text_changed(line: str, old: str, new: str) -> str:
    """The line with its note (and parsed fields) edited, the signature kept."""
    note = json.loads(line)["note"]
    assert old in note
    return to_line(parse_checkpoint_note(note.replace(old, new, 1)))


@pytest.fixture
def proved(tmp_path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """An inclusion proof (of a leaf in the middle) and a consistency proof, as JSON."""
    with open_harness(str(tmp_path / "ledger.sqlite")) as opened:
        store = evidence(opened)
        add_events(opened, 2, 3, 0)
        first = write_checkpoint(store)
        add_events(opened, 3, 2, 10)
        write_checkpoint(store)
        middle = all_hash_rows(store)[first.tree_size // 2]
        inclusion = prove_inclusion(store, middle.notification_id).to_json()
        consistency = prove_consistency(store, first.tree_size).to_json()
        yield inclusion, consistency


Change = Callable[[dict[str, Any]], None]


def change_event(field: str, value: Callable[[Any], Any]) -> Change:
    def change(document: dict[str, Any]) -> None:
        document["event"][field] = value(document["event"][field])

    return change


INCLUSION_CHANGES: Final[dict[str, tuple[Change, str]]] = {
    "state byte flipped": (change_event("state", lambda s: flip_base64(s, 20)), "not leaf"),
    "other position": (change_event("position", lambda p: p + 1), "not leaf"),
    "other originator version": (
        change_event("originator_version", lambda v: v + 1),
        "not leaf",
    ),
    "other topic": (change_event("topic", lambda t: t + "x"), "not leaf"),
    "other leaf index": (
        lambda d: d.update(leaf_index=d["leaf_index"] + 1),
        "not leaf",
    ),
    "path hash flipped": (
        lambda d: d["audit_path"].__setitem__(0, flip_base64(d["audit_path"][0], 3)),
        "does not lead to the root",
    ),
    "path shortened": (lambda d: d["audit_path"].pop(), "needs"),
    "signed by another key": (
        lambda d: d.update(checkpoint=forged_line(d["checkpoint"], OTHER_SIGNER)),
        "no signature of the note is by a known key",
    ),
    "root altered and signed by another key": (
        lambda d: d.update(checkpoint=forged_line(d["checkpoint"], OTHER_SIGNER, root=bytes(32))),
        "no signature of the note is by a known key",
    ),
    "size altered in the signed note": (
        lambda d: d.update(
            checkpoint=with_note_text_changed(
                d["checkpoint"],
                f"\n{json.loads(d['checkpoint'])['tree_size']}\n",
                f"\n{json.loads(d['checkpoint'])['tree_size'] - 1}\n",
            )
        ),
        "signature",
    ),
    "unknown field": (lambda d: d.update(leaf_hash="AA=="), "exactly the fields"),
    "other format": (lambda d: d.update(format="secret-ledger-proof/v2"), "format"),
}


@pytest.mark.parametrize("name", sorted(INCLUSION_CHANGES))
def test_an_altered_inclusion_proof_does_not_verify(
    proved: tuple[dict[str, Any], dict[str, Any]], name: str
) -> None:
    inclusion, _ = proved
    assert isinstance(
        verify_proof(parse_proof(json.dumps(inclusion)), PUBLIC_PEM), VerifiedInclusion
    )
    change, reason = INCLUSION_CHANGES[name]
    change(inclusion)
    with pytest.raises(InvalidProof, match=reason):
        verify_proof(parse_proof(json.dumps(inclusion)), PUBLIC_PEM)


CONSISTENCY_CHANGES: Final[dict[str, tuple[Change, str]]] = {
    "proof hash flipped": (
        lambda d: d["proof"].__setitem__(0, flip_base64(d["proof"][0], 5)),
        "did not grow",
    ),
    "checkpoints swapped": (
        lambda d: d.update(
            first_checkpoint=d["second_checkpoint"], second_checkpoint=d["first_checkpoint"]
        ),
        "did not grow",
    ),
    "a forked later tree signed by the log's own key": (
        lambda d: d.update(
            second_checkpoint=forged_line(d["second_checkpoint"], SIGNER, root=bytes(32))
        ),
        "did not grow",
    ),
    "later checkpoint signed by another key": (
        lambda d: d.update(second_checkpoint=forged_line(d["second_checkpoint"], OTHER_SIGNER)),
        "no signature of the note is by a known key",
    ),
}


@pytest.mark.parametrize("name", sorted(CONSISTENCY_CHANGES))
def test_an_altered_consistency_proof_does_not_verify(
    proved: tuple[dict[str, Any], dict[str, Any]], name: str
) -> None:
    _, consistency = proved
    verified = verify_proof(parse_proof(json.dumps(consistency)), PUBLIC_PEM)
    assert isinstance(verified, VerifiedConsistency)
    change, reason = CONSISTENCY_CHANGES[name]
    change(consistency)
    with pytest.raises(InvalidProof, match=reason):
        verify_proof(parse_proof(json.dumps(consistency)), PUBLIC_PEM)


def test_a_proof_of_another_log_is_refused_when_the_origin_is_pinned(
    proved: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    inclusion, _ = proved
    with pytest.raises(InvalidProof, match=r"not 'other\.example/log'"):
        verify_proof(parse_proof(json.dumps(inclusion)), PUBLIC_PEM, origin="other.example/log")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[]", "not a JSON object"),
        ("{", "not valid JSON"),
        (json.dumps({"format": PROOF_FORMAT, "type": "audit"}), "neither"),
    ],
)
def test_malformed_proof_documents_are_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidProof, match=reason):
        parse_proof(text)


# --------------------------------------------------------------------------------------
# What the store cannot prove
# --------------------------------------------------------------------------------------


def test_no_proof_before_a_checkpoint_covers_the_event(harness: Harness) -> None:
    store = evidence(harness)
    harness.create("app/one", token(1), "one")
    with pytest.raises(ProofUnavailable, match="no checkpoint has been signed yet"):
        prove_inclusion(store, 1)
    checkpoint = write_checkpoint(store)
    harness.create("app/two", token(2), "two")
    uncovered = all_hash_rows(store)[-1].notification_id
    with pytest.raises(ProofUnavailable, match="run `secretledger checkpoint`"):
        prove_inclusion(store, uncovered)
    with pytest.raises(ProofUnavailable, match="no event is stored at position"):
        prove_inclusion(store, uncovered + 1)
    with pytest.raises(ProofUnavailable, match="no checkpoint of 2 events"):
        prove_consistency(store, 2)
    with pytest.raises(ProofUnavailable, match="give the smaller size first"):
        write_checkpoint(store)
        prove_consistency(store, len(all_hash_rows(store)), checkpoint.tree_size)


def test_a_size_without_a_checkpoint_is_answered_with_the_nearest_stored_sizes(
    harness: Harness,
) -> None:
    store = evidence(harness)
    harness.create("app/one", token(1), "one")
    first = write_checkpoint(store)
    harness.create("app/two", token(2), "two")
    second = write_checkpoint(store)
    between = first.tree_size + 1
    assert between < second.tree_size, "each secret adds more than one event"

    nearest = f"nearest: {first.tree_size} below and {second.tree_size} above"
    with pytest.raises(ProofUnavailable, match=nearest):
        prove_consistency(store, between)
    with pytest.raises(ProofUnavailable, match=f"nearest: {second.tree_size} below\\)$"):
        prove_consistency(store, first.tree_size, second.tree_size + 1)
    with pytest.raises(ProofUnavailable, match=f"of {2**70} events .*: {second.tree_size} below"):
        prove_consistency(store, 2**70)  # beyond any size a store holds, refused all the same
    proof = prove_consistency(store, first.tree_size)
    assert parse_checkpoint_line(proof.second_checkpoint_line).tree_size == second.tree_size


def sqlite_ledger(tmp_path: Path) -> tuple[str, list[EventHash]]:
    database = str(tmp_path / "ledger.sqlite")
    with open_harness(database) as opened:
        add_events(opened, 3, 3, 0)
        write_checkpoint(evidence(opened))
        rows = all_hash_rows(evidence(opened))
    return database, rows


@contextmanager
def reopened_store(database: str) -> Iterator[Any]:
    """The store of ``database`` as another process opens it (no keyring)."""
    log = LogReader.for_database(database)
    try:
        assert isinstance(log.recorder, EvidenceStore)
        yield log.recorder
    finally:
        log.close()


def test_damaged_stored_evidence_gives_no_proof(tmp_path: Path) -> None:
    database, rows = sqlite_ledger(tmp_path)
    middle = rows[len(rows) // 2].notification_id
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 1 AND node_index = 0"
        )
    with reopened_store(database) as store:
        with pytest.raises(ProofUnavailable, match="does not hold"):
            prove_inclusion(store, rows[3].notification_id)
        with sqlite3.connect(database) as connection:
            connection.execute("DELETE FROM merkle_nodes WHERE level = 2")
        with pytest.raises(ProofUnavailable, match="Merkle node at level 2"):
            prove_inclusion(store, middle)
        with sqlite3.connect(database) as connection:
            connection.execute(
                "UPDATE stored_events SET state = CAST(state || x'00' AS BLOB) WHERE rowid = ?",
                (rows[-1].notification_id,),
            )
        with pytest.raises(ProofUnavailable, match="differs from the one the hash chain"):
            prove_inclusion(store, rows[-1].notification_id)


# --------------------------------------------------------------------------------------
# The commands, end to end
# --------------------------------------------------------------------------------------


@pytest.fixture
def ledger_files(persistent_backend: str, tmp_path: Path) -> dict[str, str]:
    return {
        "db": persistent_backend,
        "keyring": str(tmp_path / "ledger.keyring"),
        "signing_key": str(tmp_path / "ledger.signing-key"),
        "public_key": str(tmp_path / "ledger-public.pem"),
    }


def run(*arguments: str) -> Result:
    return CliRunner().invoke(main, list(arguments))


def run_ok(*arguments: str) -> str:
    result = run(*arguments)
    assert result.exit_code == 0, result.output
    return result.stdout


def stage_rotation(ledger_files: dict[str, str], secret_id: str) -> str:
    """RotateSecret through the API (no runner: the rotation stays staged); the token."""
    secrets = Secrets(ledger_files["db"], keyring_path=Path(ledger_files["keyring"]))
    try:
        response = SecretsManagerApi(secrets).call(
            "RotateSecret",
            {
                "SecretId": secret_id,
                "ClientRequestToken": token(77),
                "RotationLambdaARN": "arn:aws:lambda:us-east-1:123456789012:function:rotate",
            },
        )
    finally:
        secrets.close()
    staged: str = response["VersionId"]
    return staged


def test_a_version_is_proved_and_verified_through_the_commands(
    ledger_files: dict[str, str], tmp_path: Path
) -> None:
    db, keyring = ["--db", ledger_files["db"]], ["--keyring", ledger_files["keyring"]]
    signing_key = ["--signing-key", ledger_files["signing_key"]]
    run_ok("keys", "create-signing", "--origin", ORIGIN, *db, *signing_key)
    Path(ledger_files["public_key"]).write_text(run_ok("keys", "export-public", *db, *signing_key))
    run_ok("create", "--name", "app/db", "--secret-string", "first", *db, *keyring)
    put = json.loads(
        run_ok("put", "--secret-id", "app/db", "--secret-string", "second", *db, *keyring, "--json")
    )
    signer = SigningKeys.open(Path(ledger_files["signing_key"])).signer()
    with reopened_store(ledger_files["db"]) as store:
        first = write_checkpoint(store, signer)
    out = tmp_path / "version.proof"

    run_ok(
        "prove", "--secret-id", "app/db", "--version-id", put["VersionId"], "--out", str(out), *db
    )

    verify = ["verify-proof", str(out), "--public-key", ledger_files["public_key"]]
    text = run_ok(*verify)
    assert "valid inclusion proof" in text and put["VersionId"] in text
    summary = json.loads(run_ok(*verify, "--json"))
    assert summary["valid"] is True
    assert summary["topic"] == Secret.VersionCreated.TOPIC
    assert summary["version_id"] == put["VersionId"]
    assert summary["checkpoint"]["tree_size"] == first.tree_size
    assert summary["checkpoint"]["origin"] == ORIGIN

    document = json.loads(out.read_text())
    document["event"]["state"] = flip_base64(document["event"]["state"], 40)
    out.write_text(json.dumps(document))
    refused = run(*verify, "--json")
    assert refused.exit_code == EXIT_INVALID_PROOF
    assert json.loads(refused.stdout)["valid"] is False

    later = json.loads(
        run_ok("put", "--secret-id", "app/db", "--secret-string", "third", *db, *keyring, "--json")
    )
    uncovered = run("prove", "--secret-id", "app/db", "--version-id", later["VersionId"], *db)
    assert uncovered.exit_code == 1
    assert "run `secretledger checkpoint`" in uncovered.stderr
    unknown = run("prove", "--secret-id", "app/db", "--version-id", "no-such-version", *db)
    assert unknown.exit_code == 1
    assert "ResourceNotFoundException" in unknown.stderr

    with reopened_store(ledger_files["db"]) as store:
        second = write_checkpoint(store, signer)
    grew = run_ok("prove", "--consistency", "--from-size", str(first.tree_size), *db)
    (tmp_path / "grew.proof").write_text(grew)
    growth = json.loads(
        run_ok(
            "verify-proof",
            str(tmp_path / "grew.proof"),
            "--public-key",
            ledger_files["public_key"],
            "--json",
        )
    )
    assert growth["first_checkpoint"]["tree_size"] == first.tree_size
    assert growth["second_checkpoint"]["tree_size"] == second.tree_size
    by_position = run_ok("prove", "--position", str(second.position), *db)
    assert json.loads(by_position)["event"]["position"] == second.position

    staged = stage_rotation(ledger_files, "app/db")
    with reopened_store(ledger_files["db"]) as store:
        write_checkpoint(store, signer)
    run_ok("prove", "--secret-id", "app/db", "--version-id", staged, "--out", str(out), *db)
    rotated = json.loads(run_ok(*verify, "--json"))
    assert rotated["valid"] is True
    assert (rotated["topic"], rotated["version_id"]) == (
        Secret.PendingVersionStaged.TOPIC,
        staged,
    ), "a version a rotation staged begins with PendingVersionStaged (RO-3)"


@pytest.mark.parametrize(
    "arguments",
    [
        ["prove"],
        ["prove", "--position", "1", "--consistency", "--from-size", "1"],
        ["prove", "--secret-id", "app/db"],
        ["prove", "--consistency"],
        ["prove", "--position", "1", "--to-size", "3"],
    ],
)
def test_prove_needs_exactly_one_subject(arguments: list[str], tmp_path: Path) -> None:
    result = run(*arguments, "--db", str(tmp_path / "ledger.sqlite"))
    assert result.exit_code == 2, result.output


def test_verify_proof_refuses_an_unusable_public_key_file(
    proved: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    inclusion, _ = proved
    proof_file = tmp_path / "p.proof"
    proof_file.write_text(json.dumps(inclusion))
    key_file = tmp_path / "not-a-key.pem"
    key_file.write_text("hello\n")
    result = run("verify-proof", str(proof_file), "--public-key", str(key_file))
    assert result.exit_code == 1
    assert "holds no public key" in result.stderr
    missing = run("verify-proof", str(proof_file))
    assert missing.exit_code == 2
