"""The Merkle tree of the evidence log: roots, incremental roots, proofs and their checks.

Vectors are the published RFC 6962 test data (certificate-transparency, transparency-dev)
and the RFC 9162 §2.1.5 worked example; rule ids (M1..) are those of docs/evidence.md.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE_BYTES,
    CompactRange,
    HashPlan,
    LeafHashes,
    ProofError,
    SubtreeNode,
    compact_range_keys,
    consistency_plan,
    consistency_proof,
    inclusion_path_length,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_plan,
    verify_consistency,
    verify_inclusion,
)

LEAF_INPUTS = [bytes.fromhex(value) for value in [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]]  # fmt: skip
ROOTS_BY_SIZE = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
LEAF_HASHES = [bytes.fromhex(value) for value in NODE_HASHES[0]]
TREE = LeafHashes(LEAF_HASHES)


def node(prefix: str) -> bytes:
    """The one node hash of the 8-leaf tree (any level) whose hex starts with ``prefix``."""
    matches = {value for level in NODE_HASHES for value in level if value.startswith(prefix)}
    assert len(matches) == 1, prefix
    return bytes.fromhex(matches.pop())


def random_hashes(count: int) -> list[bytes]:
    return [os.urandom(HASH_SIZE_BYTES) for _ in range(count)]


def flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


# Independent implementations of the RFC 6962 definitions, by list slicing.


def rfc_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*rfc_path(index, leaves[:split]), root(leaves[split:])]
    return [*rfc_path(index - split, leaves[split:]), root(leaves[:split])]


def rfc_subproof(first: int, leaves: Sequence[bytes], known: bool) -> list[bytes]:
    if first == len(leaves):
        return [] if known else [root(leaves)]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if first <= split:
        return [*rfc_subproof(first, leaves[:split], known), root(leaves[split:])]
    return [*rfc_subproof(first - split, leaves[split:], False), root(leaves[:split])]


# M1, M2: hashing and roots.


def test_leaf_and_node_hashes_match_the_rfc_6962_hasher_vectors() -> None:
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_the_empty_tree_has_the_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex() == ROOTS_BY_SIZE[0]


@pytest.mark.parametrize("size", range(9))
def test_roots_of_the_reference_tree_by_size(size: int) -> None:
    leaf_hashes = [leaf_hash(value) for value in LEAF_INPUTS[:size]]
    assert root(leaf_hashes).hex() == ROOTS_BY_SIZE[size]


def test_the_perfect_subtrees_of_the_reference_tree() -> None:
    assert [leaf_hash(value) for value in LEAF_INPUTS] == LEAF_HASHES
    for level, hashes in enumerate(NODE_HASHES):
        for node_index, expected in enumerate(hashes):
            assert TREE.perfect(level, node_index).hex() == expected


# M4, M5: incremental roots.


def test_a_compact_range_gives_the_root_after_every_append_and_emits_every_node() -> None:
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    emitted: list[SubtreeNode] = []
    for size, value in enumerate(LEAF_HASHES, start=1):
        emitted += compact.append(value)
        assert compact.size == size
        assert compact.root().hex() == ROOTS_BY_SIZE[size]
    expected = [
        (level, node_index, bytes.fromhex(value))
        for level in range(1, 4)
        for node_index, value in enumerate(NODE_HASHES[level])
    ]
    assert sorted(emitted) == sorted(expected)


def test_a_compact_range_holds_one_hash_per_set_bit_of_its_size() -> None:
    compact = CompactRange()
    for value in LEAF_HASHES[:7]:
        compact.append(value)
    assert compact_range_keys(7) == [(2, 0), (1, 2), (0, 6)]
    assert compact.hashes == (node("d37ee418"), node("0ebc5d34"), node("b08693ec"))
    stored = {(2, 0): node("d37ee418"), (1, 2): node("0ebc5d34"), (0, 6): node("b08693ec")}
    assert CompactRange.from_subtrees(7, stored).root() == compact.root()


@pytest.mark.parametrize(
    ("size", "hashes", "message"),
    [
        (-1, [], "zero or more"),
        (3, [bytes(32)], "holds 2 hashes, not 1"),
        (1, [bytes(31)], "32 bytes"),
    ],
)
def test_a_malformed_compact_range_is_refused(size: int, hashes: list[bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompactRange(size, hashes)


def test_a_compact_range_refuses_a_leaf_hash_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append(b"short")


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.data())
def test_incremental_roots_equal_recursive_roots_and_resume_anywhere(
    size: int, data: st.DataObject
) -> None:
    leaf_hashes = random_hashes(size)
    resume_at = data.draw(st.integers(min_value=0, max_value=size))
    uninterrupted = CompactRange()
    nodes = [node for value in leaf_hashes for node in uninterrupted.append(value)]
    assert uninterrupted.root() == root(leaf_hashes)

    first = CompactRange()
    resumed_nodes = [node for value in leaf_hashes[:resume_at] for node in first.append(value)]
    resumed = CompactRange(first.size, list(first.hashes))
    resumed_nodes += [node for value in leaf_hashes[resume_at:] for node in resumed.append(value)]
    assert resumed_nodes == nodes
    assert resumed.root() == uninterrupted.root()
    assert resumed.hashes == uninterrupted.hashes

    tree = LeafHashes(leaf_hashes)
    assert all(tree.perfect(level, index) == value for level, index, value in nodes)
    assert len(nodes) == size - size.bit_count()  # every perfect node of level >= 1, once
    stored = {(level, index): value for level, index, value in nodes}
    stored.update({(0, index): value for index, value in enumerate(leaf_hashes)})
    assert CompactRange.from_subtrees(size, stored).hashes == uninterrupted.hashes
    assert root_plan(size).assemble(stored) == ([root(leaf_hashes)] if size else [])


# M7, M8: inclusion proofs.

INCLUSION_VECTORS = [
    (0, 1, []),
    (0, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (5, 8, ["bc1a0643", "ca854ea1", "d37ee418"]),
    (2, 3, ["fac54203"]),
    (1, 5, ["6e340b9c", "5f083f0a", "bc1a0643"]),
]


@pytest.mark.parametrize(("leaf_index", "tree_size", "expected"), INCLUSION_VECTORS)
def test_published_inclusion_proofs(leaf_index: int, tree_size: int, expected: list[str]) -> None:
    proof = inclusion_proof(leaf_index, tree_size, LeafHashes(LEAF_HASHES[:tree_size]))
    assert proof == [node(prefix) for prefix in expected]
    root_hash = bytes.fromhex(ROOTS_BY_SIZE[tree_size])
    verify_inclusion(leaf_index, tree_size, LEAF_HASHES[leaf_index], proof, root_hash)


CONSISTENCY_VECTORS = [
    (1, 1, []),
    (1, 8, ["96a296d2", "5f083f0a", "6b47aaf2"]),
    (6, 8, ["0ebc5d34", "ca854ea1", "d37ee418"]),
    (2, 5, ["5f083f0a", "bc1a0643"]),
    (6, 7, ["0ebc5d34", "b08693ec", "d37ee418"]),
    (5, 8, ["bc1a0643", "4271a26b", "ca854ea1", "d37ee418"]),  # derived, not published
    (4, 8, ["6b47aaf2"]),  # derived
]


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY_VECTORS)
def test_published_consistency_proofs(first: int, second: int, expected: list[str]) -> None:
    proof = consistency_proof(first, second, LeafHashes(LEAF_HASHES[:second]))
    assert proof == [node(prefix) for prefix in expected]
    first_root, second_root = (bytes.fromhex(ROOTS_BY_SIZE[size]) for size in (first, second))
    verify_consistency(first, second, first_root, second_root, proof)


def test_the_derived_consistency_proof_from_3_to_7() -> None:
    proof = consistency_proof(3, 7, LeafHashes(LEAF_HASHES[:7]))
    assert proof == [
        node("0298d122"),
        node("07506a85"),
        node("fac54203"),
        bytes.fromhex("837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e"),
    ]
    verify_consistency(
        3, 7, bytes.fromhex(ROOTS_BY_SIZE[3]), bytes.fromhex(ROOTS_BY_SIZE[7]), proof
    )


def test_the_worked_example_of_rfc_9162() -> None:
    """RFC 9162 §2.1.5: seven leaves d0..d6 under nodes a..l."""
    a, b, c, d, e, f, j = LEAF_HASHES[:7]
    g, h, i = node_hash(a, b), node_hash(c, d), node_hash(e, f)
    k, l = node_hash(g, h), node_hash(i, j)  # noqa: E741 (the RFC's names)
    tree = LeafHashes(LEAF_HASHES[:7])
    assert root(LEAF_HASHES[:7]) == node_hash(k, l)
    assert inclusion_proof(0, 7, tree) == [b, h, l]
    assert inclusion_proof(3, 7, tree) == [c, g, l]
    assert inclusion_proof(4, 7, tree) == [f, j, k]
    assert inclusion_proof(6, 7, tree) == [i, k]
    assert consistency_proof(3, 7, tree) == [c, d, g, l]
    assert consistency_proof(4, 7, tree) == [l]
    assert consistency_proof(6, 7, tree) == [i, j, k]


def test_generated_proofs_equal_the_rfc_definitions_for_every_tree_up_to_64_leaves() -> None:
    for size in range(1, 65):
        leaf_hashes = random_hashes(size)
        tree = LeafHashes(leaf_hashes)
        for index in range(size):
            proof = inclusion_proof(index, size, tree)
            assert proof == rfc_path(index, leaf_hashes)
            assert len(proof) == inclusion_path_length(index, size)
        for first in range(1, size):
            assert consistency_proof(first, size, tree) == rfc_subproof(first, leaf_hashes, True)


def test_a_proof_needs_few_subtree_lookups_and_one_batch() -> None:
    size = 1_000_003
    for plan in [inclusion_plan(123_456, size), consistency_plan(654_321, size), root_plan(size)]:
        assert len(plan.keys()) <= 2 * size.bit_length()
    plan = HashPlan(((0, 8), (4, 6)))
    assert plan.keys() == [(3, 0), (1, 2)]
    assert plan.assemble({(3, 0): node("5dc9da79"), (1, 2): node("0ebc5d34")}) == [
        node("5dc9da79"),
        node("0ebc5d34"),
    ]


@pytest.mark.parametrize(("leaf_index", "tree_size"), [(0, 0), (3, 3), (-1, 4)])
def test_no_inclusion_plan_for_a_leaf_outside_the_tree(leaf_index: int, tree_size: int) -> None:
    with pytest.raises(ValueError, match="is not in a tree"):
        inclusion_plan(leaf_index, tree_size)


@pytest.mark.parametrize(("first", "second"), [(5, 4), (-1, 3)])
def test_no_consistency_plan_for_a_shrinking_tree(first: int, second: int) -> None:
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_plan(first, second)


def test_equal_sizes_and_the_empty_tree_have_empty_consistency_plans() -> None:
    assert consistency_plan(0, 9).ranges == ()
    assert consistency_plan(9, 9).ranges == ()
    assert root_plan(0).ranges == ()


# M8: inclusion checks refuse every malformed or altered proof.


def inclusion_case(size: int, index: int) -> tuple[list[bytes], list[bytes], bytes]:
    leaf_hashes = random_hashes(size)
    return leaf_hashes, inclusion_proof(index, size, LeafHashes(leaf_hashes)), root(leaf_hashes)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((8, 8, LEAF_HASHES[0], [], bytes.fromhex(ROOTS_BY_SIZE[8])), "outside a tree"),
        ((0, 0, LEAF_HASHES[0], [], EMPTY_ROOT), "outside a tree"),
        ((-1, 8, LEAF_HASHES[0], [], EMPTY_ROOT), "outside a tree"),
        ((0, 1, LEAF_HASHES[0][:31], [], LEAF_HASHES[0]), "leaf hash is 31 bytes"),
        ((0, 1, LEAF_HASHES[0], [], LEAF_HASHES[0] + b"\x00"), "root hash is 33 bytes"),
        ((0, 2, LEAF_HASHES[0], [b"x" * 31], EMPTY_ROOT), "path hash 0 is 31 bytes"),
        ((0, 1, LEAF_HASHES[0], [LEAF_HASHES[1]], LEAF_HASHES[0]), "holds 1 hashes"),
        ((0, 1, LEAF_HASHES[0], [], LEAF_HASHES[1]), "does not lead to the root"),
    ],
)
def test_inclusion_edge_cases_are_refused(
    arguments: tuple[int, int, bytes, list[bytes], bytes], message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(*arguments)


def test_a_tree_of_one_leaf_proves_its_leaf_with_the_empty_path() -> None:
    verify_inclusion(0, 1, LEAF_HASHES[0], [], LEAF_HASHES[0])


def inclusion_variants(
    leaf_hashes: list[bytes], index: int, proof: list[bytes], root_hash: bytes
) -> list[tuple[str, Callable[[], None]]]:
    """Altered forms of a good inclusion proof, each of which must be refused."""
    size = len(leaf_hashes)
    leaf = leaf_hashes[index]

    def check(
        leaf_index: int, tree_size: int, hashed: bytes, path: list[bytes], root_hash: bytes
    ) -> Callable[[], None]:
        return lambda: verify_inclusion(leaf_index, tree_size, hashed, path, root_hash)

    variants = [
        ("extended", check(index, size, leaf, [*proof, leaf], root_hash)),
        ("other leaf", check(index, size, flip(leaf), proof, root_hash)),
        ("other root", check(index, size, leaf, proof, flip(root_hash))),
        ("grown tree", check(index, size + 1, leaf, proof, root([*leaf_hashes, leaf]))),
    ]
    if proof:
        variants.append(("truncated", check(index, size, leaf, proof[:-1], root_hash)))
        variants.append(
            ("shrunk tree", check(index, size - 1, leaf, proof, root(leaf_hashes[:-1])))
        )
    if len(proof) > 1:
        variants.append(("reversed", check(index, size, leaf, proof[::-1], root_hash)))
    for position in range(len(proof)):
        altered = list(proof)
        altered[position] = flip(altered[position])
        variants.append((f"altered {position}", check(index, size, leaf, altered, root_hash)))
    for other in (index - 1, index + 1):
        if 0 <= other < size:
            variants.append((f"index {other}", check(other, size, leaf, proof, root_hash)))
    return variants


def test_every_inclusion_proof_verifies_and_every_altered_one_fails_up_to_64_leaves() -> None:
    for size in range(1, 65):
        for index in range(size):
            leaf_hashes, proof, root_hash = inclusion_case(size, index)
            verify_inclusion(index, size, leaf_hashes[index], proof, root_hash)
            for name, variant in inclusion_variants(leaf_hashes, index, proof, root_hash):
                with pytest.raises(ProofError):
                    variant()
                    pytest.fail(f"{name} passed for leaf {index} of {size}")


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=65, max_value=400), st.data())
def test_inclusion_proofs_of_larger_trees(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    leaf_hashes, proof, root_hash = inclusion_case(size, index)
    verify_inclusion(index, size, leaf_hashes[index], proof, root_hash)
    for _name, variant in inclusion_variants(leaf_hashes, index, proof, root_hash):
        with pytest.raises(ProofError):
            variant()


def test_a_proof_of_the_right_length_never_trips_the_rfc_length_invariants() -> None:
    """The RFC's in-loop length checks are assertions here: the length check covers them."""
    for size, index in itertools.product(range(1, 65), range(64)):
        if index < size:
            proof = random_hashes(inclusion_path_length(index, size))
            with pytest.raises(ProofError, match="does not lead"):
                verify_inclusion(index, size, random_hashes(1)[0], proof, EMPTY_ROOT)
    for first, second in itertools.combinations(range(1, 65), 2):
        proof = random_hashes(len(consistency_plan(first, second).ranges))
        with pytest.raises(ProofError, match="does not lead"):
            verify_consistency(first, second, EMPTY_ROOT, EMPTY_ROOT, proof)


