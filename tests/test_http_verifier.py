"""The SigV4 verifier and the credentials file, without a server: requests signed by
botocore at a fixed time, then altered the ways clients and attackers alter them."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.awsrequest import AWSRequest
from http_harness import (
    ALICE,
    ALICE_WITH_WRONG_SECRET,
    MALLORY,
    REGION,
    SIGNATURE_MISMATCH,
    UNRECOGNIZED,
    sign,
    target_headers,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.auth import (
    Authorization,
    CredentialsFileError,
    Denial,
    Principal,
    Principals,
    ReceivedRequest,
    SignatureVerifier,
    TemporaryPrincipalsFull,
    botocore_signature,
    new_principal,
    new_temporary_principal,
    root_path_signature,
    write_credentials_file,
)

NOW = datetime(2025, 3, 19, 12, 0, 0, tzinfo=UTC)
ROTATION_ARN = "arn:aws:iam::111122223333:role/secret-ledger-rotation"
THREADS = 8


@pytest.fixture
def verifier() -> SignatureVerifier:
    return SignatureVerifier(Principals.of([ALICE]), clock=lambda: NOW)


def signed_request(
    body: bytes = b"{}",
    *,
    principal: Principal = ALICE,
    signed_at: datetime = NOW,
    region: str = REGION,
    service: str = "secretsmanager",
    operation: str = "ListSecrets",
    extra_headers: dict[str, str] | None = None,
    unsigned: frozenset[str] = frozenset(),
) -> ReceivedRequest:
    """A request as botocore signs it (with the principal's session token, if any,
    and leaving out of the signature the ``unsigned`` headers), then as the server
    receives it."""
    headers = {**target_headers(operation), **(extra_headers or {})}
    request = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=body, headers=headers)
    sign(request, principal, signed_at, service=service, region=region, unsigned=unsigned)
    received = [(name.lower(), value) for name, value in request.headers.items()]
    return ReceivedRequest("POST", "/", "", [("host", "127.0.0.1:8080"), *received], body)


def replaced_header(request: ReceivedRequest, name: str, value: str | None) -> ReceivedRequest:
    headers = [(key, item) for key, item in request.headers if key != name]
    if value is not None:
        headers.append((name, value))
    return ReceivedRequest(
        request.method, request.path, request.query_string, headers, request.body
    )


def denial_of(verifier: SignatureVerifier, request: ReceivedRequest) -> tuple[str, str]:
    with pytest.raises(Denial) as raised:
        verifier.verify(request)
    return raised.value.error.code, raised.value.error.message


def test_a_botocore_signature_verifies_and_names_the_principal_and_region(
    verifier: SignatureVerifier,
) -> None:
    identity = verifier.verify(signed_request(b'{"MaxResults": 5}'))
    assert identity.principal == ALICE
    assert identity.region == REGION


def test_any_region_in_the_scope_is_accepted(verifier: SignatureVerifier) -> None:
    assert verifier.verify(signed_request(region="ap-southeast-2")).region == "ap-southeast-2"


def test_a_signature_for_another_service_is_refused(verifier: SignatureVerifier) -> None:
    assert denial_of(verifier, signed_request(service="kms")) == (
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'secretsmanager'. ",
    )


def test_fifteen_minutes_of_clock_skew_are_tolerated(verifier: SignatureVerifier) -> None:
    for minutes in (-15, 15):
        verifier.verify(signed_request(signed_at=NOW + timedelta(minutes=minutes)))


def test_more_than_fifteen_minutes_of_skew_is_refused_in_aws_words(
    verifier: SignatureVerifier,
) -> None:
    stale = signed_request(signed_at=NOW - timedelta(minutes=15, seconds=1))
    assert denial_of(verifier, stale) == (
        "InvalidSignatureException",
        "Signature expired: 20250319T114459Z is now earlier than 20250319T114500Z "
        "(20250319T120000Z - 15 min.)",
    )
    assert denial_of(verifier, signed_request(signed_at=NOW + timedelta(minutes=16))) == (
        "InvalidSignatureException",
        "Signature not yet current: 20250319T121600Z is still later than 20250319T121500Z "
        "(20250319T120000Z + 15 min.)",
    )


def test_a_declared_payload_hash_must_be_the_hash_of_the_body(
    verifier: SignatureVerifier,
) -> None:
    request = signed_request(extra_headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert denial_of(verifier, request) == ("InvalidSignatureException", SIGNATURE_MISMATCH)


def test_a_session_token_on_a_long_term_principal_is_refused(
    verifier: SignatureVerifier,
) -> None:
    request = signed_request(extra_headers={"X-Amz-Security-Token": "FwoGZXIvYXdzE"})
    assert denial_of(verifier, request) == ("UnrecognizedClientException", UNRECOGNIZED)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (
            "Basic YWxpY2U6c2VjcmV0",
            "Unsupported AWS 'algorithm': 'Basic'; expected 'AWS4-HMAC-SHA256'.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEALICE0001/20250319/eu-west-1/secretsmanager/"
            "aws4_request",
            "Authorization header requires 'SignedHeaders' parameter. "
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEALICE0001/20250319, SignedHeaders=host, "
            "Signature=00",
            "Authorization header's Credential parameter must be "
            "'<access key id>/<yyyymmdd>/<region>/<service>/aws4_request'.",
        ),
        ("", "Unsupported AWS 'algorithm': ''; expected 'AWS4-HMAC-SHA256'."),
    ],
)
def test_a_malformed_authorization_header_is_an_incomplete_signature(
    verifier: SignatureVerifier, authorization: str, message: str
) -> None:
    request = replaced_header(signed_request(), "authorization", authorization)
    assert denial_of(verifier, request) == ("IncompleteSignature", message)


def test_the_claimed_access_key_is_kept_even_when_the_header_is_malformed(
    verifier: SignatureVerifier,
) -> None:
    request = replaced_header(
        signed_request(),
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEMALLORY03/20250319",
    )
    with pytest.raises(Denial) as raised:
        verifier.verify(request)
    assert raised.value.claimed_access_key_id == "AKIAEXAMPLEMALLORY03"


def test_the_request_time_header_is_required(verifier: SignatureVerifier) -> None:
    request = replaced_header(signed_request(), "x-amz-date", None)
    assert denial_of(verifier, request)[0] == "IncompleteSignature"


def test_a_changed_signed_header_breaks_the_signature(verifier: SignatureVerifier) -> None:
    request = replaced_header(signed_request(), "x-amz-target", "secretsmanager.DeleteSecret")
    assert denial_of(verifier, request) == ("InvalidSignatureException", SIGNATURE_MISMATCH)


def test_a_scope_date_other_than_the_request_date_is_refused(
    verifier: SignatureVerifier,
) -> None:
    request = signed_request()
    authorization = request.header("authorization")
    assert authorization is not None
    forged = replaced_header(
        request, "authorization", authorization.replace("/20250319/", "/20250318/")
    )
    code, message = denial_of(verifier, forged)
    assert code == "InvalidSignatureException"
    assert message.startswith("Date in Credential scope does not match YYYYMMDD")


# --------------------------------------------------------------------------------------
# The door: what must be signed, and only once (SD1-SD4)
# --------------------------------------------------------------------------------------


def test_an_unsigned_target_is_refused_and_cannot_be_swapped_for_another(
    verifier: SignatureVerifier,
) -> None:
    """A GetSecretValue signed over host and x-amz-date only is refused, and so is the
    same Authorization header replayed with another operation's target."""
    request = signed_request(operation="GetSecretValue", unsigned=frozenset({"x-amz-target"}))
    authorization = request.header("authorization")
    assert authorization is not None and "x-amz-target" not in authorization
    expected = (
        "IncompleteSignature",
        "Headers present in the request must be in 'SignedHeaders': x-amz-target.",
    )
    assert denial_of(verifier, request) == expected
    replayed = replaced_header(request, "x-amz-target", "secretsmanager.DeleteSecret")
    assert denial_of(verifier, replayed) == expected


