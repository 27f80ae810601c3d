"""GetRandomPassword (docs/api.md PW-1 to PW-7): every member, AWS's defaults and
bounds, the refusals, and properties of every constraint over random requests."""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_helpers import Harness

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.crypto import Keyring
from ledger.domain import ApiCall
from ledger.errors import InvalidParameterException, SecretsManagerError
from ledger.passwords import PASSWORD_LENGTH_MAX, PUNCTUATION, PasswordRules, random_password

TYPES = {
    "ExcludeLowercase": string.ascii_lowercase,
    "ExcludeUppercase": string.ascii_uppercase,
    "ExcludeNumbers": string.digits,
    "ExcludePunctuation": PUNCTUATION,
}
PRINTABLE = string.ascii_letters + string.digits + PUNCTUATION + " "
PASSWORDS_FOR_UNIFORMITY = 5
SIGMAS_ALLOWED = 6


@pytest.fixture(scope="module")
def api() -> Iterator[SecretsManagerApi]:
    secrets = Secrets("memory:", keyring=Keyring.in_memory())
    yield SecretsManagerApi(secrets, record_calls=False)
    secrets.close()


def password_of(api: SecretsManagerApi, **members: Any) -> str:
    password = api.call("GetRandomPassword", members)["RandomPassword"]
    assert isinstance(password, str)
    return password


def test_the_defaults_are_32_characters_of_all_four_types(api: SecretsManagerApi) -> None:
    for _ in range(50):
        password = password_of(api)
        assert len(password) == 32
        assert " " not in password
        for characters in TYPES.values():
            assert set(password) & set(characters), characters


def test_the_punctuation_set_is_the_32_ascii_punctuation_characters() -> None:
    assert PUNCTUATION == "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def test_aws_recorded_example_of_excluded_characters(api: SecretsManagerApi) -> None:
    password = password_of(api, PasswordLength=120, ExcludeCharacters="xyzDje@?!.")
    assert len(password) == 120
    assert not set(password) & set("xyzDje@?!.")


@pytest.mark.parametrize(
    ("length", "message"),
    [
        (0, "Member must have value greater than or equal to 1"),
        (4097, "Member must have value less than or equal to 4096"),
    ],
)
def test_a_length_outside_the_model_bounds_is_a_validation_error(
    api: SecretsManagerApi, length: int, message: str
) -> None:
    with pytest.raises(SecretsManagerError) as refused:
        password_of(api, PasswordLength=length)
    assert refused.value.code == "ValidationException"
    assert message in refused.value.message


def test_the_longest_password(api: SecretsManagerApi) -> None:
    assert len(password_of(api, PasswordLength=4096)) == 4096


def test_a_length_too_short_for_the_required_types_is_refused(api: SecretsManagerApi) -> None:
    """PW-6: four required types need four characters; one type needs one."""
    with pytest.raises(InvalidParameterException) as refused:
        password_of(api, PasswordLength=3)
    assert "too short" in refused.value.message
    assert len(password_of(api, PasswordLength=4)) == 4
    assert len(password_of(api, PasswordLength=3, RequireEachIncludedType=False)) == 3
    only_digits = {"ExcludeLowercase": True, "ExcludeUppercase": True, "ExcludePunctuation": True}
    assert password_of(api, PasswordLength=1, **only_digits) in string.digits


@pytest.mark.parametrize(
    "members",
    [
        dict.fromkeys(TYPES, True),
        {**dict.fromkeys(TYPES, True), "IncludeSpace": True},
        {"ExcludeCharacters": string.ascii_letters + string.digits + PUNCTUATION},
        {
            "ExcludeCharacters": string.ascii_letters,
            "ExcludeNumbers": True,
            "ExcludePunctuation": True,
        },
    ],
    ids=["every type", "every type, space included", "every character", "emptied and excluded"],
)
def test_nothing_left_to_draw_from_is_refused(
    api: SecretsManagerApi, members: dict[str, Any]
) -> None:
    """PW-5: the space alone is no password."""
    with pytest.raises(InvalidParameterException) as refused:
        password_of(api, **members)
    assert refused.value.message.startswith("The password can't be generated")


