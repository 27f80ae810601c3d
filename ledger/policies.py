"""Resource policies: the grammar of an IAM policy document attached to a secret, and
what counts as broad (public) access.

Pure functions of the policy text, with no ledger state: PutResourcePolicy and
ValidateResourcePolicy check with them today, and the access-control evaluator reads
the `Policy` that `check_policy` returns. Rules RP-1 to RP-12 are in docs/policies.md.

The text is bounded before it is parsed (RP-2): at most ``POLICY_CHARACTERS_MAX``
characters and ``NESTING_DEPTH_MAX`` levels of brackets, counted by a scan that
recurses nowhere, so no document reaches ``json.loads`` deep enough to exhaust the
interpreter's stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger.errors import MalformedPolicyDocumentException, PublicPolicyException

POLICY_CHARACTERS_MAX: Final = 20_480
# A valid policy nests six deep at most (policy, Statement list, statement, Condition,
# operator, value list); the margin keeps error messages about grammar, not depth.
NESTING_DEPTH_MAX: Final = 10
FINDINGS_MAX: Final = 20
POLICY_VERSIONS: Final = ("2012-10-17", "2008-10-17")
EFFECTS: Final = ("Allow", "Deny")

# Check names of ValidateResourcePolicy's ValidationErrors (RP-9).
SYNTAX: Final = "SYNTAX"
BROAD_ACCESS: Final = "BROAD_ACCESS"

# What a syntax finding is about, for PutResourcePolicy's error message (RP-7).
GRAMMAR: Final = "grammar"
PRINCIPAL: Final = "principal"
SERVICE_PRINCIPAL: Final = "service-principal"

SYNTAX_ERROR_MESSAGE: Final = "This resource policy contains a syntax error."
UNSUPPORTED_PRINCIPAL_MESSAGE: Final = "This resource policy contains an unsupported principal."
INVALID_SERVICE_PRINCIPAL_MESSAGE: Final = (
    "This resource policy contains an invalid service principal."
)
BROAD_ACCESS_MESSAGE: Final = (
    "You can't attach a resource-based policy that allows broad access to the secret."
)

POLICY_ELEMENTS: Final = frozenset({"Version", "Id", "Statement"})
STATEMENT_ELEMENTS: Final = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
PRINCIPAL_TYPES: Final = ("AWS", "Service", "Federated", "CanonicalUser")
SID_PATTERN: Final = re.compile(r"[A-Za-z0-9]*")
ACCOUNT_PATTERN: Final = re.compile(r"[0-9]{12}")
AWS_PRINCIPAL_ARN_PATTERN: Final = re.compile(
    r"arn:aws(?:-[a-z]+)*:(?:iam::[0-9]{12}:(?:root|user/\S+|role/\S+)"
    r"|sts::[0-9]{12}:(?:assumed-role/[^/\s]+/\S+|federated-user/\S+))"
)
SERVICE_PRINCIPAL_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9.-]*\.amazonaws\.com(?:\.cn)?")
CANONICAL_USER_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
ACTION_PATTERN: Final = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?]+")

CONDITION_OPERATORS: Final = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "Bool",
        "BinaryEquals",
        "IpAddress",
        "NotIpAddress",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Null",
    }
)
SET_OPERATOR_PREFIXES: Final = ("ForAnyValue:", "ForAllValues:")
IF_EXISTS: Final = "IfExists"

# RP-11: condition keys that, pinned to fixed values, keep a wildcard principal from
# being public; and the operators that pin.
PINNING_KEYS: Final = frozenset(
    {
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceaccount",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:principalorgid",
    }
)
PINNING_OPERATORS: Final = frozenset(
    {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike"}
)

Scalar = str | bool | int | float


@dataclass(frozen=True)
class Finding:
    """One problem with a policy: ``check_name`` (SYNTAX or BROAD_ACCESS), ``kind``
    (what a SYNTAX finding is about, RP-7) and a message in our words."""

    check_name: str
    kind: str
    message: str


@dataclass(frozen=True)
class Principal:
    """``type``: ``*`` (the bare wildcard), AWS, Service, Federated or CanonicalUser."""

    type: str
    value: str


@dataclass(frozen=True)
class Condition:
    """One test: ``operator`` as written (with any ``ForAnyValue:`` prefix or
    ``IfExists`` suffix), the condition ``key`` and its ``values``."""

    operator: str
    key: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Statement:
    """A statement as written. ``not_principal``, ``not_action`` and ``not_resource``
    say whether the element was the ``Not`` form."""

    sid: str | None
    effect: str
    principals: tuple[Principal, ...]
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Policy:
    version: str | None
    id: str | None
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class PolicyCheck:
    """The policy, when its grammar holds (else None), and every finding (at most
    ``FINDINGS_MAX``): syntax findings, or else broad-access findings."""

    policy: Policy | None
    findings: tuple[Finding, ...]


class _Refused(Exception):
    """The document cannot be read at all (RP-2, RP-3): one syntax finding."""


def check_policy(text: str) -> PolicyCheck:
    """RP-1 to RP-11: read ``text`` as a secret's resource policy."""
    check = _checked(text, identity=False)
    policy = check.policy
    if policy is None:
        return check
    broad = [
        Finding(
            BROAD_ACCESS,
            BROAD_ACCESS,
            f"{_where(index)} allows a public principal: grant to specific principals, or "
            "pin the statement to fixed values of aws:SourceArn, aws:SourceVpc, "
            "aws:SourceVpce, aws:SourceAccount, aws:PrincipalAccount, aws:PrincipalArn or "
            "aws:PrincipalOrgID.",
        )
        for index, statement in enumerate(policy.statements, start=1)
        if is_broad(statement)
    ]
    return PolicyCheck(policy, tuple(broad[:FINDINGS_MAX]))