@pytest.mark.parametrize(
    "name", ["x-amz-content-sha256", "x-amz-security-token", "x-amz-meta-anything"]
)
def test_every_x_amz_header_sent_must_be_signed(verifier: SignatureVerifier, name: str) -> None:
    request = replaced_header(signed_request(), name, "a-value-sent-after-signing")
    assert denial_of(verifier, request) == (
        "IncompleteSignature",
        f"Headers present in the request must be in 'SignedHeaders': {name}.",
    )


def test_headers_other_than_host_and_x_amz_may_go_unsigned(verifier: SignatureVerifier) -> None:
    """botocore leaves User-Agent unsigned; proxies add headers such as Via."""
    request = replaced_header(signed_request(), "user-agent", "Boto3/1.35")
    assert verifier.verify(replaced_header(request, "via", "1.1 proxy")).principal == ALICE


@pytest.mark.parametrize("name", ["host", "x-amz-date"])
def test_host_and_the_request_time_must_be_signed(verifier: SignatureVerifier, name: str) -> None:
    request = signed_request(unsigned=frozenset({name}))
    assert denial_of(verifier, request) == (
        "IncompleteSignature",
        f"'{name}' must be a 'SignedHeader' in the AWS Authorization.",
    )


def test_a_signed_host_must_be_sent(verifier: SignatureVerifier) -> None:
    """An HTTP/1.0 request may omit Host; one that lists it as signed may not."""
    request = replaced_header(signed_request(), "host", None)
    assert denial_of(verifier, request) == (
        "IncompleteSignature",
        "Headers listed in 'SignedHeaders' are missing from the request: host.",
    )


