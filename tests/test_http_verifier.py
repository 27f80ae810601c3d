"""The SigV4 verifier and the credentials file, without a server: requests signed by
botocore at a fixed time, then altered the ways clients and attackers alter them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from http_harness import (
    ALICE,
    ALICE_WITH_WRONG_SECRET,
    MALLORY,
    REGION,
    SIGNATURE_MISMATCH,
    UNRECOGNIZED,
    target_headers,
)

from ledger.auth import (
    CredentialsFileError,
    Denial,
    Principal,
    Principals,
    ReceivedRequest,
    SignatureVerifier,
    new_principal,
    write_credentials_file,
)

NOW = datetime(2025, 3, 19, 12, 0, 0, tzinfo=UTC)


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
    extra_headers: dict[str, str] | None = None,
) -> ReceivedRequest:
    """A request as botocore signs it, then as the server receives it."""
    headers = {**target_headers("ListSecrets"), **(extra_headers or {})}
    request = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=body, headers=headers)
    signer = SigV4Auth(
        Credentials(principal.access_key_id, principal.secret_access_key), service, region
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        signer.add_auth(request)
    received = [(name.lower(), value) for name, value in request.headers.items()]
    return ReceivedRequest("POST", "/", "", [("host", "127.0.0.1:8080"), *received], body)


def replaced_header(request: ReceivedRequest, name: str, value: str | None) -> ReceivedRequest:
    headers = [(key, item) for key, item in request.headers if key != name]
    if value is not None:
        headers.append((name, value))
    return ReceivedRequest(request.method, request.path, request.query_string, headers,
                           request.body)


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


def test_a_session_token_is_refused_since_none_is_ever_issued(
    verifier: SignatureVerifier,
) -> None:
    request = signed_request(extra_headers={"X-Amz-Security-Token": "FwoGZXIvYXdzE"})
    assert denial_of(verifier, request) == ("UnrecognizedClientException", UNRECOGNIZED)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Basic YWxpY2U6c2VjcmV0",
         "Unsupported AWS 'algorithm': 'Basic'; expected 'AWS4-HMAC-SHA256'."),
        ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEALICE0001/20250319/eu-west-1/secretsmanager/"
         "aws4_request", "Authorization header requires 'SignedHeaders' parameter. "
         "Authorization header requires 'Signature' parameter."),
        ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEALICE0001/20250319, SignedHeaders=host, "
         "Signature=00", "Authorization header's Credential parameter must be "
         "'<access key id>/<yyyymmdd>/<region>/<service>/aws4_request'."),
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
        signed_request(), "authorization",
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
    forged = replaced_header(request, "authorization", authorization.replace("/20250319/",
                                                                             "/20250318/"))
    code, message = denial_of(verifier, forged)
    assert code == "InvalidSignatureException"
    assert message.startswith("Date in Credential scope does not match YYYYMMDD")


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
        ("[[principals]]\naccess_key_id = 'short'\nsecret_access_key = "
         "'0123456789abcdef0123'\narn = 'arn:aws:iam::111122223333:user/a'\n", "access_key_id"),
        ("[[principals]]\naccess_key_id = 'AKIAEXAMPLEALICE0001'\nsecret_access_key = "
         "'0123456789abcdef0123'\narn = 'not-an-arn'\n", "arn"),
        ("principals = 'everyone'\n", "array of tables"),
        ("[[principals]\n", "not valid TOML"),
        ("[[principals]]\naccess_key_id = 'AKIAEXAMPLEALICE0001'\nsecret_access_key = "
         "'0123456789abcdef0123'\narn = 'arn:aws:iam::111122223333:user/a'\nrole = 'admin'\n",
         "unknown ['role']"),
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
