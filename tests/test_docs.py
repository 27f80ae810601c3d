"""The rules the code and the tests cite are stated in docs/, so that a reader of the
repository alone can follow every citation: each rule id (P1, T8, U14, R5, AZ-10,
RO-3...) is defined somewhere in docs/ (a bold ``**ID`` that opens its statement),
and each section a comment cites (``§7``, ``docs/audit.md §2.2``, ``§14 #12``)
exists in the document it names (docs/semantics.md when it names none)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCE_DIRECTORIES = ("ledger", "projections", "tests", "tools")

RULE_ID = re.compile(r"(?<![\w-])([A-Z]{1,4}-\d{1,2}|[A-Z]\d{1,2})(?![\w-])")
DEFINED_RULE_ID = re.compile(r"\*\*([A-Z]{1,4}-?\d{1,2})\b")
NOT_RULES = frozenset({"UTF-8", "UTF-16", "UTF-32"})  # encodings, cited by name
# "§2.2", "docs/audit.md §2.2", "§14 #12"; an RFC's sections are the RFC's.
SECTION = re.compile(r"(?<!RFC )(?<!RFC \d{4} )(?:docs/(\w+)\.md )?§(\d+(?:\.\d+)*)(?: #(\d+))?")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
OPEN_POINT_ROW = re.compile(r"^\| (\d+) \|", re.MULTILINE)


def sources() -> list[Path]:
    return sorted(
        path
        for directory in SOURCE_DIRECTORIES
        for path in (ROOT / directory).rglob("*.py")
        if path.name != Path(__file__).name
    )


def defined_rule_ids() -> set[str]:
    return {
        rule_id
        for document in DOCS.glob("*.md")
        for rule_id in DEFINED_RULE_ID.findall(document.read_text(encoding="utf-8"))
    }


def cited_rule_ids() -> dict[str, set[str]]:
    cited: dict[str, set[str]] = {}
    for path in sources():
        for rule_id in RULE_ID.findall(path.read_text(encoding="utf-8")):
            cited.setdefault(rule_id, set()).add(str(path.relative_to(ROOT)))
    return cited


def sections_of(document: str) -> set[str]:
    return set(HEADING.findall((DOCS / f"{document}.md").read_text(encoding="utf-8")))


def open_points() -> set[str]:
    """The rows of decisions.md's first table, which "§14 #n" cites."""
    text = (DOCS / "decisions.md").read_text(encoding="utf-8")
    first_table = text.split("\n## ", 2)[1]
    return set(OPEN_POINT_ROW.findall(first_table))


def test_every_cited_rule_is_stated_in_docs() -> None:
    defined = defined_rule_ids()
    undefined = {
        rule_id: sorted(paths)
        for rule_id, paths in cited_rule_ids().items()
        if rule_id not in defined and rule_id not in NOT_RULES
    }
    assert undefined == {}


def test_the_rule_families_of_the_semantics_are_all_stated() -> None:
    defined = defined_rule_ids()
    families = {"P": 9, "T": 10, "U": 14}
    for prefix, count in families.items():
        assert {f"{prefix}{n}" for n in range(1, count + 1)} <= defined, prefix


def test_every_cited_section_exists() -> None:
    documents: dict[str, set[str]] = {}
    points = open_points()
    missing = []
    for path in sources():
        for document, section, point in SECTION.findall(path.read_text(encoding="utf-8")):
            name = document or "semantics"
            if name not in documents:
                documents[name] = sections_of(name)
            if section not in documents[name]:
                missing.append(f"{path.relative_to(ROOT)}: {name}.md §{section}")
            if point and (name, section) == ("semantics", "14") and point not in points:
                missing.append(f"{path.relative_to(ROOT)}: §14 #{point}")
    assert missing == []


@pytest.mark.parametrize(
    ("text", "cited"),
    [
        ("rule §2.5 and docs/audit.md §2.2", [("", "2.5", ""), ("audit", "2.2", "")]),
        ("OPEN (§14 #12)", [("", "14", "12")]),
        ("RFC 9162 §2.1.3.2 step 2", []),
    ],
)
def test_section_citations_are_read_as_written(
    text: str, cited: list[tuple[str, str, str]]
) -> None:
    assert SECTION.findall(text) == cited


def test_no_document_points_outside_the_repository() -> None:
    """The references the rules were written from are not shipped: nothing may
    send a reader to them."""
    texts = [path.read_text(encoding="utf-8") for path in sources()]
    texts += [document.read_text(encoding="utf-8") for document in DOCS.glob("*.md")]
    texts.append((ROOT / "README.md").read_text(encoding="utf-8"))
    outside = re.compile(
        r"shared/reference|\w+-records\.md|secretsmanager-semantics|"
        r"rotation-policies-api|transparency-log\.md"
    )
    assert [match.group(0) for text in texts for match in outside.finditer(text)] == []