# M10, M11: consistency checks.


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((5, 4, EMPTY_ROOT, EMPTY_ROOT, []), "cannot grow"),
        ((-1, 4, EMPTY_ROOT, EMPTY_ROOT, []), "cannot grow"),
        ((1, 2, EMPTY_ROOT[:31], EMPTY_ROOT, [EMPTY_ROOT]), "first root is 31 bytes"),
        ((1, 2, EMPTY_ROOT, EMPTY_ROOT * 2, [EMPTY_ROOT]), "second root is 64 bytes"),
        ((1, 2, EMPTY_ROOT, EMPTY_ROOT, [b""]), "proof hash 0 is 0 bytes"),
        ((3, 3, LEAF_HASHES[0], LEAF_HASHES[0], [LEAF_HASHES[1]]), "must be empty"),
        ((3, 3, LEAF_HASHES[0], LEAF_HASHES[1], []), "two different roots"),
        ((0, 3, EMPTY_ROOT, LEAF_HASHES[1], [LEAF_HASHES[1]]), "must be empty"),
        ((0, 3, LEAF_HASHES[0], LEAF_HASHES[1], []), "not the root of the empty tree"),
        ((2, 5, LEAF_HASHES[0], LEAF_HASHES[1], []), "holds 0 hashes"),
    ],
)
def test_consistency_edge_cases_are_refused(
    arguments: tuple[int, int, bytes, bytes, list[bytes]], message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(*arguments)


def test_equal_sizes_and_the_empty_tree_are_consistent_without_a_proof() -> None:
    verify_consistency(3, 3, LEAF_HASHES[0], LEAF_HASHES[0], [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 8, EMPTY_ROOT, bytes.fromhex(ROOTS_BY_SIZE[8]), [])


def consistency_variants(
    leaf_hashes: list[bytes], first: int, proof: list[bytes]
) -> list[tuple[str, Callable[[], None]]]:
    """Altered forms of a good consistency proof, each of which must be refused."""
    second = len(leaf_hashes)
    first_root, second_root = root(leaf_hashes[:first]), root(leaf_hashes)

    def check(first_size: int, second_size: int, elements: list[bytes]) -> Callable[[], None]:
        roots = root(leaf_hashes[:first_size]), root((leaf_hashes + leaf_hashes)[:second_size])
        return lambda: verify_consistency(first_size, second_size, *roots, elements)

    def verify(first_root: bytes, second_root: bytes) -> Callable[[], None]:
        return lambda: verify_consistency(first, second, first_root, second_root, proof)

    variants = [
        ("truncated", check(first, second, proof[:-1])),
        ("extended", check(first, second, [*proof, first_root])),
        ("first size - 1", check(first - 1, second, proof)),
        ("first size + 1", check(first + 1, second, proof)),
        ("second size - 1", check(first, second - 1, proof)),
        ("second size + 1", check(first, second + 1, proof)),
        ("swapped roots", verify(second_root, first_root)),
        ("other first root", verify(flip(first_root), second_root)),
        ("other second root", verify(first_root, flip(second_root))),
    ]
    for position in range(len(proof)):
        altered = list(proof)
        altered[position] = flip(altered[position])
        variants.append((f"altered {position}", check(first, second, altered)))
    return variants


def test_every_consistency_proof_verifies_and_every_altered_one_fails_up_to_64_leaves() -> None:
    for second in range(2, 65):
        leaf_hashes = random_hashes(second)
        tree = LeafHashes(leaf_hashes)
        for first in range(1, second):
            proof = consistency_proof(first, second, tree)
            verify_consistency(first, second, root(leaf_hashes[:first]), root(leaf_hashes), proof)
            for name, variant in consistency_variants(leaf_hashes, first, proof):
                with pytest.raises(ProofError):
                    variant()
                    pytest.fail(f"{name} passed for {first} -> {second}")


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=65, max_value=400), st.data())
def test_consistency_proofs_of_larger_trees(second: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(min_value=1, max_value=second - 1))
    leaf_hashes = random_hashes(second)
    proof = consistency_proof(first, second, LeafHashes(leaf_hashes))
    verify_consistency(first, second, root(leaf_hashes[:first]), root(leaf_hashes), proof)
    for _name, variant in consistency_variants(leaf_hashes, first, proof):
        with pytest.raises(ProofError):
            variant()
