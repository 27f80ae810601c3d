"""Who may do what: IAM-style evaluation of identity and resource policies.

Pure functions of policies (`ledger.policies.Policy`) and of what a request asks
(`Access`): no ledger state, no I/O, no clock. `SecretsManagerApi` builds the
accesses an operation needs (`accesses_for`), asks `decide` for each, and refuses
with `denial_message` when one is denied. Rules AZ-1 to AZ-14 are in
docs/authorization.md.

Evaluation within one account (AZ-2): an explicit ``Deny`` in the caller's identity
policy or in the secret's resource policy wins; otherwise an ``Allow`` in either
grants; otherwise the request is denied. A principal without an identity policy is
an administrator: its policy allows every action on every resource, and only an
explicit ``Deny`` in a resource policy stops it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ledger.policies import (
    IF_EXISTS,
    Condition,
    Policy,
    Scalar,
    Statement,
    check_policy,
)

SERVICE_PREFIX: Final = "secretsmanager:"
IDENTITY: Final = "identity"
RESOURCE: Final = "resource"
ALLOW: Final = "Allow"
DENY: Final = "Deny"
ANY_RESOURCE: Final = "*"
POLICY_NAMES: Final = {IDENTITY: "an identity-based policy", RESOURCE: "a resource-based policy"}
ARN_PART_COUNT: Final = 6
GLOB_CACHE_SIZE: Final = 4096
RESOURCE_POLICY_CACHE_SIZE: Final = 1024

# AZ-6: actions that name no resource: a statement grants them only through "*".
RESOURCELESS_ACTIONS: Final = frozenset({"ListSecrets", "BatchGetSecretValue", "GetRandomPassword"})

Context = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Access:
    """One permission a request needs: ``action`` (``secretsmanager:<Operation>``) on
    ``resource`` (a secret's ARN, an ARN pattern for a secret not yet created, or
    ``*``), with the condition keys of the request in ``context`` (keys lower-case,
    each a tuple of values; a key without values is absent). ``named_resource`` is
    the resource as the caller named it, for the message (None: resource-less)."""

    principal_arn: str
    action: str
    resource: str
    named_resource: str | None
    context: Context

    def __post_init__(self) -> None:
        assert self.action.startswith(SERVICE_PREFIX), "a Secrets Manager action"
        assert all(key == key.lower() for key in self.context), "context keys are lower-case"


@dataclass(frozen=True)
class Decision:
    """``allowed``; ``explicit`` when a Deny statement decided; ``policy_type``
    (identity or resource), ``statement_index`` (1-based) and ``sid`` of the
    statement that decided (None for an implicit deny and for an administrator's
    implicit allow)."""

    allowed: bool
    explicit: bool
    policy_type: str | None = None
    statement_index: int | None = None
    sid: str | None = None

    def __post_init__(self) -> None:
        assert not (self.allowed and self.explicit), "an explicit decision is a Deny"
        assert (self.policy_type is None) == (self.statement_index is None), "both or neither"

    def record(self, access: Access) -> dict[str, str | int | None]:
        """The denial as the audit record keeps it (AZ-12)."""
        assert not self.allowed, "only denials are recorded this way"
        return {
            "action": access.action,
            "resource": access.resource,
            "decision": "explicit-deny" if self.explicit else "implicit-deny",
            "policy_type": self.policy_type,
            "statement_index": self.statement_index,
            "sid": self.sid,
        }


@dataclass(frozen=True)
class _Match:
    policy_type: str
    index: int
    statement: Statement


def policies_apply(identity_policy: Policy | None, target: Target | None) -> bool:
    """Whether any policy bears on a request: without an identity policy (an
    administrator) and without a resource policy on its secret, `decide` allows
    every permission (AZ-3), so the permissions need not be worked out."""
    return identity_policy is not None or (
        target is not None and target.resource_policy is not None
    )


def decide(
    access: Access, identity_policy: Policy | None, resource_policy: Policy | None
) -> Decision:
    """AZ-2: explicit Deny anywhere, else Allow from either policy, else implicit deny.
    ``identity_policy`` None: an administrator (AZ-3)."""
    identity = list(_applicable(access, identity_policy, IDENTITY))
    resource = list(_applicable(access, resource_policy, RESOURCE))
    for match in [*identity, *resource]:
        if match.statement.effect == DENY:
            return _decision(match, allowed=False)
    for match in [*identity, *resource]:
        if match.statement.effect == ALLOW and _grants(match, access.principal_arn):
            return _decision(match, allowed=True)
    if identity_policy is None:
        return Decision(allowed=True, explicit=False)
    return Decision(allowed=False, explicit=False)


def _decision(match: _Match, *, allowed: bool) -> Decision:
    return Decision(
        allowed=allowed,
        explicit=not allowed,
        policy_type=match.policy_type,
        statement_index=match.index,
        sid=match.statement.sid,
    )


def _applicable(access: Access, policy: Policy | None, policy_type: str) -> Iterator[_Match]:
    if policy is None:
        return
    for index, statement in enumerate(policy.statements, start=1):
        if policy_type == RESOURCE and not principal_matches(statement, access.principal_arn):
            continue
        if (
            action_matches(statement, access.action)
            and resource_matches(statement, access.resource)
            and all(
                condition_holds(condition, access.context) for condition in statement.conditions
            )
        ):
            yield _Match(policy_type, index, statement)


def _grants(match: _Match, principal_arn: str) -> bool:
    """AZ-5: in a resource policy, an Allow to an account (its id or its root) hands
    the decision to the account's identity policies and grants nothing by itself."""
    if match.policy_type == IDENTITY or match.statement.not_principal:
        return True
    return any(
        principal.type == "*"
        or (principal.type == "AWS" and _names_principal(principal.value, principal_arn))
        for principal in match.statement.principals
    )