def check_identity_policy(text: str) -> PolicyCheck:
    """AZ-1: read ``text`` as a principal's identity policy: the grammar of RP-2 to
    RP-5, except that a statement names no ``Principal`` (the policy's holder is its
    principal). Broad access is a resource-policy notion: never a finding here."""
    return _checked(text, identity=True)


def _checked(text: str, *, identity: bool) -> PolicyCheck:
    try:
        document = _read_json(text)
    except _Refused as refusal:
        return PolicyCheck(None, (Finding(SYNTAX, GRAMMAR, str(refusal)),))
    findings: list[Finding] = []
    policy = _policy(document, findings, identity=identity)
    if findings:
        return PolicyCheck(None, tuple(findings[:FINDINGS_MAX]))
    assert policy is not None, "a policy without findings was read"
    return PolicyCheck(policy, ())


def require_attachable(text: str, *, block_public_policy: bool) -> Policy:
    """The policy PutResourcePolicy may attach, or AWS's error (RP-7, RP-8)."""
    check = check_policy(text)
    for finding in check.findings:
        if finding.check_name == SYNTAX:
            raise MalformedPolicyDocumentException(_put_message(finding.kind))
    if block_public_policy and check.findings:
        raise PublicPolicyException(BROAD_ACCESS_MESSAGE)
    assert check.policy is not None, "a policy without syntax findings was read"
    return check.policy


def _put_message(kind: str) -> str:
    if kind == PRINCIPAL:
        return UNSUPPORTED_PRINCIPAL_MESSAGE
    if kind == SERVICE_PRINCIPAL:
        return INVALID_SERVICE_PRINCIPAL_MESSAGE
    assert kind == GRAMMAR, "a known kind of syntax finding"
    return SYNTAX_ERROR_MESSAGE


# Reading the JSON (RP-2, RP-3)


def exceeds_nesting(text: str, depth_max: int) -> bool:
    """Whether brackets outside strings nest deeper than ``depth_max``: one pass, no
    recursion, whatever the text (malformed JSON is left to the parser)."""
    depth = 0
    in_string = False
    escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            if depth > depth_max:
                return True
        elif character in "]}":
            depth -= 1
    return False


def _read_json(text: str) -> dict[str, Any]:
    if len(text) > POLICY_CHARACTERS_MAX:
        raise _Refused(f"The policy is longer than {POLICY_CHARACTERS_MAX} characters.")
    if exceeds_nesting(text, NESTING_DEPTH_MAX):
        raise _Refused(f"The policy nests deeper than {NESTING_DEPTH_MAX} levels.")
    try:
        document = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constant)
    except ValueError as error:
        raise _Refused(f"The policy is not valid JSON: {_json_problem(error)}.") from None
    if not isinstance(document, dict):
        raise _Refused("The policy must be a JSON object.")
    return document


def _json_problem(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno}, column {error.colno}"
    return "it does not decode"


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise _Refused(f"The element {name!r} appears twice in one JSON object.")
        members[name] = value
    return members


def _no_constant(name: str) -> Any:
    raise _Refused(f"The policy is not valid JSON: {name} is not a JSON value.")