@pytest.mark.parametrize("name", ["x-amz-target", "host"])
def test_a_guarded_header_may_be_sent_only_once(verifier: SignatureVerifier, name: str) -> None:
    """Two values would be signed as one joined by a comma; which one the server acts
    on must not be a guess."""
    request = signed_request()
    value = request.header(name)
    assert value is not None
    doubled = ReceivedRequest(
        request.method,
        request.path,
        request.query_string,
        [*request.headers, (name, value)],
        request.body,
    )
    assert denial_of(verifier, doubled) == (
        "IncompleteSignature",
        f"The request has more than one '{name}' header.",
    )


@pytest.mark.parametrize("parameter", ["Credential", "SignedHeaders", "Signature"])
def test_each_authorization_parameter_appears_exactly_once(
    verifier: SignatureVerifier, parameter: str
) -> None:
    """With two ``Credential=``, the one verified and the one a denial names could differ."""
    request = signed_request()
    authorization = request.header("authorization")
    assert authorization is not None
    found = re.search(rf"{parameter}=[^,]*", authorization)
    assert found is not None
    repeated = replaced_header(request, "authorization", f"{authorization}, {found.group(0)}")
    assert denial_of(verifier, repeated) == (
        "IncompleteSignature",
        f"Authorization header has more than one '{parameter}' parameter.",
    )


# --------------------------------------------------------------------------------------
# Temporary credentials (TC1-TC4)
# --------------------------------------------------------------------------------------

CAROL = Principal(
    access_key_id="ASIAEXAMPLECAROL0003",
    secret_access_key="carol-secret-access-key-000000000000000000",
    arn="arn:aws:iam::111122223333:user/carol",
    session_token="carol-session-token-0000000000000000",
    expiration=NOW + timedelta(hours=1),
)


def verifier_at(principals: Principals, now: datetime) -> SignatureVerifier:
    return SignatureVerifier(principals, clock=lambda: now)


def test_a_temporary_credential_signs_with_its_token(verifier: SignatureVerifier) -> None:
    request = signed_request(principal=CAROL)
    assert request.header("x-amz-security-token") == CAROL.session_token
    authorization = request.header("authorization")
    assert authorization is not None and "x-amz-security-token" in authorization
    identity = verifier_at(Principals.of([ALICE, CAROL]), NOW).verify(request)
    assert identity.principal == CAROL


def test_a_temporary_credential_without_its_token_is_unrecognized() -> None:
    without_token = replace(CAROL, session_token=None, expiration=None)
    request = signed_request(principal=without_token)
    verifier = verifier_at(Principals.of([CAROL]), NOW)
    assert denial_of(verifier, request) == ("UnrecognizedClientException", UNRECOGNIZED)


def test_a_wrong_token_is_unrecognized_even_when_signed() -> None:
    wrong = replace(CAROL, session_token="carol-session-token-0000000000000001")
    verifier = verifier_at(Principals.of([CAROL]), NOW)
    assert denial_of(verifier, signed_request(principal=wrong)) == (
        "UnrecognizedClientException",
        UNRECOGNIZED,
    )


def test_a_token_sent_unsigned_is_an_incomplete_signature() -> None:
    request = signed_request(principal=CAROL, unsigned=frozenset({"x-amz-security-token"}))
    verifier = verifier_at(Principals.of([CAROL]), NOW)
    assert denial_of(verifier, request) == (
        "IncompleteSignature",
        "Headers present in the request must be in 'SignedHeaders': x-amz-security-token.",
    )