# Principals (AZ-5)


def principal_matches(statement: Statement, principal_arn: str) -> bool:
    """Whether a resource-policy statement applies to the caller: one of its
    principals names it (or, for NotPrincipal, none does)."""
    named = any(
        principal.type == "*"
        or (principal.type == "AWS" and _names_account_or_principal(principal.value, principal_arn))
        for principal in statement.principals
    )
    return not named if statement.not_principal else named


def _names_account_or_principal(value: str, principal_arn: str) -> bool:
    if value == "*":
        return True
    account = _account_of(principal_arn)
    if value in (account, f"arn:aws:iam::{account}:root"):
        return True
    return _names_principal(value, principal_arn)


def _names_principal(value: str, principal_arn: str) -> bool:
    """``*``, the caller's own ARN, or the role whose session the caller is."""
    return value in ("*", principal_arn, role_of_session(principal_arn))


def _account_of(principal_arn: str) -> str:
    parts = principal_arn.split(":", ARN_PART_COUNT - 1)
    return parts[4] if len(parts) == ARN_PART_COUNT else ""


def role_of_session(principal_arn: str) -> str:
    """``arn:aws:sts::A:assumed-role/R/S`` is a session of ``arn:aws:iam::A:role/R``;
    any other ARN is its own principal."""
    parts = principal_arn.split(":", ARN_PART_COUNT - 1)
    if len(parts) != ARN_PART_COUNT or parts[2] != "sts":
        return principal_arn
    kind, _, rest = parts[5].partition("/")
    role, _, session = rest.partition("/")
    if kind != "assumed-role" or not role or not session:
        return principal_arn
    return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"


# Actions and resources (AZ-4, AZ-6)


def action_matches(statement: Statement, action: str) -> bool:
    """Action patterns are case-insensitive and hold ``*`` and ``?``."""
    hit = any(glob_matches(pattern, action, folded=True) for pattern in statement.actions)
    return not hit if statement.not_action else hit


def resource_matches(statement: Statement, resource: str) -> bool:
    hit = any(resource_pattern_matches(pattern, resource) for pattern in statement.resources)
    return not hit if statement.not_resource else hit


