"""The checkpoint signing-key file: creation, permissions, rotation and public key export
(rules K1-K5)."""

from __future__ import annotations

import datetime
import json
import pathlib
import re
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledger.checkpoints import sign_checkpoint, verify_checkpoint_chain
from ledger.merkle import EMPTY_ROOT, GENESIS_CHAIN_HASH
from ledger.signed_note import Verifier
from ledger.signing_keys import SigningKeyError, SigningKeys, load_verifiers_pem

TIME = datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC)


def mode_of(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def key_file(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "ledger.db.signing-key"


def test_a_new_file_is_private_and_names_a_random_origin(tmp_path: pathlib.Path) -> None:
    path = key_file(tmp_path)
    keys = SigningKeys.create(path)
    assert mode_of(path) == 0o600
    assert re.fullmatch(r"secret-ledger\.local/[0-9a-f]{8}", keys.origin)
    assert SigningKeys.create(key_file(tmp_path / "other")).origin != keys.origin
    [info] = keys.list_keys()
    assert info.active and info.key_id == keys.active_key_id == keys.signer().key_id
    assert info.verifier.name == keys.origin
    assert abs(info.created - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=1)
    document = json.loads(path.read_text())
    assert document["origin"] == keys.origin and document["format"] == 1
    assert document["active_key_id"] == f"{keys.active_key_id:08x}"


def test_an_existing_file_is_never_overwritten(tmp_path: pathlib.Path) -> None:
    path = key_file(tmp_path)
    SigningKeys.create(path, origin="example.com/log")
    content = path.read_bytes()
    with pytest.raises(SigningKeyError, match="already exists"):
        SigningKeys.create(path, origin="example.com/log")
    assert path.read_bytes() == content
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]  # no temporary left


@pytest.mark.parametrize("origin", ["", "has space", "has+plus", "tab\there"])
def test_an_unusable_origin_is_refused(tmp_path: pathlib.Path, origin: str) -> None:
    with pytest.raises(SigningKeyError, match="is unusable"):
        SigningKeys.create(key_file(tmp_path), origin=origin)
    assert not key_file(tmp_path).exists()


def test_a_file_opens_to_the_same_keys(tmp_path: pathlib.Path) -> None:
    path = key_file(tmp_path)
    created = SigningKeys.create(path, origin="example.com/log")
    opened = SigningKeys.open(path)
    assert opened.origin == "example.com/log"
    assert opened.list_keys() == created.list_keys()
    assert "seed" not in repr(opened) and "example.com/log" in repr(opened)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o601])
def test_a_file_accessible_by_group_or_others_is_refused(tmp_path: pathlib.Path, mode: int) -> None:
    path = key_file(tmp_path)
    SigningKeys.create(path)
    path.chmod(mode)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        SigningKeys.open(path)


def test_a_missing_file_is_not_created_by_open(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SigningKeyError, match="does not exist"):
        SigningKeys.open(key_file(tmp_path))
    assert not key_file(tmp_path).exists()


def rewrite(path: pathlib.Path, change: dict[str, object]) -> None:
    document = json.loads(path.read_text())
    document.update(change)
    path.write_text(json.dumps(document))


def test_corrupt_files_are_refused_without_showing_seeds(tmp_path: pathlib.Path) -> None:
    path = key_file(tmp_path)
    SigningKeys.create(path, origin="example.com/log")
    original = json.loads(path.read_text())
    seed = original["keys"][0]["seed"]
    entry = original["keys"][0]
    cases: list[tuple[dict[str, object], str]] = [
        ({"format": 2}, "unsupported format"),
        ({"origin": "example.com/other"}, "under an id that is not its own"),
        ({"origin": 5}, "has no origin"),
        ({"origin": "a b"}, "unusable origin"),
        ({"active_key_id": "00000000"}, "names an active key it does not hold"),
        ({"keys": []}, "no list of 1 to 1000 keys"),
        ({"keys": [entry, entry]}, "twice"),
        ({"keys": [{**entry, "seed": seed + "!"}]}, "not valid base64"),
        ({"keys": [{**entry, "seed": seed[:-4]}]}, "not 32 bytes"),
        ({"keys": [{**entry, "created": "yesterday"}]}, "malformed creation time"),
        ({"keys": [{"seed": seed}]}, "without key_id, created and seed"),
    ]
    for change, message in cases:
        path.write_text(json.dumps(original))
        rewrite(path, change)
        with pytest.raises(SigningKeyError, match=message) as raised:
            SigningKeys.open(path)
        assert seed not in str(raised.value) and raised.value.__cause__ is None
    path.write_text("not json")
    with pytest.raises(SigningKeyError, match="not valid JSON"):
        SigningKeys.open(path)


