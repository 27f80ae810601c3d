"""Tags of a secret: AWS's limits, and how a tag request changes a secret's tags.

Tags are metadata, never secret values: events, audit records and errors state
them in clear (keys are bounded to 128 characters, values to 256, by the service
model). The rules (TG-1 to TG-7) are in docs/policies.md.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from ledger.errors import InvalidParameterException

TAGS_PER_SECRET_MAX = 50
SYSTEM_TAG_PREFIX = "aws:"
TAG_PUNCTUATION = frozenset("_.:/=+-@")
# Unicode general categories allowed in tag keys and values (TG-3): letters,
# numbers and separators (space).
TAG_CHARACTER_CATEGORIES = ("L", "N", "Z")

Tag = dict[str, str]


def is_system_tag_key(key: str) -> bool:
    """TG-2: the ``aws:`` prefix is reserved, in any letter case."""
    return key[: len(SYSTEM_TAG_PREFIX)].lower() == SYSTEM_TAG_PREFIX


def is_tag_text(text: str) -> bool:
    """TG-3: letters, numbers and spaces of any script, and ``_ . : / = + - @``."""
    return all(
        character in TAG_PUNCTUATION
        or unicodedata.category(character)[0] in TAG_CHARACTER_CATEGORIES
        for character in text
    )


def checked_tags(tags: Iterable[Mapping[str, str | None]]) -> list[Tag]:
    """The tags of a request (CreateSecret, TagResource) as ``{"Key", "Value"}`` pairs in
    request order; InvalidParameterException for a missing key (TG-1), a system key
    (TG-2), a character not allowed (TG-3) or a key given twice (TG-4). A tag without
    ``Value`` has the empty value (TG-1). Lengths are the service model's (checked
    before this)."""
    checked: list[Tag] = []
    seen: set[str] = set()
    for tag in tags:
        key = tag.get("Key")
        if key is None:
            raise InvalidParameterException("Each tag needs a Key.")
        value = tag.get("Value") or ""
        if is_system_tag_key(key):
            raise InvalidParameterException(f"You can't modify system tags. Tag key: '{key}'.")
        if not is_tag_text(key):
            raise InvalidParameterException(
                "Tag keys can contain only Unicode letters, numbers, spaces and "
                f"_ . : / = + - @. Tag key: '{key}'."
            )
        if not is_tag_text(value):
            raise InvalidParameterException(
                "Tag values can contain only Unicode letters, numbers, spaces and "
                f"_ . : / = + - @. Tag key: '{key}'."
            )
        if key in seen:
            raise InvalidParameterException(
                f"A request can name each tag key once. Tag key: '{key}' appears twice."
            )
        seen.add(key)
        checked.append({"Key": key, "Value": value})
    return checked


def checked_tag_keys(tag_keys: Iterable[str]) -> list[str]:
    """The keys of an UntagResource request, each once, in request order;
    InvalidParameterException for a system key (TG-2)."""
    for key in tag_keys:
        if is_system_tag_key(key):
            raise InvalidParameterException(f"You can't modify system tags. Tag key: '{key}'.")
    return list(dict.fromkeys(tag_keys))


def changed_tags(current: Sequence[Mapping[str, str]], requested: Sequence[Tag]) -> list[Tag]:
    """TG-5: the requested tags that are new or carry a new value (what ``Tagged``
    states); InvalidParameterException when the secret would hold more than 50 tags."""
    values = tag_values(current)
    changed = [tag for tag in requested if values.get(tag["Key"]) != tag["Value"]]
    count = len(values.keys() | {tag["Key"] for tag in requested})
    require_tag_count(count)
    return changed


def require_tag_count(count: int) -> None:
    if count > TAGS_PER_SECRET_MAX:
        raise InvalidParameterException(
            f"A secret can have at most {TAGS_PER_SECRET_MAX} tags; this request would "
            f"leave it with {count}."
        )


def tags_after(
    current: Sequence[Mapping[str, str]], changes: Sequence[Mapping[str, str]]
) -> list[Tag]:
    """TG-6: a changed key keeps its place with its new value; new keys come last, in
    the order given."""
    updated = tag_values(current)
    updated.update((tag["Key"], tag["Value"]) for tag in changes)
    return [{"Key": key, "Value": value} for key, value in updated.items()]


def tags_without(current: Sequence[Mapping[str, str]], tag_keys: Iterable[str]) -> list[Tag]:
    removed = set(tag_keys)
    return [dict(tag) for tag in current if tag.get("Key") not in removed]


def tag_values(tags: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Key -> value. Tags stored before TG-1 may lack a ``Value`` (the model allows
    it): read as the empty value."""
    return {tag.get("Key", ""): tag.get("Value", "") for tag in tags}