def resource_pattern_matches(pattern: str, resource: str) -> bool:
    """``*`` matches everything (in a secret's policy: that secret); an ARN pattern
    matches an ARN part by part; nothing but ``*`` matches a resource-less action."""
    if pattern == ANY_RESOURCE:
        return True
    return arn_matches(pattern, resource)


def arn_matches(pattern: str, arn: str) -> bool:
    """AZ-4: each of the six colon-separated parts is matched on its own,
    case-sensitively, ``*`` and ``?`` as wildcards (the last part keeps its colons)."""
    pattern_parts = pattern.split(":", ARN_PART_COUNT - 1)
    arn_parts = arn.split(":", ARN_PART_COUNT - 1)
    if len(pattern_parts) != ARN_PART_COUNT or len(arn_parts) != ARN_PART_COUNT:
        return False
    return all(
        glob_matches(part, text, folded=False)
        for part, text in zip(pattern_parts, arn_parts, strict=True)
    )


def glob_matches(pattern: str, text: str, *, folded: bool) -> bool:
    return _glob(pattern, folded).fullmatch(text) is not None


@functools.lru_cache(maxsize=GLOB_CACHE_SIZE)
def _glob(pattern: str, folded: bool) -> re.Pattern[str]:
    translated = "".join(
        ".*" if character == "*" else "." if character == "?" else re.escape(character)
        for character in pattern
    )
    return re.compile(translated, re.DOTALL | (re.IGNORECASE if folded else 0))


# Conditions (AZ-7 to AZ-9)

Matcher = Callable[[str, str], bool]


def _string_equals(value: str, expected: str) -> bool:
    return value == expected


def _string_equals_ignore_case(value: str, expected: str) -> bool:
    return value.casefold() == expected.casefold()


def _string_like(value: str, expected: str) -> bool:
    return glob_matches(expected, value, folded=False)


def _numbers(value: str, expected: str) -> tuple[float, float] | None:
    try:
        return float(value), float(expected)
    except ValueError:
        return None


def _numeric(compare: Callable[[float, float], bool]) -> Matcher:
    def matcher(value: str, expected: str) -> bool:
        numbers = _numbers(value, expected)
        return numbers is not None and compare(*numbers)

    return matcher