def test_a_temporary_credential_is_refused_from_its_expiration_on() -> None:
    assert CAROL.expiration is not None
    principals = Principals.of([CAROL])
    before = CAROL.expiration - timedelta(microseconds=1)
    verifier_at(principals, before).verify(signed_request(principal=CAROL, signed_at=before))
    for now in (CAROL.expiration, CAROL.expiration + timedelta(minutes=5)):
        request = signed_request(principal=CAROL, signed_at=now)
        assert denial_of(verifier_at(principals, now), request) == (
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )


def test_expiry_is_told_only_to_a_holder_of_the_secret_key() -> None:
    assert CAROL.expiration is not None
    later = CAROL.expiration + timedelta(minutes=1)
    forged = replace(CAROL, secret_access_key="not-carols-secret-access-key-00000000")
    request = signed_request(principal=forged, signed_at=later)
    assert denial_of(verifier_at(Principals.of([CAROL]), later), request) == (
        "InvalidSignatureException",
        SIGNATURE_MISMATCH,
    )


def test_a_minted_temporary_principal_is_accepted_until_it_expires_or_is_revoked() -> None:
    principals = Principals.of([ALICE])
    rotation = new_temporary_principal(ROTATION_ARN, 900, lambda: NOW)
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}", rotation.access_key_id)
    assert rotation.expiration == NOW + timedelta(seconds=900)
    assert rotation.session_token is not None and len(rotation.session_token) >= 64
    assert rotation.secret_access_key not in repr(rotation)
    assert rotation.session_token not in repr(rotation)
    principals.add_temporary(rotation, NOW)
    request = signed_request(principal=rotation)
    assert verifier_at(principals, NOW).verify(request).principal.arn == ROTATION_ARN
    later = NOW + timedelta(seconds=900)
    expired = signed_request(principal=rotation, signed_at=later)
    assert denial_of(verifier_at(principals, later), expired)[0] == "ExpiredTokenException"
    principals.revoke(rotation.access_key_id)
    assert denial_of(verifier_at(principals, NOW), request) == (
        "UnrecognizedClientException",
        UNRECOGNIZED,
    )
    assert principals.find(rotation.access_key_id) is None


def test_temporary_principals_are_bounded_and_expired_ones_are_dropped() -> None:
    principals = Principals({ALICE.access_key_id: ALICE}, temporary_max=3)
    first = [new_temporary_principal(ROTATION_ARN, 60, lambda: NOW) for _ in range(3)]
    for principal in first:
        principals.add_temporary(principal, NOW)
    with pytest.raises(TemporaryPrincipalsFull):
        principals.add_temporary(new_temporary_principal(ROTATION_ARN, 60, lambda: NOW), NOW)
    later = NOW + timedelta(seconds=60)
    fresh = new_temporary_principal(ROTATION_ARN, 60, lambda: later)
    principals.add_temporary(fresh, later)
    assert [principals.find(principal.access_key_id) for principal in first] == [None] * 3
    assert principals.find(fresh.access_key_id) == fresh
    assert principals.find(ALICE.access_key_id) == ALICE


def test_temporary_principals_can_be_added_and_found_from_many_threads() -> None:
    principals = Principals({ALICE.access_key_id: ALICE}, temporary_max=THREADS * 50)

    def add_and_find(_: int) -> bool:
        minted = [new_temporary_principal(ROTATION_ARN, 60, lambda: NOW) for _ in range(50)]
        for principal in minted:
            principals.add_temporary(principal, NOW)
        return all(principals.find(principal.access_key_id) == principal for principal in minted)

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(add_and_find, range(THREADS)))
    with pytest.raises(TemporaryPrincipalsFull):
        principals.add_temporary(new_temporary_principal(ROTATION_ARN, 60, lambda: NOW), NOW)


# --------------------------------------------------------------------------------------
# The credentials file
# --------------------------------------------------------------------------------------


def test_a_written_credentials_file_is_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    principal = new_principal("arn:aws:iam::123456789012:user/ops")
    write_credentials_file(path, [principal, ALICE])
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = Principals.load(path)
    assert loaded.find(principal.access_key_id) == principal
    assert loaded.find(ALICE.access_key_id) == ALICE
    assert principal.access_key_id.startswith("AKIA") and len(principal.access_key_id) == 20
    assert len(principal.secret_access_key) == 40
    assert principal.secret_access_key not in repr(principal)