def test_a_type_emptied_by_excluded_characters_is_not_required(api: SecretsManagerApi) -> None:
    """PW-3: ExcludeCharacters removing every digit leaves three required types."""
    password = password_of(api, PasswordLength=3, ExcludeCharacters=string.digits)
    assert len(password) == 3
    assert not set(password) & set(string.digits)


def test_the_space_appears_only_when_included(api: SecretsManagerApi) -> None:
    only_space_and_digits = {
        "ExcludeLowercase": True,
        "ExcludeUppercase": True,
        "ExcludePunctuation": True,
        "IncludeSpace": True,
    }
    password = password_of(api, PasswordLength=400, **only_space_and_digits)
    assert " " in password and set(password) <= set(string.digits + " ")
    assert " " not in password_of(api, PasswordLength=400)


def test_characters_are_drawn_uniformly() -> None:
    """PW-7: each digit's count is within six standard deviations of its mean."""
    rules = PasswordRules(
        length=PASSWORD_LENGTH_MAX,
        exclude_lowercase=True,
        exclude_uppercase=True,
        exclude_punctuation=True,
    )
    counts: Counter[str] = Counter()
    for _ in range(PASSWORDS_FOR_UNIFORMITY):
        counts.update(random_password(rules))
    draws = PASSWORD_LENGTH_MAX * PASSWORDS_FOR_UNIFORMITY
    mean = draws / 10
    deviation = (draws * 0.1 * 0.9) ** 0.5
    assert set(counts) == set(string.digits)
    for digit, count in counts.items():
        assert abs(count - mean) < SIGMAS_ALLOWED * deviation, (digit, count)


def test_required_characters_land_anywhere() -> None:
    """PW-7: with one required digit among letters, the digit's position varies."""
    rules = PasswordRules(length=8, exclude_characters=string.digits[1:], exclude_punctuation=True)
    positions = set()
    for _ in range(400):
        password = random_password(rules)
        positions.add(password.index("0"))
    assert positions == set(range(8))


def test_the_call_is_recorded_without_the_password(manager: Harness) -> None:
    log_before = manager.log_length()
    password = manager.call("GetRandomPassword", PasswordLength=64, ExcludeCharacters="ab")[
        "RandomPassword"
    ]
    [record] = manager.events_since(log_before)
    assert isinstance(record, ApiCall.Recorded)
    assert record.read_only and record.error_code is None and record.resources == []
    assert record.request["parameters"] == {"passwordLength": 64, "excludeCharacters": "ab"}
    assert password not in repr(vars(record))


# Properties of every constraint, over random requests

requests = st.fixed_dictionaries(
    {},
    optional={
        "PasswordLength": st.integers(1, 300),
        "ExcludeCharacters": st.text(alphabet=PRINTABLE, max_size=40),
        "ExcludeNumbers": st.booleans(),
        "ExcludePunctuation": st.booleans(),
        "ExcludeUppercase": st.booleans(),
        "ExcludeLowercase": st.booleans(),
        "IncludeSpace": st.booleans(),
        "RequireEachIncludedType": st.booleans(),
    },
)


def allowed_types(request: dict[str, Any]) -> list[set[str]]:
    """The types a request leaves, each less the excluded characters, emptied ones out."""
    excluded = set(request.get("ExcludeCharacters", ""))
    return [
        set(characters) - excluded
        for member, characters in TYPES.items()
        if not request.get(member) and set(characters) - excluded
    ]


@settings(max_examples=300, deadline=None)
@given(request=requests)
def test_every_password_keeps_every_constraint(
    api: SecretsManagerApi, request: dict[str, Any]
) -> None:
    types = allowed_types(request)
    length = request.get("PasswordLength", 32)
    required = types if request.get("RequireEachIncludedType", True) else []
    try:
        password = password_of(api, **request)
    except InvalidParameterException:
        assert not types or length < len(required)
        return
    assert types and length >= len(required)
    assert len(password) == length
    allowed = set().union(*types)
    if request.get("IncludeSpace") and " " not in request.get("ExcludeCharacters", ""):
        allowed.add(" ")
    assert set(password) <= allowed
    assert not set(password) & set(request.get("ExcludeCharacters", ""))
    for characters in required:
        assert set(password) & characters