def parse_date(text: str) -> datetime | None:
    """An ISO 8601 date or date-time (UTC when no offset is given) or epoch seconds."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _date(compare: Callable[[datetime, datetime], bool]) -> Matcher:
    def matcher(value: str, expected: str) -> bool:
        moment, bound = parse_date(value), parse_date(expected)
        return moment is not None and bound is not None and compare(moment, bound)

    return matcher


def _bool(value: str, expected: str) -> bool:
    return value.lower() == expected.lower()


def _ip_address(value: str, expected: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(expected, strict=False)
    except ValueError:
        return False


def _arn(value: str, expected: str) -> bool:
    return arn_matches(expected, value)


# Each base operator: how one request value meets one policy value, and whether the
# operator is negated (it holds when the value meets none of the policy's values).
OPERATORS: Final[dict[str, tuple[Matcher, bool]]] = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "NumericEquals": (_numeric(lambda a, b: a == b), False),
    "NumericNotEquals": (_numeric(lambda a, b: a == b), True),
    "NumericLessThan": (_numeric(lambda a, b: a < b), False),
    "NumericLessThanEquals": (_numeric(lambda a, b: a <= b), False),
    "NumericGreaterThan": (_numeric(lambda a, b: a > b), False),
    "NumericGreaterThanEquals": (_numeric(lambda a, b: a >= b), False),
    "DateEquals": (_date(lambda a, b: a == b), False),
    "DateNotEquals": (_date(lambda a, b: a == b), True),
    "DateLessThan": (_date(lambda a, b: a < b), False),
    "DateLessThanEquals": (_date(lambda a, b: a <= b), False),
    "DateGreaterThan": (_date(lambda a, b: a > b), False),
    "DateGreaterThanEquals": (_date(lambda a, b: a >= b), False),
    "Bool": (_bool, False),
    "BinaryEquals": (_string_equals, False),
    "IpAddress": (_ip_address, False),
    "NotIpAddress": (_ip_address, True),
    "ArnEquals": (_arn, False),
    "ArnLike": (_arn, False),
    "ArnNotEquals": (_arn, True),
    "ArnNotLike": (_arn, True),
}
FOR_ANY_VALUE: Final = "ForAnyValue:"
FOR_ALL_VALUES: Final = "ForAllValues:"
NULL: Final = "Null"


def policy_text(value: Scalar) -> str:
    """A policy's condition value as the text it is compared as (booleans as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def condition_holds(condition: Condition, context: Context) -> bool:
    """AZ-7 to AZ-9. Within one condition the policy's values are alternatives (OR);
    conditions of a statement must all hold (AND)."""
    operator = condition.operator
    set_operator = next(
        (prefix for prefix in (FOR_ANY_VALUE, FOR_ALL_VALUES) if operator.startswith(prefix)), ""
    )
    base = operator.removeprefix(set_operator)
    if_exists = base.endswith(IF_EXISTS) and base != IF_EXISTS
    base = base.removesuffix(IF_EXISTS) if if_exists else base
    values = context.get(condition.key.lower(), ())
    expected = [policy_text(value) for value in condition.values]
    if base == NULL:
        return any((value.lower() == "true") == (not values) for value in expected)
    if not values:
        if set_operator == FOR_ALL_VALUES or if_exists:
            return True
        if set_operator == FOR_ANY_VALUE:
            return False
        return OPERATORS[base][1]
    matcher, negated = OPERATORS[base]

    def meets(value: str) -> bool:
        hit = any(matcher(value, wanted) for wanted in expected)
        return not hit if negated else hit

    if set_operator == FOR_ALL_VALUES:
        return all(meets(value) for value in values)
    return any(meets(value) for value in values)


# What an operation needs (AZ-6, AZ-10)


@dataclass(frozen=True)
class Target:
    """The secret a request names, as far as authorization needs it: ``arn`` (the
    resolved ARN; for a secret that does not exist, the ARN its name would have
    without suffix; for CreateSecret, ``<name>-??????``), its tags and its resource
    policy, and the ``SecretId`` or ``Name`` as the caller wrote it."""

    arn: str
    named: str
    tags: Sequence[Mapping[str, str]] = ()
    resource_policy: str | None = None


@dataclass(frozen=True)
class Requester:
    """What authorization knows of the caller (AZ-8)."""

    principal_arn: str
    source_ip: str
    now: datetime


def accesses_for(
    operation: str,
    request: Mapping[str, object],
    caller: Requester,
    target: Target | None,
) -> list[Access]:
    """The permissions ``operation`` needs, in the order they are checked (AZ-6):
    its own action; BatchGetSecretValue with Filters also ListSecrets;
    ValidateResourcePolicy also PutResourcePolicy; CreateSecret with Tags also
    TagResource. The per-secret GetSecretValue of BatchGetSecretValue is asked by
    the caller of this function, secret by secret."""
    actions = [operation]
    if operation == "BatchGetSecretValue" and request.get("Filters") is not None:
        actions.append("ListSecrets")
    if operation == "ValidateResourcePolicy":
        actions.append("PutResourcePolicy")
    if operation == "CreateSecret" and request.get("Tags"):
        actions.append("TagResource")
    return [access_for(action, request, caller, target) for action in actions]