def test_rotation_adds_an_active_key_and_keeps_the_old_one(tmp_path: pathlib.Path) -> None:
    path = key_file(tmp_path)
    keys = SigningKeys.create(path)
    old_signer = keys.signer()
    first = sign_checkpoint(
        old_signer,
        tree_size=0,
        root=EMPTY_ROOT,
        position=0,
        chain_head=GENESIS_CHAIN_HASH,
        time=TIME,
        previous=None,
    )
    new_key_id = keys.rotate()
    assert new_key_id == keys.active_key_id != old_signer.key_id
    assert [(info.key_id, info.active) for info in keys.list_keys()] == [
        (old_signer.key_id, False),
        (new_key_id, True),
    ]
    assert SigningKeys.open(path).list_keys() == keys.list_keys()
    assert mode_of(path) == 0o600
    second = sign_checkpoint(
        keys.signer(),
        tree_size=0,
        root=EMPTY_ROOT,
        position=0,
        chain_head=GENESIS_CHAIN_HASH,
        time=TIME,
        previous=first,
    )
    assert verify_checkpoint_chain([first, second], keys.verifiers()) is None
    problem = verify_checkpoint_chain([first, second], [old_signer.verifier])
    assert problem is not None and problem.index == 1


def test_two_processes_rotating_keep_each_others_keys(tmp_path: pathlib.Path) -> None:
    path = key_file(tmp_path)
    SigningKeys.create(path)
    one, other = SigningKeys.open(path), SigningKeys.open(path)
    one.rotate()
    other.rotate()
    assert len(SigningKeys.open(path).list_keys()) == 3
    assert SigningKeys.open(path).active_key_id == other.active_key_id


def test_rotation_refuses_a_file_that_lost_a_key(tmp_path: pathlib.Path) -> None:
    path = key_file(tmp_path)
    keys = SigningKeys.create(path)
    replaced = SigningKeys.create(tmp_path / "replacement", origin=keys.origin)
    path.write_bytes((tmp_path / "replacement").read_bytes())
    with pytest.raises(SigningKeyError, match="no longer holds every key"):
        keys.rotate()
    assert SigningKeys.open(path).list_keys() == replaced.list_keys()


def test_public_keys_export_as_pem_and_vkeys_and_load_back(tmp_path: pathlib.Path) -> None:
    keys = SigningKeys.create(key_file(tmp_path), origin="example.com/log")
    keys.rotate()
    pem = keys.public_keys_pem()
    assert pem.count("-----BEGIN PUBLIC KEY-----") == 2 and "PRIVATE" not in pem
    assert load_verifiers_pem(pem, origin="example.com/log") == keys.verifiers()
    assert [Verifier.from_vkey(vkey) for vkey in keys.vkeys()] == keys.verifiers()
    assert all(vkey.startswith("example.com/log+") for vkey in keys.vkeys())
    doubled = load_verifiers_pem("a comment\n" + pem + pem, origin="example.com/log")
    assert doubled == keys.verifiers()


def pem_of_private_ed25519() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        .decode()
    )


def pem_of_ec_public_key() -> str:
    key = generate_private_key(SECP256R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("", "holds no public key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "cannot be read"),
        (pem_of_private_ed25519(), "holds a PRIVATE KEY"),
        (pem_of_ec_public_key(), "not Ed25519"),
    ],
    ids=["empty", "garbage", "private key", "EC key"],
)
def test_unusable_pem_files_are_refused(pem: str, message: str) -> None:
    with pytest.raises(SigningKeyError, match=message):
        load_verifiers_pem(pem, origin="example.com/log")


def test_pem_keys_need_a_usable_origin() -> None:
    pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningKeyError, match="is unusable"):
        load_verifiers_pem(pem.decode(), origin="has space")