# The grammar (RP-4 to RP-6)


def _where(index: int) -> str:
    return f"Statement {index}"


def _grammar(findings: list[Finding], message: str, kind: str = GRAMMAR) -> None:
    findings.append(Finding(SYNTAX, kind, message))


def _policy(
    document: Mapping[str, Any], findings: list[Finding], *, identity: bool
) -> Policy | None:
    for name in document:
        if name not in POLICY_ELEMENTS:
            _grammar(findings, f"The policy has an unknown element {name!r}.")
    version = document.get("Version")
    if version is not None and version not in POLICY_VERSIONS:
        _grammar(findings, f"Version must be one of {', '.join(POLICY_VERSIONS)}.")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        _grammar(findings, "Id must be a string.")
    raw_statements = document.get("Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        _grammar(findings, "Statement must be a statement object or a non-empty list of them.")
        return None
    statements = []
    for index, raw in enumerate(raw_statements, start=1):
        if not isinstance(raw, dict):
            _grammar(findings, f"{_where(index)} must be a JSON object.")
            continue
        statements.append(_statement(index, raw, findings, identity=identity))
    sids = [statement.sid for statement in statements if statement.sid]
    for sid in sorted({sid for sid in sids if sids.count(sid) > 1}):
        _grammar(findings, f"The Sid {sid!r} names more than one statement.")
    if findings:
        return None
    return Policy(version=version, id=policy_id, statements=tuple(statements))


def _statement(
    index: int, raw: Mapping[str, Any], findings: list[Finding], *, identity: bool
) -> Statement:
    where = _where(index)
    for name in raw:
        if name not in STATEMENT_ELEMENTS:
            _grammar(findings, f"{where} has an unknown element {name!r}.")
    sid = raw.get("Sid")
    if sid is not None and not (isinstance(sid, str) and SID_PATTERN.fullmatch(sid)):
        _grammar(findings, f"{where}: Sid must be a string of ASCII letters and digits.")
    effect = raw.get("Effect")
    if effect not in EFFECTS:
        _grammar(findings, f'{where}: Effect must be "Allow" or "Deny".')
    principal_name, raw_principal = "Principal", None
    if not identity:
        principal_name, raw_principal = _one_of(where, raw, "Principal", findings)
    elif "Principal" in raw or "NotPrincipal" in raw:
        _grammar(findings, f"{where}: an identity policy names no Principal or NotPrincipal.")
    action_name, raw_action = _one_of(where, raw, "Action", findings)
    resource_name, raw_resource = _one_of(where, raw, "Resource", findings)
    principals = _principals(f"{where}: {principal_name}", raw_principal, findings)
    actions = _strings(f"{where}: {action_name}", raw_action, findings)
    for action in actions:
        if not ACTION_PATTERN.fullmatch(action):
            _grammar(findings, f'{where}: {action_name} {action!r} is not "*" or service:action.')
    resources = _strings(f"{where}: {resource_name}", raw_resource, findings)
    for resource in resources:
        if resource != "*" and not (resource.startswith("arn:") and resource.count(":") >= 5):
            _grammar(findings, f'{where}: {resource_name} {resource!r} is not "*" or an ARN.')
    conditions = _conditions(where, raw.get("Condition"), findings)
    return Statement(
        sid=sid if isinstance(sid, str) else None,
        effect=effect if isinstance(effect, str) else "",
        principals=principals,
        not_principal=principal_name == "NotPrincipal",
        actions=actions,
        not_action=action_name == "NotAction",
        resources=resources,
        not_resource=resource_name == "NotResource",
        conditions=conditions,
    )


def _one_of(
    where: str, raw: Mapping[str, Any], element: str, findings: list[Finding]
) -> tuple[str, Any]:
    """Exactly one of ``element`` and ``Not<element>`` (RP-5): its name and value."""
    negated = "Not" + element
    if element in raw and negated in raw:
        _grammar(findings, f"{where} has both {element} and {negated}.")
    elif element not in raw and negated not in raw:
        _grammar(findings, f"{where} needs {element} or {negated}.")
    name = negated if negated in raw and element not in raw else element
    return name, raw.get(name)


def _strings(where: str, value: Any, findings: list[Finding]) -> tuple[str, ...]:
    """A string or a non-empty list of non-empty strings."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(item, str) and item for item in items)
    ):
        _grammar(findings, f"{where} must be a non-empty string or a non-empty list of them.")
        return ()
    return tuple(items)


def _principals(where: str, value: Any, findings: list[Finding]) -> tuple[Principal, ...]:
    """RP-6: ``"*"``, or an object of principal types, each a string or a list."""
    if value is None:
        return ()
    if value == "*":
        return (Principal("*", "*"),)
    if not isinstance(value, dict) or not value:
        _grammar(findings, f'{where} must be "*" or an object of principal types.')
        return ()
    principals: list[Principal] = []
    for principal_type, raw_values in value.items():
        if principal_type not in PRINCIPAL_TYPES:
            _grammar(
                findings,
                f"{where} has an unknown principal type {principal_type!r}.",
                PRINCIPAL,
            )
            continue
        for item in _strings(f"{where}: {principal_type}", raw_values, findings):
            _check_principal(where, principal_type, item, findings)
            principals.append(Principal(principal_type, item))
    return tuple(principals)


def _check_principal(where: str, principal_type: str, value: str, findings: list[Finding]) -> None:
    if principal_type == "AWS":
        valid = (
            value == "*"
            or ACCOUNT_PATTERN.fullmatch(value) is not None
            or AWS_PRINCIPAL_ARN_PATTERN.fullmatch(value) is not None
        )
        if not valid:
            _grammar(findings, f"{where}: AWS principal {value!r} is not supported.", PRINCIPAL)
    elif principal_type == "Service":
        if not SERVICE_PRINCIPAL_PATTERN.fullmatch(value):
            _grammar(
                findings,
                f"{where}: {value!r} is not a service principal.",
                SERVICE_PRINCIPAL,
            )
    elif principal_type == "CanonicalUser" and not CANONICAL_USER_PATTERN.fullmatch(value):
        _grammar(findings, f"{where}: {value!r} is not a canonical user id.", PRINCIPAL)


def _conditions(where: str, value: Any, findings: list[Finding]) -> tuple[Condition, ...]:
    """RP-5: an object of operators, each an object of condition keys, each a value
    (string, number, boolean) or a non-empty list of them."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        _grammar(findings, f"{where}: Condition must be a non-empty object of operators.")
        return ()
    conditions: list[Condition] = []
    for operator, tests in value.items():
        if not is_condition_operator(operator):
            _grammar(findings, f"{where}: {operator!r} is not a condition operator.")
            continue
        if not isinstance(tests, dict) or not tests:
            _grammar(findings, f"{where}: {operator} must be a non-empty object of keys.")
            continue
        for key, raw_values in tests.items():
            values = _condition_values(raw_values)
            if not key or values is None:
                _grammar(
                    findings,
                    f"{where}: {operator} {key!r} needs a value or a non-empty list of values.",
                )
                continue
            conditions.append(Condition(operator, key, values))
    return tuple(conditions)


def _condition_values(raw: Any) -> tuple[Scalar, ...] | None:
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(item, str | bool | int | float) for item in items):
        return None
    return tuple(items)


