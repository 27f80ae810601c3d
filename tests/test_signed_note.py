"""Signed notes: the C2SP and golang.org/x/mod vectors, and every way a note is refused.

Rule ids (N1..) are those of docs/evidence.md.
"""

from __future__ import annotations

import base64

import pytest

from ledger import signed_note
from ledger.merkle import LeafHashes, consistency_proof, verify_consistency
from ledger.signed_note import (
    SIGNATURES_PER_NOTE_MAX,
    NoteError,
    NoteSignature,
    Signer,
    Verifier,
    format_key_id,
    open_note,
    parse_note,
    sign_note,
)

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n"
    "\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mF"
    "XmRKuwHjG1Yu72IneyaQM=\n"
)
PETER_PRIVATE_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
NEUMANN_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
ENOCH_LINE = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox3"
    "3WWd1RvMc+QQ=\n"
)
TEST_ORIGIN = "example.com/ledger-test"
TEST_SEED = bytes(range(32))
TEST_VKEY = "example.com/ledger-test+c62fdc89+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
CHECKPOINT_8 = (
    "example.com/ledger-test\n"
    "8\n"
    "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
    "\n"
    "— example.com/ledger-test xi/ciRkFHiVHjRqm4UD9GlHiGLS2RkrU9JA5hh6U8bf81UbQZJpaGey5AEDtrv8/"
    "fVSEcWvfIREseD292ExGsnKr0wc=\n"
)
CHECKPOINT_5 = (
    "example.com/ledger-test\n"
    "5\n"
    "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=\n"
    "\n"
    "— example.com/ledger-test xi/ciQ/1gIjMR9r14dTyI1+7pQUeDDNzrcnSYdjiBbiCIv/ZvYYG8ogKIiJ993u35"
    "mLKPN6i5nNHlrRLblsL7D63aww=\n"
)
REFERENCE_LEAF_HASHES = [
    bytes.fromhex(value)
    for value in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ]
]


def peter_signer() -> Signer:
    """The x/mod private key: PRIVATE+KEY+<name>+<id>+base64(0x01 ‖ seed)."""
    _private, _key, name, id_text, encoded = PETER_PRIVATE_KEY.split("+", 4)
    decoded = base64.b64decode(encoded)
    assert decoded[0] == 0x01
    signer = Signer(name, decoded[1:])
    assert format_key_id(signer.key_id) == id_text
    return signer


# N4, N5: key ids and verifier keys.


@pytest.mark.parametrize("vkey", [C2SP_VKEY, PETER_VKEY, ENOCH_VKEY, TEST_VKEY])
def test_verifier_keys_round_trip_with_their_key_ids(vkey: str) -> None:
    verifier = Verifier.from_vkey(vkey)
    assert verifier.vkey() == vkey
    assert format_key_id(verifier.key_id) == vkey.split("+")[1]


