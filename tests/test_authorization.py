"""The evaluator of ledger/authorization.py, on its own (rules AZ-1 to AZ-14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.auth import CredentialsFileError, Principals
from ledger.authorization import (
    Access,
    Requester,
    Target,
    access_for,
    accesses_for,
    arn_matches,
    condition_holds,
    decide,
    denial_message,
    glob_matches,
    role_of_session,
)
from ledger.policies import Condition, Policy, check_identity_policy, check_policy

ACCOUNT = "123456789012"
USER = f"arn:aws:iam::{ACCOUNT}:user/alice"
OTHER = f"arn:aws:iam::{ACCOUNT}:user/bob"
SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:app/db-AbCdEf"
NOW = datetime(2026, 3, 19, 12, 0, tzinfo=UTC)


def identity(*statements: dict[str, Any]) -> Policy:
    check = check_identity_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    assert check.policy is not None, check.findings
    return check.policy


def resource(*statements: dict[str, Any]) -> Policy:
    check = check_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    assert check.policy is not None, check.findings
    return check.policy


def access(
    action: str = "GetSecretValue",
    principal: str = USER,
    target: str | None = SECRET,
    **context: tuple[str, ...],
) -> Access:
    return Access(
        principal_arn=principal,
        action="secretsmanager:" + action,
        resource=target or "*",
        named_resource=target,
        context={key.lower(): values for key, values in context.items()},
    )


ALLOW_ALL = {"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}
DENY_GET = {"Sid": "NoGet", "Effect": "Deny", "Action": "secretsmanager:Get*", "Resource": "*"}


# Evaluation (AZ-2, AZ-3, AZ-5)


def test_an_explicit_deny_in_either_policy_beats_every_allow() -> None:
    grant = {**ALLOW_ALL, "Principal": {"AWS": USER}}
    decision = decide(access(), identity(ALLOW_ALL, DENY_GET), resource(grant))
    assert (decision.allowed, decision.explicit, decision.policy_type, decision.sid) == (
        False,
        True,
        "identity",
        "NoGet",
    )
    deny = {**DENY_GET, "Principal": {"AWS": USER}}
    decision = decide(access(), identity(ALLOW_ALL), resource(grant, deny))
    assert (decision.allowed, decision.policy_type, decision.statement_index) == (
        False,
        "resource",
        2,
    )


def test_an_allow_from_either_policy_grants_and_nothing_denies_implicitly() -> None:
    only_list = identity({"Effect": "Allow", "Action": "secretsmanager:List*", "Resource": "*"})
    grant = resource({**ALLOW_ALL, "Sid": "Bob", "Principal": {"AWS": USER}})
    assert decide(access(), only_list, grant).allowed
    assert decide(access(), only_list, grant).sid == "Bob"
    assert decide(access(), only_list, None) == decide(access(), only_list, resource(DENY_NONE))
    assert not decide(access(), only_list, None).allowed
    assert not decide(access(), only_list, None).explicit


DENY_NONE = {**DENY_GET, "Principal": {"AWS": OTHER}}


def test_a_principal_without_a_policy_is_an_administrator_a_resource_deny_still_stops() -> None:
    assert decide(access(), None, None).allowed
    assert decide(access("DeleteSecret"), None, resource(DENY_NONE)).allowed
    assert not decide(access(), None, resource({**DENY_GET, "Principal": "*"})).allowed


def test_an_account_principal_delegates_an_allow_but_receives_a_deny() -> None:
    nothing = identity({"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"})
    for account in (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"):
        assert not decide(
            access(), nothing, resource({**ALLOW_ALL, "Principal": {"AWS": account}})
        ).allowed
        assert not decide(
            access(), None, resource({**DENY_GET, "Principal": {"AWS": account}})
        ).allowed


def test_a_role_names_its_sessions() -> None:
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci-42"
    role = f"arn:aws:iam::{ACCOUNT}:role/deployer"
    assert role_of_session(session) == role
    assert role_of_session(USER) == USER
    grant = resource({**ALLOW_ALL, "Principal": {"AWS": role}})
    assert decide(access(principal=session), identity(DENY_NONE_IDENTITY), grant).allowed
    assert not decide(access(principal=USER), identity(DENY_NONE_IDENTITY), grant).allowed


DENY_NONE_IDENTITY = {"Effect": "Deny", "Action": "secretsmanager:Nothing", "Resource": "*"}


def test_not_principal_not_action_and_not_resource() -> None:
    everyone_but_bob = resource({**DENY_GET, "NotPrincipal": {"AWS": OTHER}})
    assert not decide(access(), None, everyone_but_bob).allowed
    assert decide(access(principal=OTHER), None, everyone_but_bob).allowed
    not_delete = identity(
        {"Effect": "Allow", "NotAction": "secretsmanager:Delete*", "Resource": "*"}
    )
    assert decide(access(), not_delete, None).allowed
    assert not decide(access("DeleteSecret"), not_delete, None).allowed
    not_prod = identity(
        {
            "Effect": "Allow",
            "Action": "*",
            "NotResource": f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:prod/*",
        }
    )
    assert decide(access(), not_prod, None).allowed
    prod = SECRET.replace("app/db", "prod/db")
    assert not decide(access(target=prod), not_prod, None).allowed


def test_a_resourceless_action_is_granted_only_through_a_star_resource() -> None:
    """AZ-6, as AWS refused BatchGetSecretValue granted on secret ARNs only."""
    on_arns = identity(
        {
            "Effect": "Allow",
            "Action": "secretsmanager:*",
            "Resource": f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:*",
        }
    )
    assert decide(access(), on_arns, None).allowed
    assert not decide(access("BatchGetSecretValue", target=None), on_arns, None).allowed
    assert decide(access("ListSecrets", target=None), identity(ALLOW_ALL), None).allowed


def test_actions_match_case_insensitively_with_wildcards() -> None:
    lower = identity({"Effect": "Allow", "Action": "SecretsManager:get?ecret*", "Resource": "*"})
    assert decide(access("GetSecretValue"), lower, None).allowed
    assert not decide(access("DescribeSecret"), lower, None).allowed


# ARNs and globs (AZ-4)


def test_arns_match_part_by_part() -> None:
    assert arn_matches("arn:aws:secretsmanager:*:*:secret:app/*", SECRET)
    assert arn_matches(f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:app/db-??????", SECRET)
    assert not arn_matches(
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:app/db-?????", SECRET
    )
    assert not arn_matches("arn:aws:*:secret:app/db-AbCdEf", SECRET)  # * stays in its part
    assert not arn_matches("arn:aws:secretsmanager:*:*:secret:APP/*", SECRET)  # case-sensitive
    assert arn_matches("arn:*:*:*:*:*", SECRET)
    assert not arn_matches("arn:*:*:*:*:*", "*")


@cache
def reference_glob(pattern: str, text: str) -> bool:
    """A plain recursive reading of * and ? to check the compiled matcher against."""
    if not pattern:
        return not text
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return reference_glob(rest, text) or (bool(text) and reference_glob(pattern, text[1:]))
    if not text:
        return False
    return (head == "?" or head == text[0]) and reference_glob(rest, text[1:])


@given(st.text("ab*?.:/", max_size=8), st.text("ab.:/", max_size=8))
def test_globs_agree_with_a_plain_reading(pattern: str, text: str) -> None:
    assert glob_matches(pattern, text, folded=False) == reference_glob(pattern, text)


# Conditions (AZ-7 to AZ-9)


def holds(operator: str, key: str, values: Any, **context: tuple[str, ...]) -> bool:
    listed = tuple(values) if isinstance(values, list) else (values,)
    return condition_holds(
        Condition(operator, key, listed), {k.lower(): v for k, v in context.items()}
    )


def test_string_operators_and_a_missing_key() -> None:
    stage = {"secretsmanager:VersionStage": ("AWSCURRENT",)}
    assert holds(
        "StringEquals", "secretsmanager:VersionStage", ["AWSPENDING", "AWSCURRENT"], **stage
    )
    assert not holds("StringEquals", "secretsmanager:VersionStage", "awscurrent", **stage)
    assert holds("StringEqualsIgnoreCase", "secretsmanager:versionstage", "awscurrent", **stage)
    assert holds("StringLike", "secretsmanager:VersionStage", "AWS*", **stage)
    assert not holds("StringNotLike", "secretsmanager:VersionStage", "AWS*", **stage)
    # A key the request does not have: positive operators fail, negated ones hold,
    # ...IfExists holds.
    assert not holds("StringEquals", "secretsmanager:VersionStage", "AWSCURRENT")
    assert holds("StringNotEquals", "secretsmanager:VersionStage", "AWSCURRENT")
    assert holds("StringEqualsIfExists", "secretsmanager:VersionStage", "AWSCURRENT")
    assert not holds("StringEqualsIfExists", "secretsmanager:VersionStage", "X", **stage)


def test_set_operators() -> None:
    keys = {"aws:TagKeys": ("team", "env")}
    assert holds("ForAllValues:StringEquals", "aws:TagKeys", ["team", "env", "owner"], **keys)
    assert not holds("ForAllValues:StringEquals", "aws:TagKeys", ["team"], **keys)
    assert holds("ForAnyValue:StringEquals", "aws:TagKeys", ["env"], **keys)
    assert not holds("ForAnyValue:StringEquals", "aws:TagKeys", ["owner"], **keys)
    assert holds("ForAllValues:StringEquals", "aws:TagKeys", ["team"])  # no values: vacuous
    assert not holds("ForAnyValue:StringEquals", "aws:TagKeys", ["team"])


def test_null_bool_numeric_date_ip_and_arn_operators() -> None:
    assert holds("Null", "aws:RequestTag/team", "true")
    assert not holds("Null", "aws:RequestTag/team", True, **{"aws:RequestTag/team": ("a",)})
    assert holds("Null", "aws:RequestTag/team", "false", **{"aws:RequestTag/team": ("a",)})
    flag = {"secretsmanager:BlockPublicPolicy": ("true",)}
    assert holds("Bool", "secretsmanager:BlockPublicPolicy", True, **flag)
    assert not holds("Bool", "secretsmanager:BlockPublicPolicy", "false", **flag)
    days = {"secretsmanager:RecoveryWindowInDays": ("7",)}
    assert holds("NumericGreaterThanEquals", "secretsmanager:RecoveryWindowInDays", 7, **days)
    assert not holds("NumericLessThan", "secretsmanager:RecoveryWindowInDays", "7", **days)
    assert not holds("NumericEquals", "secretsmanager:RecoveryWindowInDays", "seven", **days)
    now = {"aws:CurrentTime": ("2026-03-19T12:00:00Z",)}
    assert holds("DateLessThan", "aws:CurrentTime", "2026-03-20T00:00:00Z", **now)
    assert holds("DateGreaterThan", "aws:CurrentTime", "2026-03-19", **now)
    assert holds("DateLessThan", "aws:CurrentTime", 1773921601, **now)  # epoch seconds
    assert not holds("DateLessThan", "aws:CurrentTime", "not a date", **now)
    ip = {"aws:SourceIp": ("10.1.2.3",)}
    assert holds("IpAddress", "aws:SourceIp", ["192.0.2.0/24", "10.0.0.0/8"], **ip)
    assert holds("NotIpAddress", "aws:SourceIp", "192.0.2.0/24", **ip)
    assert not holds("IpAddress", "aws:SourceIp", "2001:db8::/32", **ip)
    principal = {"aws:PrincipalArn": (USER,)}
    assert holds("ArnLike", "aws:PrincipalArn", f"arn:aws:iam::{ACCOUNT}:user/*", **principal)
    assert holds("ArnNotEquals", "aws:PrincipalArn", OTHER, **principal)


# What an operation asks (AZ-6, AZ-8, AZ-10)


def test_the_accesses_of_an_operation_and_their_context_keys() -> None:
    caller = Requester(USER, "10.0.0.1", NOW)
    target = Target(
        SECRET, "app/db", tags=({"Key": "Team", "Value": "payments"},), resource_policy=None
    )
    (get,) = accesses_for("GetSecretValue", {"SecretId": "app/db"}, caller, target)
    assert (get.action, get.resource, get.named_resource) == (
        "secretsmanager:GetSecretValue",
        SECRET,
        "app/db",
    )
    assert get.context == {
        "aws:principalarn": (USER,),
        "aws:currenttime": ("2026-03-19T12:00:00Z",),
        "aws:epochtime": (str(int(NOW.timestamp())),),
        "aws:sourceip": ("10.0.0.1",),
        "secretsmanager:secretid": (SECRET,),
        "secretsmanager:resourcetag/team": ("payments",),
        "aws:resourcetag/team": ("payments",),
    }
    batch = accesses_for("BatchGetSecretValue", {"Filters": []}, caller, None)
    assert [(each.action, each.resource) for each in batch] == [
        ("secretsmanager:BatchGetSecretValue", "*"),
        ("secretsmanager:ListSecrets", "*"),
    ]
    validate = accesses_for("ValidateResourcePolicy", {"ResourcePolicy": "{}"}, caller, None)
    assert [each.action for each in validate] == [
        "secretsmanager:ValidateResourcePolicy",
        "secretsmanager:PutResourcePolicy",
    ]
    pattern = Target(SECRET[: -len("AbCdEf")] + "??????", "app/db")
    tags = [{"Key": "Team", "Value": "payments"}]
    create = accesses_for("CreateSecret", {"Name": "app/db", "Tags": tags}, caller, pattern)
    assert [each.action for each in create] == [
        "secretsmanager:CreateSecret",
        "secretsmanager:TagResource",
    ]
    assert create[0].context["aws:requesttag/team"] == ("payments",)
    assert create[0].context["aws:tagkeys"] == ("Team",)
    assert create[0].context["secretsmanager:name"] == ("app/db",)
    assert "secretsmanager:secretid" not in create[0].context
    untag = access_for("UntagResource", {"SecretId": "app/db", "TagKeys": ["a"]}, caller, target)
    assert untag.context["aws:tagkeys"] == ("a",)
    stage = access_for(
        "GetSecretValue", {"SecretId": "app/db", "VersionStage": "AWSPREVIOUS"}, caller, target
    )
    assert stage.context["secretsmanager:versionstage"] == ("AWSPREVIOUS",)


def test_denial_messages_take_aws_forms() -> None:
    only_list = identity({"Effect": "Allow", "Action": "secretsmanager:List*", "Resource": "*"})
    get = access()
    assert denial_message(get, decide(get, only_list, None)) == (
        f"User: {USER} is not authorized to perform: secretsmanager:GetSecretValue on "
        f"resource: {SECRET} because no identity-based policy allows the "
        "secretsmanager:GetSecretValue action"
    )
    batch = access("BatchGetSecretValue", target=None)
    assert denial_message(batch, decide(batch, identity(DENY_GET_ALL), None)) == (
        f"User: {USER} is not authorized to perform: secretsmanager:BatchGetSecretValue "
        "with an explicit deny in an identity-based policy"
    )
    denied = decide(get, None, resource({**DENY_GET, "Principal": "*"}))
    assert denial_message(get, denied).endswith("with an explicit deny in a resource-based policy")
    assert denied.record(get) == {
        "action": "secretsmanager:GetSecretValue",
        "resource": SECRET,
        "decision": "explicit-deny",
        "policy_type": "resource",
        "statement_index": 1,
        "sid": "NoGet",
    }


DENY_GET_ALL = {"Effect": "Deny", "Action": "secretsmanager:*Get*", "Resource": "*"}


# The grammar of identity policies and the credentials file (AZ-1)


def test_an_identity_policy_names_no_principal() -> None:
    text = json.dumps({"Statement": [{**ALLOW_ALL, "Principal": "*"}]})
    messages = [finding.message for finding in check_identity_policy(text).findings]
    assert messages == ["Statement 1: an identity policy names no Principal or NotPrincipal."]
    assert check_identity_policy(json.dumps({"Statement": ALLOW_ALL})).policy is not None


def credentials(tmp_path: Path, policy_line: str) -> Path:
    path = tmp_path / "credentials.toml"
    path.write_text(
        "[[principals]]\n"
        'access_key_id = "AKIAEXAMPLEAUDIT0001"\n'
        'secret_access_key = "auditor-secret-access-key-000000"\n'
        f'arn = "arn:aws:iam::{ACCOUNT}:user/auditor"\n' + policy_line
    )
    path.chmod(0o600)
    return path


UNKNOWN = {"StringIs": {"a": "b"}}


@pytest.mark.parametrize(
    ("policy_line", "problem"),
    [
        ("policy = '{\"Statement\": []}'\n", "Statement must be a statement object"),
        ("policy = 'not json'\n", "not valid JSON"),
        ("policy = 3\n", "policy must be a string"),
        (
            f"policy = '''{json.dumps({'Statement': {**ALLOW_ALL, 'Principal': '*'}})}'''\n",
            "names no Principal",
        ),
        (
            f"policy = '''{json.dumps({'Statement': {**ALLOW_ALL, 'Condition': UNKNOWN}})}'''\n",
            "is not a condition operator",
        ),
    ],
)
def test_a_bad_identity_policy_refuses_the_file_naming_the_principal(
    tmp_path: Path, policy_line: str, problem: str
) -> None:
    with pytest.raises(CredentialsFileError) as refused:
        Principals.load(credentials(tmp_path, policy_line))
    assert f"principal 1 (arn:aws:iam::{ACCOUNT}:user/auditor)" in str(refused.value)
    assert problem in str(refused.value)


def test_an_identity_policy_is_read_with_the_file(tmp_path: Path) -> None:
    text = json.dumps({"Statement": DENY_GET})
    principals = Principals.load(credentials(tmp_path, f"policy = '''{text}'''\n"))
    loaded = principals.find("AKIAEXAMPLEAUDIT0001")
    assert loaded is not None and loaded.policy is not None
    assert loaded.policy.statements == identity(DENY_GET).statements
