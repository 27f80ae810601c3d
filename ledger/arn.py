"""Secret ARNs: the one parser and builder of the project (write and read sides).

A secret's ARN is ``arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>``,
the suffix six random letters or digits (rule ARN-1 in docs/events.md). A
*complete* resource ends in ``-`` plus six such characters; a *partial* ARN has no
suffix and names the secret by name. Because a name may itself end in something
that looks like a suffix, completeness is a property of the text only: callers
that hold a stored ARN know it is complete.

Pure string handling: no crypto, no I/O, so the domain, the application and the
projections all use it.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Final

ARN_SUFFIX_LENGTH: Final = 6
ARN_SUFFIX_ALPHABET: Final = frozenset(string.ascii_letters + string.digits)
ARN_PART_COUNT: Final = 7
PARTITION: Final = "aws"
SERVICE: Final = "secretsmanager"
RESOURCE_TYPE: Final = "secret"


def is_complete_resource(resource: str) -> bool:
    """A resource ending in '-' plus six letters or digits (ARN-1)."""
    if len(resource) < ARN_SUFFIX_LENGTH + 2 or resource[-(ARN_SUFFIX_LENGTH + 1)] != "-":
        return False
    return all(character in ARN_SUFFIX_ALPHABET for character in resource[-ARN_SUFFIX_LENGTH:])


def name_of_resource(resource: str) -> str:
    """A secret's name: the resource without its suffix, if it has one."""
    if is_complete_resource(resource):
        return resource[: -(ARN_SUFFIX_LENGTH + 1)]
    return resource


@dataclass(frozen=True)
class SecretArn:
    """A parsed Secrets Manager secret ARN, complete or partial."""

    region: str
    account_id: str
    resource: str

    @property
    def is_complete(self) -> bool:
        return is_complete_resource(self.resource)

    @property
    def name(self) -> str:
        return name_of_resource(self.resource)

    @property
    def prefix(self) -> str:
        """Everything before the resource: ``arn:aws:secretsmanager:<region>:<account>:secret:``."""
        return f"arn:{PARTITION}:{SERVICE}:{self.region}:{self.account_id}:{RESOURCE_TYPE}:"

    def __str__(self) -> str:
        return self.prefix + self.resource


def parse_secret_arn(text: str) -> SecretArn | None:
    """The parts of a secret ARN, or None if ``text`` is not one."""
    parts = text.split(":", ARN_PART_COUNT - 1)
    if len(parts) != ARN_PART_COUNT or parts[0] != "arn":
        return None
    if parts[1] != PARTITION or parts[2] != SERVICE or parts[5] != RESOURCE_TYPE:
        return None
    return SecretArn(region=parts[3], account_id=parts[4], resource=parts[6])


def resource_of_arn_text(text: str) -> str:
    """What follows the sixth colon of ARN-shaped text (else after its last colon): the
    resource a caller meant, even in an ARN that names no secret of this ledger."""
    return text.split(":", ARN_PART_COUNT - 1)[-1]


def secret_arn(*, region: str, account_id: str, name: str, suffix: str) -> str:
    """The complete ARN of a new secret."""
    assert len(suffix) == ARN_SUFFIX_LENGTH, "an ARN suffix has six characters"
    assert set(suffix) <= ARN_SUFFIX_ALPHABET, "an ARN suffix is letters and digits"
    return str(SecretArn(region=region, account_id=account_id, resource=f"{name}-{suffix}"))


def name_of_secret_arn(arn: str) -> str:
    """The name inside a stored (hence complete) secret ARN."""
    parsed = parse_secret_arn(arn)
    assert parsed is not None, "a stored secret ARN parses"
    assert parsed.is_complete, "a stored secret ARN ends in its random suffix"
    return parsed.name


LAMBDA_FUNCTION_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def lambda_function_arn(region: str, account_id: str, name: str) -> str:
    """ARN-2: the ARN of Lambda function ``name``."""
    assert LAMBDA_FUNCTION_NAME_PATTERN.fullmatch(name), "a Lambda function name"
    return f"arn:{PARTITION}:lambda:{region}:{account_id}:function:{name}"


def lambda_function_name(arn: str, region: str, account_id: str) -> str | None:
    """ARN-2: the function an ``arn:aws:lambda:<region>:<account>:function:<name>``
    ARN names (a ``:<qualifier>`` after the name is ignored), when it is in the given
    region and account; otherwise None."""
    parts = arn.split(":")
    if len(parts) not in (7, 8) or parts[:3] != ["arn", PARTITION, "lambda"]:
        return None
    if (parts[3], parts[4], parts[5]) != (region, account_id, "function"):
        return None
    return parts[6] if LAMBDA_FUNCTION_NAME_PATTERN.fullmatch(parts[6]) else None