def is_condition_operator(operator: str) -> bool:
    """``[ForAnyValue:|ForAllValues:]<operator>[IfExists]``; ``Null`` takes no suffix."""
    base = operator
    for prefix in SET_OPERATOR_PREFIXES:
        base = base.removeprefix(prefix)
    if base.endswith(IF_EXISTS) and base != IF_EXISTS:
        base = base.removesuffix(IF_EXISTS)
        return base in CONDITION_OPERATORS and base != "Null"
    return base in CONDITION_OPERATORS


# Broad access (RP-10, RP-11)


def is_broad(statement: Statement) -> bool:
    """RP-10: an Allow to everyone (a wildcard principal, or NotPrincipal) that no
    condition pins to fixed values (RP-11)."""
    if statement.effect != "Allow":
        return False
    everyone = statement.not_principal or any(
        principal.value == "*" for principal in statement.principals
    )
    return everyone and not any(pins(condition) for condition in statement.conditions)


def pins(condition: Condition) -> bool:
    """RP-11: a plain equality-style operator (no set prefix, no IfExists) on one of
    ``PINNING_KEYS``, whose values are all strings without wildcards."""
    return (
        condition.operator in PINNING_OPERATORS
        and condition.key.lower() in PINNING_KEYS
        and all(isinstance(value, str) and not _has_wildcard(value) for value in condition.values)
    )


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def validation_errors(findings: Sequence[Finding]) -> list[dict[str, str]]:
    """ValidateResourcePolicy's ``ValidationErrors`` (RP-9)."""
    return [
        {"CheckName": finding.check_name, "ErrorMessage": finding.message} for finding in findings
    ]
