"""The policy grammar and the broad-access check (docs/policies.md RP-2 to RP-11), and
the tag rules (TG-1 to TG-6) as pure functions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.errors import (
    InvalidParameterException,
    MalformedPolicyDocumentException,
    PublicPolicyException,
)
from ledger.policies import (
    BROAD_ACCESS,
    NESTING_DEPTH_MAX,
    POLICY_CHARACTERS_MAX,
    SYNTAX,
    Condition,
    Principal,
    check_policy,
    exceeds_nesting,
    is_condition_operator,
    require_attachable,
)
from ledger.tags import (
    TAGS_PER_SECRET_MAX,
    changed_tags,
    checked_tag_keys,
    checked_tags,
    tags_after,
    tags_without,
)

ACCOUNT_ROOT = "arn:aws:iam::111122223333:root"


def statement(**elements: Any) -> dict[str, Any]:
    """A valid statement, with ``elements`` replacing or (``None``) removing its own."""
    base: dict[str, Any] = {
        "Sid": "ReadIt",
        "Effect": "Allow",
        "Principal": {"AWS": ACCOUNT_ROOT},
        "Action": "secretsmanager:GetSecretValue",
        "Resource": "*",
    }
    base.update(elements)
    return {name: value for name, value in base.items() if value is not None}


def policy(*statements: dict[str, Any], **elements: Any) -> str:
    document: dict[str, Any] = {"Version": "2012-10-17", "Statement": list(statements)}
    document.update(elements)
    return json.dumps(document)


def messages(text: str) -> list[str]:
    return [finding.message for finding in check_policy(text).findings]


def test_a_valid_policy_is_read_into_statements() -> None:
    text = policy(
        statement(Condition={"StringEquals": {"aws:PrincipalTag/team": ["a", "b"]}}),
        statement(
            Sid="NoDelete",
            Effect="Deny",
            Principal="*",
            Action=["secretsmanager:Delete*", "secretsmanager:Put?ecretValue"],
            Resource=None,
            NotResource="arn:aws:secretsmanager:eu-west-1:111122223333:secret:other-*",
        ),
    )

    check = check_policy(text)

    assert check.findings == ()
    assert check.policy is not None
    first, second = check.policy.statements
    assert first.principals == (Principal("AWS", ACCOUNT_ROOT),)
    assert first.conditions == (Condition("StringEquals", "aws:PrincipalTag/team", ("a", "b")),)
    assert (second.effect, second.not_resource, second.principals) == (
        "Deny",
        True,
        (Principal("*", "*"),),
    )
    assert second.actions == ("secretsmanager:Delete*", "secretsmanager:Put?ecretValue")


def test_a_single_statement_object_and_no_version_are_allowed() -> None:
    text = json.dumps({"Statement": statement()})
    assert check_policy(text).findings == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "The policy is not valid JSON: Expecting value at line 1, column 1."),
        ("[]", "The policy must be a JSON object."),
        ('{"Statement": NaN}', "The policy is not valid JSON: NaN is not a JSON value."),
        (
            '{"Statement": [], "Statement": []}',
            "The element 'Statement' appears twice in one JSON object.",
        ),
        (
            policy(statement(), Version="2020-01-01"),
            "Version must be one of 2012-10-17, 2008-10-17.",
        ),
        (
            json.dumps({"Version": "2012-10-17"}),
            "Statement must be a statement object or a non-empty list of them.",
        ),
        (policy(statement(), Extra=1), "The policy has an unknown element 'Extra'."),
        (policy("text"), "Statement 1 must be a JSON object."),  # type: ignore[arg-type]
        (
            policy(statement(Sid="has space")),
            "Statement 1: Sid must be a string of ASCII letters and digits.",
        ),
        (policy(statement(), statement()), "The Sid 'ReadIt' names more than one statement."),
        (policy(statement(Effect="allow")), 'Statement 1: Effect must be "Allow" or "Deny".'),
        (policy(statement(Principal=None)), "Statement 1 needs Principal or NotPrincipal."),
        (policy(statement(NotPrincipal="*")), "Statement 1 has both Principal and NotPrincipal."),
        (policy(statement(NotAction="*")), "Statement 1 has both Action and NotAction."),
        (policy(statement(Resource=None)), "Statement 1 needs Resource or NotResource."),
        (
            policy(statement(Action=[])),
            "Statement 1: Action must be a non-empty string or a non-empty list of them.",
        ),
        (
            policy(statement(Action="GetSecretValue")),
            "Statement 1: Action 'GetSecretValue' is not \"*\" or service:action.",
        ),
        (
            policy(statement(Resource="secret")),
            "Statement 1: Resource 'secret' is not \"*\" or an ARN.",
        ),
        (
            policy(statement(Principal={})),
            'Statement 1: Principal must be "*" or an object of principal types.',
        ),
        (
            policy(statement(Principal={"User": "bob"})),
            "Statement 1: Principal has an unknown principal type 'User'.",
        ),
        (
            policy(statement(Principal={"AWS": "bob"})),
            "Statement 1: Principal: AWS principal 'bob' is not supported.",
        ),
        (
            policy(statement(Principal={"Service": "lambda"})),
            "Statement 1: Principal: 'lambda' is not a service principal.",
        ),
        (
            policy(statement(Condition={"StringEqual": {"k": "v"}})),
            "Statement 1: 'StringEqual' is not a condition operator.",
        ),
        (
            policy(statement(Condition={"Bool": {}})),
            "Statement 1: Bool must be a non-empty object of keys.",
        ),
        (
            policy(statement(Condition={"Bool": {"aws:SecureTransport": []}})),
            "Statement 1: Bool 'aws:SecureTransport' needs a value or a non-empty list of values.",
        ),
        (
            policy(statement(Condition={"Bool": {"k": {"nested": 1}}})),
            "Statement 1: Bool 'k' needs a value or a non-empty list of values.",
        ),
        (
            policy(statement(Condition=[])),
            "Statement 1: Condition must be a non-empty object of operators.",
        ),
        (
            policy(statement(Effect="Allow", Extra=True)),
            "Statement 1 has an unknown element 'Extra'.",
        ),
    ],
)
def test_each_grammar_rule_has_its_finding(text: str, expected: str) -> None:
    check = check_policy(text)
    assert check.policy is None
    assert [finding.check_name for finding in check.findings] == [SYNTAX]
    assert messages(text) == [expected]


def test_every_finding_is_reported_up_to_twenty() -> None:
    broken = [statement(Sid=f"S{index}", Effect="Maybe") for index in range(30)]
    findings = check_policy(policy(*broken)).findings
    assert len(findings) == 20
    assert findings[0].message == 'Statement 1: Effect must be "Allow" or "Deny".'


@pytest.mark.parametrize(
    "operator",
    [
        "StringEquals",
        "ForAnyValue:StringLike",
        "ForAllValues:ArnNotLikeIfExists",
        "Null",
        "NumericLessThanEqualsIfExists",
        "Bool",
    ],
)
def test_condition_operators(operator: str) -> None:
    assert is_condition_operator(operator)


@pytest.mark.parametrize(
    "operator", ["NullIfExists", "IfExists", "StringEqual", "ForSomeValue:StringLike", ""]
)
def test_not_condition_operators(operator: str) -> None:
    assert not is_condition_operator(operator)


@pytest.mark.parametrize(
    "principal",
    [
        "*",
        "111122223333",
        "arn:aws:iam::111122223333:user/division/alice",
        "arn:aws:iam::111122223333:role/app",
        "arn:aws:sts::111122223333:assumed-role/app/session-1",
        "arn:aws-cn:iam::111122223333:root",
    ],
)
def test_supported_aws_principals(principal: str) -> None:
    assert check_policy(policy(statement(Principal={"AWS": [principal]}))).policy is not None


@pytest.mark.parametrize(
    "principal",
    ["arn:aws:iam::*:root", "arn:aws:iam::111122223333:group/admins", "1111", "alice"],
)
def test_unsupported_aws_principals_refuse_a_put_with_awss_text(principal: str) -> None:
    with pytest.raises(MalformedPolicyDocumentException) as refused:
        require_attachable(
            policy(statement(Principal={"AWS": principal})), block_public_policy=False
        )
    assert refused.value.message == "This resource policy contains an unsupported principal."


def test_put_messages_for_service_principals_and_other_syntax() -> None:
    with pytest.raises(MalformedPolicyDocumentException) as service:
        require_attachable(policy(statement(Principal={"Service": "*"})), block_public_policy=False)
    with pytest.raises(MalformedPolicyDocumentException) as syntax:
        require_attachable("{", block_public_policy=False)
    assert service.value.message == "This resource policy contains an invalid service principal."
    assert syntax.value.message == "This resource policy contains a syntax error."


def test_the_length_and_depth_are_bounded_before_parsing() -> None:
    deep = "[" * 10_000 + "]" * 10_000
    nested_policy = '{"Statement": ' + "[" * NESTING_DEPTH_MAX + "]" * NESTING_DEPTH_MAX + "}"

    assert messages(deep) == [f"The policy nests deeper than {NESTING_DEPTH_MAX} levels."]
    assert messages(nested_policy) == [f"The policy nests deeper than {NESTING_DEPTH_MAX} levels."]
    assert messages(" " * (POLICY_CHARACTERS_MAX + 1)) == [
        f"The policy is longer than {POLICY_CHARACTERS_MAX} characters."
    ]
    with pytest.raises(MalformedPolicyDocumentException):
        require_attachable(deep, block_public_policy=False)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    quoted = '"' + "[{" * 50 + '\\"' + '"'
    assert not exceeds_nesting(quoted, 2)
    assert exceeds_nesting("[[[", 2)
    assert not exceeds_nesting("[[]][[]]", 2)


@pytest.mark.parametrize(
    "broad",
    [
        statement(Principal="*"),
        statement(Principal={"AWS": "*"}),
        statement(Principal={"AWS": [ACCOUNT_ROOT, "*"]}),
        statement(Principal=None, NotPrincipal={"AWS": ACCOUNT_ROOT}),
        statement(Principal="*", Condition={"StringEquals": {"aws:SourceVpce": "vpce-*"}}),
        statement(Principal="*", Condition={"StringEqualsIfExists": {"aws:SourceAccount": "111"}}),
        statement(
            Principal="*",
            Condition={"ForAnyValue:StringEquals": {"aws:PrincipalOrgID": "o-1"}},
        ),
        statement(Principal="*", Condition={"StringEquals": {"aws:PrincipalTag/x": "y"}}),
        statement(Principal="*", Condition={"Bool": {"aws:SecureTransport": True}}),
    ],
)
def test_broad_statements(broad: dict[str, Any]) -> None:
    text = policy(broad)
    check = check_policy(text)
    assert [finding.check_name for finding in check.findings] == [BROAD_ACCESS]
    assert require_attachable(text, block_public_policy=False) == check.policy
    with pytest.raises(PublicPolicyException) as refused:
        require_attachable(text, block_public_policy=True)
    assert refused.value.message == (
        "You can't attach a resource-based policy that allows broad access to the secret."
    )


@pytest.mark.parametrize(
    "narrow",
    [
        statement(),
        statement(Effect="Deny", Principal="*"),
        statement(Principal="*", Condition={"StringEquals": {"aws:SourceAccount": "111"}}),
        statement(Principal="*", Condition={"ArnLike": {"aws:SourceArn": ["arn:aws:s3:::b"]}}),
        statement(Principal="*", Condition={"StringEquals": {"AWS:PrincipalOrgID": "o-1"}}),
        statement(Principal="*", Condition={"StringLike": {"aws:SourceVpc": "vpc-1"}}),
        statement(Principal={"Service": "lambda.amazonaws.com"}),
    ],
)
def test_narrow_statements(narrow: dict[str, Any]) -> None:
    text = policy(narrow)
    assert check_policy(text).findings == ()
    assert require_attachable(text, block_public_policy=True) is not None


def test_one_broad_finding_per_broad_statement() -> None:
    text = policy(
        statement(Sid="A"), statement(Sid="B", Principal="*"), statement(Sid="C", Principal="*")
    )
    findings = check_policy(text).findings
    assert [finding.message[:11] for finding in findings] == ["Statement 2", "Statement 3"]


# Tags (TG-1 to TG-6)


def test_checked_tags_normalise_and_keep_request_order() -> None:
    assert checked_tags([{"Key": "b", "Value": "1"}, {"Key": "a"}]) == [
        {"Key": "b", "Value": "1"},
        {"Key": "a", "Value": ""},
    ]
    assert checked_tags([{"Key": "Équipe 7", "Value": "café +-=._:/@"}]) == [
        {"Key": "Équipe 7", "Value": "café +-=._:/@"}
    ]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([{"Value": "v"}], "Each tag needs a Key."),
        (
            [{"Key": "aws:cloudformation:stack-name", "Value": "s"}],
            "You can't modify system tags. Tag key: 'aws:cloudformation:stack-name'.",
        ),
        ([{"Key": "AWS:x", "Value": "s"}], "You can't modify system tags. Tag key: 'AWS:x'."),
        (
            [{"Key": "a*b", "Value": "v"}],
            "Tag keys can contain only Unicode letters, numbers, "
            "spaces and _ . : / = + - @. Tag key: 'a*b'.",
        ),
        (
            [{"Key": "k", "Value": "v;"}],
            "Tag values can contain only Unicode letters, "
            "numbers, spaces and _ . : / = + - @. Tag key: 'k'.",
        ),
        (
            [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "1"}],
            "A request can name each tag key once. Tag key: 'k' appears twice.",
        ),
    ],
)
def test_refused_tags(tags: list[dict[str, str]], message: str) -> None:
    with pytest.raises(InvalidParameterException) as refused:
        checked_tags(tags)
    assert refused.value.message == message


def test_untag_keys_refuse_system_keys_and_count_repeats_once() -> None:
    assert checked_tag_keys(["b", "a", "b"]) == ["b", "a"]
    with pytest.raises(InvalidParameterException):
        checked_tag_keys(["aws:x"])


def test_changes_upsert_in_place_and_count_toward_fifty() -> None:
    current = [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    requested = [{"Key": "c", "Value": "3"}, {"Key": "a", "Value": "9"}, {"Key": "b", "Value": "2"}]

    changed = changed_tags(current, requested)

    assert changed == [{"Key": "c", "Value": "3"}, {"Key": "a", "Value": "9"}]
    assert tags_after(current, changed) == [
        {"Key": "a", "Value": "9"},
        {"Key": "b", "Value": "2"},
        {"Key": "c", "Value": "3"},
    ]
    assert tags_without(tags_after(current, changed), ["a"]) == [
        {"Key": "b", "Value": "2"},
        {"Key": "c", "Value": "3"},
    ]
    full = [{"Key": f"k{index}", "Value": ""} for index in range(TAGS_PER_SECRET_MAX)]
    assert changed_tags(full, [{"Key": "k0", "Value": "x"}]) == [{"Key": "k0", "Value": "x"}]
    with pytest.raises(InvalidParameterException) as refused:
        changed_tags(full, [{"Key": "one-more", "Value": ""}])
    assert refused.value.message == (
        "A secret can have at most 50 tags; this request would leave it with 51."
    )