def test_the_vkey_of_a_signer_is_derived_from_its_seed() -> None:
    assert peter_signer().verifier.vkey() == PETER_VKEY
    assert Signer(TEST_ORIGIN, TEST_SEED).verifier.vkey() == TEST_VKEY
    assert "seed" not in repr(peter_signer()) and "c74f20a3" in repr(peter_signer())


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        ("PeterNeumann+c74f20a3", "has the form"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "states a key id"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "lowercase hex"),
        ("PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not an Ed25519"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy", "not an Ed25519"),
        ("PeterNeumann+c74f20a3+ARpc!QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not valid base64"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space or '\\+'"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "must not be empty"),
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Verifier.from_vkey(vkey)


# N6, N7: signing and verifying.


def test_the_c2sp_example_note_verifies() -> None:
    opened = open_note(C2SP_NOTE, [Verifier.from_vkey(C2SP_VKEY)])
    assert opened.text == "This is an example message.\n"
    assert [signature.name for signature in opened.verified] == ["example.com/foo"]
    assert opened.unverified == ()


def test_the_x_mod_note_is_reproduced_byte_for_byte_from_its_seed() -> None:
    note = sign_note(NEUMANN_TEXT, [peter_signer()])
    assert note == NEUMANN_TEXT + "\n" + PETER_LINE
    assert open_note(note, [Verifier.from_vkey(PETER_VKEY)]).text == NEUMANN_TEXT


def test_a_note_with_two_signatures_verifies_with_either_key_and_ignores_the_other() -> None:
    note = NEUMANN_TEXT + "\n" + PETER_LINE + ENOCH_LINE
    both = open_note(note, [Verifier.from_vkey(PETER_VKEY), Verifier.from_vkey(ENOCH_VKEY)])
    assert [signature.name for signature in both.verified] == ["PeterNeumann", "EnochRoot"]
    enoch_only = open_note(note, [Verifier.from_vkey(ENOCH_VKEY)])
    assert [signature.name for signature in enoch_only.verified] == ["EnochRoot"]
    assert [signature.name for signature in enoch_only.unverified] == ["PeterNeumann"]


def test_a_repeated_signature_counts_once() -> None:
    note = NEUMANN_TEXT + "\n" + PETER_LINE + PETER_LINE + ENOCH_LINE + ENOCH_LINE
    opened = open_note(note, [Verifier.from_vkey(PETER_VKEY)])
    assert len(opened.verified) == 1 and len(opened.unverified) == 1


def test_a_tampered_text_fails() -> None:
    note = (NEUMANN_TEXT + "\n" + PETER_LINE).replace("answer", "Answer")
    with pytest.raises(NoteError, match="PeterNeumann\\+c74f20a3 does not verify"):
        open_note(note, [Verifier.from_vkey(PETER_VKEY)])


def test_a_known_key_that_fails_fails_the_note_even_if_another_verifies() -> None:
    forged = NoteSignature(peter_signer().name, peter_signer().key_id, bytes(64))
    note = NEUMANN_TEXT + "\n" + ENOCH_LINE + forged.line()
    verifiers = [Verifier.from_vkey(PETER_VKEY), Verifier.from_vkey(ENOCH_VKEY)]
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note, verifiers)


def test_a_note_signed_by_no_known_key_fails() -> None:
    note = NEUMANN_TEXT + "\n" + PETER_LINE
    with pytest.raises(NoteError, match="no signature of the note is by a known key"):
        open_note(note, [Verifier.from_vkey(ENOCH_VKEY)])
    with pytest.raises(NoteError, match="no signature"):
        open_note(note, [])


def test_another_key_under_the_same_name_is_an_unknown_key() -> None:
    impostor = Signer("PeterNeumann", bytes(32))
    note = sign_note(NEUMANN_TEXT, [impostor])
    with pytest.raises(NoteError, match="no signature"):
        open_note(note, [Verifier.from_vkey(PETER_VKEY)])


def test_two_different_keys_with_one_name_and_id_are_refused_as_verifiers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = Verifier.from_vkey(PETER_VKEY)
    note = NEUMANN_TEXT + "\n" + PETER_LINE
    assert open_note(note, [real, real]).text == NEUMANN_TEXT  # the same key twice is fine
    monkeypatch.setattr(signed_note, "key_id", lambda name, public_key: 0xC74F20A3)
    with pytest.raises(NoteError, match="two different keys share"):
        open_note(note, [real, Verifier(real.name, bytes(32))])


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (NEUMANN_TEXT + PETER_LINE, "needs a blank line"),
        (NEUMANN_TEXT + "\n" + PETER_LINE[:-1], "must end with a signature line"),
        (NEUMANN_TEXT + "\n" + PETER_LINE + "\n", "must end with a signature line"),
        (NEUMANN_TEXT + "\n" + PETER_LINE + "PeterNeumann x08g\n", "starts with an em dash"),
        (NEUMANN_TEXT + "\n" + PETER_LINE.replace("—", "-"), "starts with an em dash"),
        (NEUMANN_TEXT + "\n" + "— PeterNeumann\n", "holds a key name, a space"),
        (NEUMANN_TEXT + "\n" + "— PeterNeumann x08go!\n", "not valid base64"),
        (NEUMANN_TEXT + "\n" + "— PeterNeumann x08gow==\n", "too short"),
        (NEUMANN_TEXT + "\n" + "— Peter+Neumann x08go/ZJ\n", "space or '\\+'"),
        ("tab\there\n\n" + PETER_LINE, "control character U\\+0009"),
        ("bell\x07\n\n" + PETER_LINE, "control character U\\+0007"),
        ("del\x7f\n\n" + PETER_LINE, "control character U\\+007F"),
        ("broken \ud800\n\n" + PETER_LINE, "valid UTF-8"),
    ],
)
def test_malformed_notes_are_refused(note: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        parse_note(note)


def test_at_most_100_signatures() -> None:
    note = NEUMANN_TEXT + "\n" + ENOCH_LINE * SIGNATURES_PER_NOTE_MAX + PETER_LINE
    with pytest.raises(NoteError, match="at most 100"):
        open_note(note, [Verifier.from_vkey(PETER_VKEY)])
    assert len(parse_note(NEUMANN_TEXT + "\n" + ENOCH_LINE * 100).signatures) == 100


@pytest.mark.parametrize(
    ("text", "message"), [("no newline", "end with a newline"), ("", "end with a newline")]
)
def test_only_a_text_ending_in_a_newline_is_signed(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        sign_note(text, [peter_signer()])


def test_a_note_is_signed_by_at_least_one_key() -> None:
    with pytest.raises(NoteError, match="1 to 100"):
        sign_note(NEUMANN_TEXT, [])


def test_a_signer_needs_a_32_byte_seed() -> None:
    with pytest.raises(NoteError, match="seed is 32 bytes"):
        Signer("x", bytes(31))


# The 8-leaf reference tree as a plain C2SP checkpoint.


def test_the_reference_tree_checkpoints_are_reproduced_and_consistent() -> None:
    signer = Signer(TEST_ORIGIN, TEST_SEED)
    root_8 = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
    root_5 = "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ="
    assert sign_note(f"{TEST_ORIGIN}\n8\n{root_8}\n", [signer]) == CHECKPOINT_8
    assert sign_note(f"{TEST_ORIGIN}\n5\n{root_5}\n", [signer]) == CHECKPOINT_5
    verifier = Verifier.from_vkey(TEST_VKEY)
    assert open_note(CHECKPOINT_8, [verifier]).text.split("\n")[1] == "8"
    assert open_note(CHECKPOINT_5, [verifier]).text.split("\n")[1] == "5"

    proof = consistency_proof(5, 8, LeafHashes(REFERENCE_LEAF_HASHES))
    assert [element.hex()[:8] for element in proof] == [
        "bc1a0643",
        "4271a26b",
        "ca854ea1",
        "d37ee418",
    ]
    verify_consistency(5, 8, base64.b64decode(root_5), base64.b64decode(root_8), proof)