def test_a_credentials_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    write_credentials_file(path, [ALICE])
    with pytest.raises(FileExistsError):
        write_credentials_file(path, [MALLORY])


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("", "no [[principals]]"),
        ("[[principals]]\naccess_key_id = 'AKIAEXAMPLEALICE0001'\n", "missing"),
        (
            "[[principals]]\naccess_key_id = 'short'\nsecret_access_key = "
            "'0123456789abcdef0123'\narn = 'arn:aws:iam::111122223333:user/a'\n",
            "access_key_id",
        ),
        (
            "[[principals]]\naccess_key_id = 'AKIAEXAMPLEALICE0001'\nsecret_access_key = "
            "'0123456789abcdef0123'\narn = 'not-an-arn'\n",
            "arn",
        ),
        ("principals = 'everyone'\n", "array of tables"),
        ("[[principals]\n", "not valid TOML"),
        (
            "[[principals]]\naccess_key_id = 'AKIAEXAMPLEALICE0001'\nsecret_access_key = "
            "'0123456789abcdef0123'\narn = 'arn:aws:iam::111122223333:user/a'\nrole = 'admin'\n",
            "unknown ['role']",
        ),
    ],
)
def test_a_malformed_credentials_file_is_refused_with_a_reason(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(CredentialsFileError, match=complaint.replace("[", r"\[")):
        Principals.load(path)


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    write_credentials_file(path, [ALICE])
    path.chmod(0o644)
    with pytest.raises(CredentialsFileError, match="chmod 600"):
        Principals.load(path)


def test_an_access_key_may_appear_only_once(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    write_credentials_file(path, [ALICE, ALICE_WITH_WRONG_SECRET])
    with pytest.raises(CredentialsFileError, match="more than once"):
        Principals.load(path)


def test_temporary_credentials_in_the_file_load_back(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    forever = replace(CAROL, access_key_id="ASIAEXAMPLEERIN00005", expiration=None)
    write_credentials_file(path, [ALICE, CAROL, forever])
    loaded = Principals.load(path)
    assert loaded.find(CAROL.access_key_id) == CAROL
    assert loaded.find(forever.access_key_id) == forever
    text = path.read_text()
    assert "expiration = 2025-03-19T13:00:00Z" in text


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ("expiration = 2026-01-01T00:00:00Z\n", "an expiration needs a session_token"),
        (
            "session_token = 'carol-session-token-00000000'\nexpiration = 2026-01-01T00:00:00\n",
            "RFC 3339 date-time with an offset",
        ),
        (
            "session_token = 'carol-session-token-00000000'\nexpiration = '2026-01-01T00:00:00Z'\n",
            "unquoted RFC 3339",
        ),
        ("session_token = 'short'\n", "session_token must be"),
    ],
)
def test_a_malformed_temporary_credential_is_refused_with_a_reason(
    tmp_path: Path, extra: str, complaint: str
) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(
        "[[principals]]\naccess_key_id = 'ASIAEXAMPLECAROL0003'\nsecret_access_key = "
        "'0123456789abcdef0123'\narn = 'arn:aws:iam::111122223333:user/c'\n" + extra
    )
    path.chmod(0o600)
    with pytest.raises(CredentialsFileError, match=complaint):
        Principals.load(path)


HEADER_NAMES = ("host", "x-amz-date", "x-amz-target", "content-type", "x-amz-meta-a", "user-agent")
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x09, max_codepoint=0xFF, blacklist_characters="\r\n"),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["POST", "post", "GET"]),
    headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=10),
    signed=st.lists(st.sampled_from(HEADER_NAMES), min_size=1, max_size=8),
    body=st.binary(max_size=40),
)
def test_the_root_path_signature_is_botocores(
    method: str, headers: list[tuple[str, str]], signed: list[str], body: bytes
) -> None:
    """The verifier computes signatures for POST / itself (`root_path_signature`);
    for every mix of repeated headers, listed-twice names, runs of whitespace and
    Latin-1 values, it must agree with botocore's signer on the same request."""
    sent = {name for name, _ in headers}
    listed = tuple(name for name in signed if name in sent) or ("host",)
    request = ReceivedRequest(method, "/", "", [("host", "h"), *headers], body)
    authorization = Authorization(
        ALICE.access_key_id, "20250319", REGION, "secretsmanager", "aws4_request", listed, ""
    )
    amz_date = "20250319T120000Z"
    assert root_path_signature(request, authorization, ALICE, amz_date) == botocore_signature(
        request, authorization, ALICE, amz_date
    )
