"""Signed checkpoints: the note, the JSON line, and the chain checks (rules C1-C9)."""

from __future__ import annotations

import base64
import datetime
import json
import re
from typing import Any

import pytest

from ledger.checkpoints import (
    ChainProblem,
    Checkpoint,
    CheckpointError,
    checkpoint_text,
    format_time,
    parse_checkpoint_line,
    parse_checkpoint_note,
    sign_checkpoint,
    to_line,
    verify_checkpoint,
    verify_checkpoint_chain,
)
from ledger.merkle import EMPTY_ROOT, GENESIS_CHAIN_HASH
from ledger.signed_note import Signer, sign_note

ORIGIN = "example.com/ledger-test"
SIGNER = Signer(ORIGIN, bytes(range(32)))
VERIFIERS = [SIGNER.verifier]
OTHER_SIGNER = Signer(ORIGIN, bytes(32))
WITNESS = Signer("witness.example/w1", bytes([7]) * 32)
ROOT_8 = base64.b64decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
ROOT_5 = base64.b64decode("Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=")
CHAIN_5 = bytes.fromhex("55" * 32)
CHAIN_8 = bytes.fromhex("88" * 32)
TIME = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)


def chain_of_three() -> list[Checkpoint]:
    """Checkpoints of the empty log, then of 5 and 8 leaves."""
    empty = sign_checkpoint(
        SIGNER,
        tree_size=0,
        root=EMPTY_ROOT,
        position=0,
        chain_head=GENESIS_CHAIN_HASH,
        time=TIME,
        previous=None,
    )
    five = sign_checkpoint(
        SIGNER, tree_size=5, root=ROOT_5, position=7, chain_head=CHAIN_5, time=TIME, previous=empty
    )
    eight = sign_checkpoint(
        SIGNER, tree_size=8, root=ROOT_8, position=12, chain_head=CHAIN_8, time=TIME, previous=five
    )
    return [empty, five, eight]


def forge(signer: Signer, **fields: Any) -> Checkpoint:
    """A checkpoint signed without ``sign_checkpoint``'s checks (what a faulty log could do)."""
    text_fields: dict[str, Any] = {
        "origin": signer.name,
        "tree_size": 8,
        "root": ROOT_8,
        "position": 12,
        "chain_head": CHAIN_8,
        "time": TIME,
        "previous": None,
    }
    text_fields.update(fields)
    return parse_checkpoint_note(sign_note(checkpoint_text(**text_fields), [signer]))


# C1-C3: the note.


def test_a_checkpoint_note_has_the_c2sp_lines_then_ours() -> None:
    _, five, _ = chain_of_three()
    text = five.note.split("\n\n")[0] + "\n"
    assert text == (
        "example.com/ledger-test\n"
        "5\n"
        "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=\n"
        "position 7\n"
        f"chain {'55' * 32}\n"
        "time 2024-05-06T07:08:09.123456Z\n"
        f"previous {chain_of_three()[0].note_hash.hex()}\n"
    )
    assert five.note.endswith("\n") and five.note.count("\n— example.com/ledger-test xi/ci") == 1
    assert (five.tree_size, five.root, five.position, five.chain_head) == (5, ROOT_5, 7, CHAIN_5)
    assert five.key_id == SIGNER.key_id and five.time == TIME
    verify_checkpoint(five, VERIFIERS)


def test_signing_is_deterministic_and_parsing_gives_the_same_checkpoint() -> None:
    assert chain_of_three() == chain_of_three()
    for checkpoint in chain_of_three():
        assert parse_checkpoint_note(checkpoint.note) == checkpoint


def test_times_are_written_in_utc_with_microseconds() -> None:
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert format_time(datetime.datetime(2024, 1, 1, 2, 0, tzinfo=plus_two)) == (
        "2024-01-01T00:00:00.000000Z"
    )
    with pytest.raises(CheckpointError, match="timezone-aware"):
        format_time(datetime.datetime(2024, 1, 1))


def replace_text_line(note: str, number: int, line: str) -> str:
    """The note with text line ``number`` replaced (its signature no longer matches)."""
    text, signatures = note.split("\n\n")
    lines = text.split("\n")
    lines[number] = line
    return "\n".join(lines) + "\n\n" + signatures


@pytest.mark.parametrize(
    ("number", "line", "message"),
    [
        (1, "08", "leading zeros"),
        (1, "-8", "leading zeros"),
        (1, "8 ", "leading zeros"),
        (2, "XcnaeacG", "base64 of 32 bytes"),
        (2, "Xcnaeac!", "not valid base64"),
        (3, "chain 00", "expected a line 'position '"),
        (3, "position 012", "leading zeros"),
        (4, f"chain {'AB' * 32}", "64 lowercase hex"),
        (5, "time 2024-05-06T07:08:09Z", "microseconds"),
        (5, "time 2024-05-06T07:08:09.123456+00:00", "microseconds"),
        (5, "time 2024-13-06T07:08:09.123456Z", "not a valid date"),
        (6, "previous None", "64 lowercase hex"),
    ],
)
def test_malformed_checkpoint_lines_are_refused(number: int, line: str, message: str) -> None:
    note = replace_text_line(chain_of_three()[2].note, number, line)
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint_note(note)


