"""GetRandomPassword: a random password from the character types a request allows.

Rules PW-1 to PW-7 in docs/api.md. Characters are drawn with `secrets` (the
operating system's CSPRNG), each uniformly from its alphabet; when every included
type is required, one character of each required type is drawn first and the whole
password is then shuffled with `secrets.SystemRandom`, so the required characters
sit at uniformly random positions. The password is a secret value: it is returned
to the caller and nowhere else (no event, record, log line or error holds it).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.errors import InvalidParameterException

PASSWORD_LENGTH_DEFAULT = 32
PASSWORD_LENGTH_MAX = 4096
LOWERCASE = string.ascii_lowercase
UPPERCASE = string.ascii_uppercase
DIGITS = string.digits
PUNCTUATION = string.punctuation  # the 32 ASCII punctuation characters (PW-2)
SPACE = " "
NOTHING_TO_DRAW_MESSAGE = (
    "The password can't be generated: the request excludes every character type "
    "(lowercase, uppercase, numbers, punctuation)."
)

assert len(PUNCTUATION) == 32, "AWS's punctuation set"


@dataclass(frozen=True)
class PasswordRules:
    """GetRandomPassword's members, with AWS's defaults (PW-1)."""

    length: int = PASSWORD_LENGTH_DEFAULT
    exclude_characters: str = ""
    exclude_numbers: bool = False
    exclude_punctuation: bool = False
    exclude_uppercase: bool = False
    exclude_lowercase: bool = False
    include_space: bool = False
    require_each_included_type: bool = True

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> PasswordRules:
        """From a request already checked against the model (types and bounds)."""

        def flag(member: str, default: bool) -> bool:
            value = request.get(member)
            return default if value is None else bool(value)

        length = request.get("PasswordLength")
        return cls(
            length=PASSWORD_LENGTH_DEFAULT if length is None else int(length),
            exclude_characters=request.get("ExcludeCharacters") or "",
            exclude_numbers=flag("ExcludeNumbers", False),
            exclude_punctuation=flag("ExcludePunctuation", False),
            exclude_uppercase=flag("ExcludeUppercase", False),
            exclude_lowercase=flag("ExcludeLowercase", False),
            include_space=flag("IncludeSpace", False),
            require_each_included_type=flag("RequireEachIncludedType", True),
        )

    def character_types(self) -> list[str]:
        """PW-3: the alphabet of each included type, less ExcludeCharacters; a type
        that ExcludeCharacters empties is excluded. The space is not a type (PW-4)."""
        types = [
            (LOWERCASE, self.exclude_lowercase),
            (UPPERCASE, self.exclude_uppercase),
            (DIGITS, self.exclude_numbers),
            (PUNCTUATION, self.exclude_punctuation),
        ]
        alphabets = [self.allowed(chars) for chars, excluded in types if not excluded]
        return [alphabet for alphabet in alphabets if alphabet]

    def allowed(self, characters: str) -> str:
        """``characters`` less those in ExcludeCharacters."""
        return "".join(char for char in characters if char not in self.exclude_characters)


def random_password(rules: PasswordRules) -> str:
    """A password of exactly ``rules.length`` characters (PW-1 to PW-7)."""
    assert 1 <= rules.length <= PASSWORD_LENGTH_MAX, "the model bounds PasswordLength"
    types = rules.character_types()
    if not types:
        raise InvalidParameterException(NOTHING_TO_DRAW_MESSAGE)
    alphabet = "".join(types)
    if rules.include_space:
        alphabet += rules.allowed(SPACE)
    required = types if rules.require_each_included_type else []
    if rules.length < len(required):
        raise InvalidParameterException(
            f"PasswordLength {rules.length} is too short to include a character of each "
            f"of the {len(required)} required character types."
        )
    characters = [secrets.choice(chars) for chars in required]
    characters += [secrets.choice(alphabet) for _ in range(rules.length - len(required))]
    secrets.SystemRandom().shuffle(characters)
    password = "".join(characters)
    assert len(password) == rules.length, "exactly the requested length"
    return password