def access_for(
    action: str, request: Mapping[str, object], caller: Requester, target: Target | None
) -> Access:
    """One action of a request, with its condition keys (AZ-8)."""
    context: dict[str, tuple[str, ...]] = {
        "aws:principalarn": (role_of_session(caller.principal_arn),),
        "aws:currenttime": (caller.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),),
        "aws:epochtime": (str(int(caller.now.timestamp())),),
    }
    if caller.source_ip:
        context["aws:sourceip"] = (caller.source_ip,)
    resource, named_resource = ANY_RESOURCE, None
    if target is not None and action not in RESOURCELESS_ACTIONS:
        resource, named_resource = target.arn, target.named
        context.update(_secret_keys(action, target))
    context.update(_request_keys(request))
    return Access(
        principal_arn=caller.principal_arn,
        action=SERVICE_PREFIX + action,
        resource=resource,
        named_resource=named_resource,
        context={key: values for key, values in context.items() if values},
    )


def _secret_keys(action: str, target: Target) -> dict[str, tuple[str, ...]]:
    keys: dict[str, tuple[str, ...]] = {}
    if action != "CreateSecret":
        keys["secretsmanager:secretid"] = (target.arn,)
    for tag in target.tags:
        key = tag.get("Key", "").lower()
        value = (tag.get("Value", ""),)
        keys[f"secretsmanager:resourcetag/{key}"] = value
        keys[f"aws:resourcetag/{key}"] = value
    return keys


REQUEST_STRING_KEYS: Final = {
    "VersionId": "secretsmanager:versionid",
    "VersionStage": "secretsmanager:versionstage",
    "Name": "secretsmanager:name",
    "Description": "secretsmanager:description",
    "KmsKeyId": "secretsmanager:kmskeyid",
    "RotationLambdaARN": "secretsmanager:rotationlambdaarn",
}
REQUEST_FLAG_KEYS: Final = {
    "BlockPublicPolicy": "secretsmanager:blockpublicpolicy",
    "ForceDeleteWithoutRecovery": "secretsmanager:forcedeletewithoutrecovery",
    "RotateImmediately": "secretsmanager:rotateimmediately",
}


def _request_keys(request: Mapping[str, object]) -> dict[str, tuple[str, ...]]:
    """AZ-8: keys from request members, present only when the member was sent."""
    keys: dict[str, tuple[str, ...]] = {}
    for member, key in REQUEST_STRING_KEYS.items():
        value = request.get(member)
        if isinstance(value, str):
            keys[key] = (value,)
    for member, key in REQUEST_FLAG_KEYS.items():
        flag = request.get(member)
        if isinstance(flag, bool):
            keys[key] = (policy_text(flag),)
    window = request.get("RecoveryWindowInDays")
    if isinstance(window, int) and not isinstance(window, bool):
        keys["secretsmanager:recoverywindowindays"] = (str(window),)
    tags = request.get("Tags")
    tag_keys: list[str] = []
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, Mapping) and isinstance(tag.get("Key"), str):
                tag_keys.append(tag["Key"])
                value = tag.get("Value", "")
                keys[f"aws:requesttag/{tag['Key'].lower()}"] = (str(value),)
    untagged = request.get("TagKeys")
    if isinstance(untagged, list):
        tag_keys += [key for key in untagged if isinstance(key, str)]
    keys["aws:tagkeys"] = tuple(tag_keys)
    return keys


# The answer (AZ-11)


def denial_message(access: Access, decision: Decision) -> str:
    """AWS's AccessDeniedException text: the caller, the action, the resource as the
    caller named it (no ``on resource:`` for a resource-less action), and why."""
    assert not decision.allowed, "a message for a denial"
    head = f"User: {access.principal_arn} is not authorized to perform: {access.action}"
    if access.named_resource is not None:
        head += f" on resource: {access.named_resource}"
    if decision.explicit:
        assert decision.policy_type is not None, "an explicit deny names its policy"
        return f"{head} with an explicit deny in {POLICY_NAMES[decision.policy_type]}"
    return f"{head} because no identity-based policy allows the {access.action} action"


@functools.lru_cache(maxsize=RESOURCE_POLICY_CACHE_SIZE)
def stored_resource_policy(text: str) -> Policy:
    """A secret's stored policy text, read (RP-12: it was checked when it was put)."""
    policy = check_policy(text).policy
    assert policy is not None, "a stored resource policy has a valid grammar"
    return policy