def test_a_checkpoint_has_exactly_seven_text_lines() -> None:
    note = chain_of_three()[2].note.replace("previous", "extra line\nprevious")
    with pytest.raises(CheckpointError, match="7 lines, not 8"):
        parse_checkpoint_note(note)
    with pytest.raises(CheckpointError, match="malformed"):
        parse_checkpoint_note("no signatures\n")


def test_a_checkpoint_holds_one_signature_by_its_origin() -> None:
    text = chain_of_three()[2].note.split("\n\n")[0] + "\n"
    with pytest.raises(CheckpointError, match="one signature by"):
        parse_checkpoint_note(sign_note(text, [SIGNER, OTHER_SIGNER]))
    with pytest.raises(CheckpointError, match="one signature by"):
        parse_checkpoint_note(sign_note(text, [WITNESS]))
    cosigned = parse_checkpoint_note(sign_note(text, [SIGNER, WITNESS]))
    verify_checkpoint(cosigned, VERIFIERS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tree_size": 0, "position": 0, "root": ROOT_8}, "empty log"),
        ({"tree_size": 0, "position": 3, "root": EMPTY_ROOT}, "empty log"),
        ({"tree_size": 8, "position": 7}, "below tree size"),
    ],
)
def test_positions_agree_with_tree_sizes(fields: dict[str, object], message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        forge(SIGNER, **fields)


# C4: signatures.


def test_a_tampered_note_does_not_verify() -> None:
    eight = chain_of_three()[2]
    tampered = parse_checkpoint_note(replace_text_line(eight.note, 3, "position 13"))
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(tampered, VERIFIERS)


def test_a_checkpoint_by_another_key_of_the_same_name_does_not_verify() -> None:
    forged = forge(OTHER_SIGNER)
    with pytest.raises(CheckpointError, match="no signature of the note is by a known key"):
        verify_checkpoint(forged, VERIFIERS)
    verify_checkpoint(forged, [OTHER_SIGNER.verifier])


def test_a_checkpoint_only_a_witness_key_verifies_is_refused() -> None:
    eight = chain_of_three()[2]
    text = eight.note.split("\n\n")[0] + "\n"
    cosigned = parse_checkpoint_note(sign_note(text, [OTHER_SIGNER, WITNESS]))
    with pytest.raises(CheckpointError, match=f"not signed by a known key of {re.escape(ORIGIN)}"):
        verify_checkpoint(cosigned, [*VERIFIERS, WITNESS.verifier])


def test_sign_checkpoint_refuses_to_shrink_or_fork_the_log() -> None:
    _, five, _ = chain_of_three()
    arguments: dict[str, Any] = {"root": ROOT_5, "position": 7, "chain_head": CHAIN_5, "time": TIME}
    with pytest.raises(CheckpointError, match="would shrink"):
        sign_checkpoint(SIGNER, **{**arguments, "tree_size": 4}, previous=five)
    with pytest.raises(CheckpointError, match="would shrink"):
        sign_checkpoint(SIGNER, **{**arguments, "tree_size": 6, "position": 6}, previous=five)
    with pytest.raises(CheckpointError, match="second, different root"):
        sign_checkpoint(SIGNER, **{**arguments, "tree_size": 5, "root": ROOT_8}, previous=five)
    with pytest.raises(CheckpointError, match="previous checkpoint is of"):
        sign_checkpoint(WITNESS, **{**arguments, "tree_size": 6}, previous=five)
    same = sign_checkpoint(SIGNER, **{**arguments, "tree_size": 5}, previous=five)
    assert same.previous == five.note_hash


# C8: the JSON line.


def test_a_line_is_one_canonical_json_object_that_parses_back() -> None:
    for checkpoint in chain_of_three():
        line = to_line(checkpoint)
        assert "\n" not in line
        document = json.loads(line)
        assert list(document) == sorted(document)
        assert line == json.dumps(document, sort_keys=True, separators=(",", ":"))
        assert parse_checkpoint_line(line) == checkpoint
    document = json.loads(to_line(chain_of_three()[1]))
    assert document["tree_size"] == 5 and document["position"] == 7
    assert document["root"] == "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ="
    assert document["key_id"] == "c62fdc89" and document["chain_head"] == "55" * 32
    assert document["time"] == "2024-05-06T07:08:09.123456Z"
    assert json.loads(to_line(chain_of_three()[0]))["previous"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tree_size", 9),
        ("tree_size", 8.0),
        ("tree_size", "8"),
        ("position", 13),
        ("root", base64.b64encode(ROOT_5).decode()),
        ("chain_head", "55" * 32),
        ("time", "2024-05-06T07:08:09.123457Z"),
        ("previous", None),
        ("key_id", "00000000"),
        ("origin", "example.com/other"),
    ],
)
def test_a_line_whose_fields_differ_from_its_note_is_refused(field: str, value: object) -> None:
    document = json.loads(to_line(chain_of_three()[2]))
    document[field] = value
    with pytest.raises(CheckpointError, match=f"line's {field} differs"):
        parse_checkpoint_line(json.dumps(document))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "exactly the fields"),
        ('{"note": "x"}', "exactly the fields"),
        (" " * 70_000, "at most 65536"),
    ],
)
def test_malformed_lines_are_refused(line: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint_line(line)


def test_a_line_with_an_extra_field_or_a_note_that_is_not_text_is_refused() -> None:
    document = json.loads(to_line(chain_of_three()[2]))
    with pytest.raises(CheckpointError, match="exactly the fields"):
        parse_checkpoint_line(json.dumps({**document, "extra": 1}))
    with pytest.raises(CheckpointError, match="note is not a string"):
        parse_checkpoint_line(json.dumps({**document, "note": 5}))


# C9: chains.


def test_a_good_chain_verifies() -> None:
    assert verify_checkpoint_chain(chain_of_three(), VERIFIERS) is None
    assert verify_checkpoint_chain([], VERIFIERS) is None


def test_a_chain_can_start_after_a_known_checkpoint() -> None:
    empty, five, eight = chain_of_three()
    assert (
        verify_checkpoint_chain([five, eight], VERIFIERS, previous_note_hash=empty.note_hash)
        is None
    )
    problem = verify_checkpoint_chain([five, eight], VERIFIERS)
    assert problem == ChainProblem(0, problem.reason if problem else "")
    assert problem is not None and "should be the log's first checkpoint" in problem.reason


def test_a_reordered_chain_fails_at_the_first_checkpoint_out_of_place() -> None:
    empty, five, eight = chain_of_three()
    problem = verify_checkpoint_chain([empty, eight, five], VERIFIERS)
    assert problem is not None and problem.index == 1
    assert f"the checkpoint before it hashes to {empty.note_hash.hex()}" in problem.reason


def test_a_chain_with_a_removed_checkpoint_fails_where_it_was() -> None:
    empty, _five, eight = chain_of_three()
    problem = verify_checkpoint_chain([empty, eight], VERIFIERS)
    assert problem is not None and problem.index == 1 and "names previous" in problem.reason


def test_a_chain_with_a_tampered_or_foreign_checkpoint_fails_there() -> None:
    empty, five, eight = chain_of_three()
    tampered = parse_checkpoint_note(replace_text_line(eight.note, 1, "9"))
    problem = verify_checkpoint_chain([empty, five, tampered], VERIFIERS)
    assert problem is not None and problem.index == 2 and "does not verify" in problem.reason
    foreign = forge(OTHER_SIGNER, previous=five.note_hash)
    problem = verify_checkpoint_chain([empty, five, foreign], VERIFIERS)
    assert problem is not None and problem.index == 2 and "known key" in problem.reason


def test_a_chain_that_shrinks_or_forks_fails_at_the_offending_checkpoint() -> None:
    empty, five, eight = chain_of_three()
    shrunk = forge(SIGNER, tree_size=4, position=6, root=ROOT_5, previous=eight.note_hash)
    problem = verify_checkpoint_chain([empty, five, eight, shrunk], VERIFIERS)
    assert problem is not None and problem.index == 3 and "would shrink" in problem.reason
    fork = forge(SIGNER, tree_size=8, root=ROOT_5, previous=eight.note_hash)
    problem = verify_checkpoint_chain([empty, five, eight, fork], VERIFIERS)
    assert problem is not None and problem.index == 3 and "second, different" in problem.reason
    moved = forge(SIGNER, tree_size=8, position=13, previous=eight.note_hash)
    problem = verify_checkpoint_chain([empty, five, eight, moved], VERIFIERS)
    assert problem is not None and problem.index == 3 and "second, different" in problem.reason


def test_a_chain_from_another_origin_fails() -> None:
    empty, five, _eight = chain_of_three()
    other = Signer("example.com/other-log", bytes(range(32)))
    foreign = forge(other, previous=five.note_hash)
    problem = verify_checkpoint_chain([empty, five, foreign], [*VERIFIERS, other.verifier])
    assert problem is not None and problem.index == 2 and "is of example.com" in problem.reason


def test_verification_needs_the_right_public_key() -> None:
    problem = verify_checkpoint_chain(chain_of_three(), [OTHER_SIGNER.verifier])
    assert problem is not None and problem.index == 0 and "known key" in problem.reason
