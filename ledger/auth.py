"""Who is calling: AWS Signature Version 4 verified against a file of principals.

The credentials file is TOML, one table per principal, read once at start-up
(restart the server to pick up changes)::

    [[principals]]
    access_key_id = "AKIAEXAMPLEALICE0001"
    secret_access_key = "..."
    arn = "arn:aws:iam::123456789012:user/alice"

    [[principals]]                      # temporary credentials (rules TC1-TC4)
    access_key_id = "ASIAEXAMPLECAROL0003"
    secret_access_key = "..."
    arn = "arn:aws:iam::123456789012:user/carol"
    session_token = "..."
    expiration = 2026-03-19T12:00:00Z   # optional; a TOML (RFC 3339) date-time

    [[principals]]                      # an identity policy (AZ-1): what it may do
    access_key_id = "AKIAEXAMPLEAUDITOR04"
    secret_access_key = "..."
    arn = "arn:aws:iam::123456789012:user/auditor"
    policy = '''{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
      "Action": ["secretsmanager:DescribeSecret", "secretsmanager:List*"],
      "Resource": "*"}]}'''

A principal without ``policy`` is an administrator (AZ-3): it may call every
operation on every secret that no resource policy denies it. A policy is checked
when the file is read; one that does not parse refuses the whole file, naming the
principal and the problem.

It must be readable by its owner only (mode 0600, as ssh insists for its keys):
a file that others can read is refused rather than trusted. Temporary
principals minted at run time (`new_temporary_principal`, for the rotation
runner) are added to `Principals` in memory, never to the file.

`SignatureVerifier.verify` recomputes the signature of a received request with
botocore's own SigV4 code (`SigV4Auth` over an `AWSRequest`), for the headers
the client says it signed, and compares in constant time. It never writes the
algorithm again. Choices, each as AWS Secrets Manager behaves where known:

* Errors are HTTP 400, as Secrets Manager answers them (the API reference's
  Common Errors; recorded responses quoted in aws/aws-sdk-cpp#2407 and
  aws/aws-sdk-js#254): no Authorization header is
  ``MissingAuthenticationTokenException`` "Missing Authentication Token"; an
  unknown access key, or a session token that is missing, wrong or not
  expected, is ``UnrecognizedClientException``; an expired temporary
  credential is ``ExpiredTokenException``; a malformed header or a header
  left out of the signature is ``IncompleteSignature``; a wrong signature, a
  body changed after signing, a wrong credential scope, or a request time more
  than 15 minutes away from the server's clock is ``InvalidSignatureException``
  with AWS's wording.
* The payload is always hashed: a signed ``X-Amz-Content-SHA256`` must be the
  SHA-256 of the body received (``UNSIGNED-PAYLOAD`` is refused), otherwise a
  body could be swapped under a valid signature.
* The door (rules SD1-SD4 in docs/decisions.md): ``host`` and ``x-amz-date``
  must be present and signed, and so must every other ``x-amz-*`` header sent
  (``X-Amz-Target`` above all: an unsigned target could be swapped for another
  operation under a valid signature); each of those appears once; every header
  listed as signed is present; the Authorization header has exactly one
  ``Credential``, ``SignedHeaders`` and ``Signature``. Only the ``X-Amz-Date``
  header carries the request time (the ``Date`` header is not accepted as an
  alternative).
* Any region in the credential scope is accepted (the signature covers it); the
  server's configured region stays authoritative for ARNs and audit records.
* A captured request can be replayed within the 15-minute window, as with AWS;
  ``ClientRequestToken`` makes replayed writes no-ops.
* Echoed parts of a refused header are shown only when short and made of safe
  characters, since error messages are kept in the audit trail.
"""

from __future__ import annotations

import errno
import functools
import hmac
import os
import re
import secrets as random_source
import stat
import string
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from types import MappingProxyType
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from ledger.errors import (
    ExpiredTokenException,
    IncompleteSignature,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    SecretsManagerError,
    UnrecognizedClientException,
)
from ledger.policies import Policy, check_identity_policy
from ledger.private_files import publish_new_private_file

SERVICE_NAME = "secretsmanager"
ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
AMZ_DATE_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z")
CLOCK_SKEW_SECONDS_MAX = 15 * 60
SIGNED_HEADERS_MAX = 64
REQUIRED_SIGNED_HEADERS = ("host", "x-amz-date")
AMZ_HEADER_PREFIX = "x-amz-"
PRINCIPALS_MAX = 10_000
CREDENTIALS_FILE_SIZE_BYTES_MAX = 4 * 1024 * 1024
CREDENTIALS_FILE_NAME = "secretledger-credentials.toml"
URL_HOST = "secretsmanager.invalid"
SIGNING_KEYS_CACHED_MAX = 64
ACCESS_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9]{16,128}")
SECRET_ACCESS_KEY_PATTERN = re.compile(r"[\x21-\x7e]{16,256}")
ARN_PATTERN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:[\x21-\x7e]{1,1024}")
SAFE_ECHO_PATTERN = re.compile(r"[A-Za-z0-9_.+=/@-]{0,64}")
CLAIMED_KEY_PATTERN = re.compile(r"Credential=([A-Za-z0-9]{1,128})")
LONG_TERM_KEY_PREFIX = "AKIA"
TEMPORARY_KEY_PREFIX = "ASIA"
TEMPORARY_LIFETIME_SECONDS_MAX = 12 * 60 * 60
TEMPORARY_PRINCIPALS_MAX = 1024
SESSION_TOKEN_LENGTH_MAX = 4096
SESSION_TOKEN_PATTERN = re.compile(rf"[\x21-\x7e]{{16,{SESSION_TOKEN_LENGTH_MAX}}}")
SESSION_TOKEN_RANDOM_BYTES = 96
GENERATED_KEY_ALPHABET = string.ascii_uppercase + "234567"
GENERATED_KEY_LENGTH = 20
GENERATED_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
GENERATED_SECRET_LENGTH = 40
PRINCIPAL_MEMBERS = frozenset({"access_key_id", "secret_access_key", "arn"})
PRINCIPAL_OPTIONAL_MEMBERS = frozenset({"session_token", "expiration", "policy"})

MISSING_TOKEN_MESSAGE = "Missing Authentication Token"
UNRECOGNIZED_CLIENT_MESSAGE = "The security token included in the request is invalid."
EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"
SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------
# Principals and the credentials file
# --------------------------------------------------------------------------------------


class CredentialsFileError(Exception):
    """The credentials file is missing, unsafe or malformed; the message says which and
    where, never a secret access key."""


@dataclass(frozen=True)
class Principal:
    """Who signs requests. With a ``session_token`` it is a temporary credential:
    requests must carry that token, signed (TC1); with an ``expiration`` too, it is
    refused from that instant on (TC2). ``policy``: its identity policy (AZ-1);
    None makes it an administrator (AZ-3)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    arn: str
    session_token: str | None = field(default=None, repr=False)
    expiration: datetime | None = None
    policy: Policy | None = None

    def __post_init__(self) -> None:
        assert self.expiration is None or self.session_token is not None, (
            "only a temporary credential (one with a session token) expires"
        )
        assert self.expiration is None or self.expiration.utcoffset() is not None, (
            "an expiration is an instant: it needs a UTC offset"
        )

    def expired(self, now: datetime) -> bool:
        return self.expiration is not None and now >= self.expiration


class TemporaryPrincipalsFull(Exception):
    """As many unexpired temporary principals as allowed are already in use."""


class Principals:
    """The principals a server accepts, by access key id: those of the credentials
    file (fixed at start-up) and temporary ones added at run time (TC4).

    Thread-safe: the server's worker threads look principals up while a rotation
    runner adds and revokes temporary ones. At most ``temporary_max`` temporary
    principals are held; expired ones are dropped whenever one is added."""

    def __init__(
        self,
        configured: Mapping[str, Principal],
        *,
        temporary_max: int = TEMPORARY_PRINCIPALS_MAX,
    ) -> None:
        assert configured, "a server never starts open: at least one principal"
        assert temporary_max > 0, "room for at least one temporary principal"
        self.configured: Mapping[str, Principal] = MappingProxyType(dict(configured))
        self.temporary_max = temporary_max
        self._temporary: dict[str, Principal] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, principals: Iterable[Principal]) -> Principals:
        by_key: dict[str, Principal] = {}
        for principal in principals:
            if principal.access_key_id in by_key:
                raise CredentialsFileError(
                    f"access key id {principal.access_key_id} appears more than once"
                )
            by_key[principal.access_key_id] = principal
        if not by_key:
            raise CredentialsFileError("no [[principals]]: the server never starts open")
        return cls(by_key)

    @classmethod
    def load(cls, path: Path) -> Principals:
        """Read and check a credentials file (owner-only permissions, every member valid)."""
        try:
            status = path.stat()
        except OSError as error:
            raise CredentialsFileError(f"{path}: cannot read ({error.strerror})") from None
        if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsFileError(
                f"{path}: other users may read it (mode {stat.S_IMODE(status.st_mode):04o}); "
                f"run: chmod 600 {path}"
            )
        if status.st_size > CREDENTIALS_FILE_SIZE_BYTES_MAX:
            raise CredentialsFileError(
                f"{path}: larger than {CREDENTIALS_FILE_SIZE_BYTES_MAX} bytes"
            )
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CredentialsFileError(f"{path}: cannot read ({error.strerror})") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise CredentialsFileError(f"{path}: not valid TOML ({error})") from None
        return cls.of(principals_in(document, path))

    def find(self, access_key_id: str) -> Principal | None:
        """The principal of an access key id, expired or not (the verifier tells)."""
        principal = self.configured.get(access_key_id)
        if principal is not None:
            return principal
        with self._lock:
            return self._temporary.get(access_key_id)

    def add_temporary(self, principal: Principal, now: datetime) -> None:
        """Accept ``principal`` until it expires or is revoked; expired temporary
        principals are dropped first. Raises `TemporaryPrincipalsFull` when
        ``temporary_max`` unexpired ones are held already."""
        assert principal.session_token is not None, "a temporary principal has a token"
        assert principal.expiration is not None, "a temporary principal expires"
        assert not principal.expired(now), "a temporary principal is added unexpired"
        assert principal.access_key_id not in self.configured, "a fresh access key id"
        with self._lock:
            assert principal.access_key_id not in self._temporary, "a fresh access key id"
            self._temporary = {
                key: held for key, held in self._temporary.items() if not held.expired(now)
            }
            if len(self._temporary) >= self.temporary_max:
                raise TemporaryPrincipalsFull(
                    f"{self.temporary_max} temporary principals are in use already"
                )
            self._temporary[principal.access_key_id] = principal

    def revoke(self, access_key_id: str) -> None:
        """Stop accepting a temporary principal before it expires (a no-op if it is
        gone already); configured principals are changed only in the file."""
        assert access_key_id not in self.configured, "only temporary principals are revoked"
        with self._lock:
            self._temporary.pop(access_key_id, None)


def principals_in(document: Mapping[str, Any], path: Path) -> list[Principal]:
    unknown = set(document) - {"principals"}
    if unknown:
        raise CredentialsFileError(f"{path}: unknown table(s) {sorted(unknown)}")
    entries = document.get("principals", [])
    if not isinstance(entries, list):
        raise CredentialsFileError(f"{path}: 'principals' must be an array of tables")
    if len(entries) > PRINCIPALS_MAX:
        raise CredentialsFileError(f"{path}: more than {PRINCIPALS_MAX} principals")
    return [
        principal_from(entry, f"{path}: principal {index}")
        for index, entry in enumerate(entries, start=1)
    ]


def principal_from(entry: Any, where: str) -> Principal:
    if not isinstance(entry, dict):
        raise CredentialsFileError(f"{where}: must be a table")
    missing = PRINCIPAL_MEMBERS - set(entry)
    unknown = set(entry) - PRINCIPAL_MEMBERS - PRINCIPAL_OPTIONAL_MEMBERS
    if missing or unknown:
        raise CredentialsFileError(
            f"{where}: needs {sorted(PRINCIPAL_MEMBERS)}, "
            f"may have {sorted(PRINCIPAL_OPTIONAL_MEMBERS)}; "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    access_key_id, secret_access_key, arn = (
        entry["access_key_id"],
        entry["secret_access_key"],
        entry["arn"],
    )
    if not isinstance(access_key_id, str) or not ACCESS_KEY_ID_PATTERN.fullmatch(access_key_id):
        raise CredentialsFileError(f"{where}: access_key_id must be 16-128 letters or digits")
    if not isinstance(secret_access_key, str) or not SECRET_ACCESS_KEY_PATTERN.fullmatch(
        secret_access_key
    ):
        raise CredentialsFileError(
            f"{where}: secret_access_key must be 16-256 printable characters without spaces"
        )
    if not isinstance(arn, str) or not ARN_PATTERN.fullmatch(arn):
        raise CredentialsFileError(f"{where}: arn must be an ARN with a 12-digit account id")
    return Principal(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        arn=arn,
        session_token=session_token_from(entry, where),
        expiration=expiration_from(entry, where),
        policy=policy_from(entry, where),
    )


def policy_from(entry: Mapping[str, Any], where: str) -> Policy | None:
    """AZ-1: an identity policy, IAM JSON in a TOML string, read with the grammar of
    `ledger.policies.check_identity_policy`; any finding refuses the file."""
    text = entry.get("policy")
    if text is None:
        return None
    who = f"{where} ({entry['arn']})"
    if not isinstance(text, str):
        raise CredentialsFileError(f"{who}: policy must be a string holding IAM JSON")
    check = check_identity_policy(text)
    if check.policy is None:
        problems = "; ".join(finding.message for finding in check.findings)
        raise CredentialsFileError(f"{who}: policy refused: {problems}")
    return check.policy


def session_token_from(entry: Mapping[str, Any], where: str) -> str | None:
    token = entry.get("session_token")
    if token is not None and (
        not isinstance(token, str) or not SESSION_TOKEN_PATTERN.fullmatch(token)
    ):
        raise CredentialsFileError(
            f"{where}: session_token must be 16-{SESSION_TOKEN_LENGTH_MAX} printable "
            "characters without spaces"
        )
    return token


def expiration_from(entry: Mapping[str, Any], where: str) -> datetime | None:
    """TC2: an expiration is a TOML offset date-time (RFC 3339), on a principal
    with a session token."""
    expiration = entry.get("expiration")
    if expiration is None:
        return None
    if "session_token" not in entry:
        raise CredentialsFileError(f"{where}: an expiration needs a session_token")
    if not isinstance(expiration, datetime) or expiration.utcoffset() is None:
        raise CredentialsFileError(
            f"{where}: expiration must be an unquoted RFC 3339 date-time with an offset, "
            "such as 2026-03-19T12:00:00Z"
        )
    return expiration.astimezone(UTC)


def new_principal(arn: str) -> Principal:
    """A fresh long-term principal: an AKIA-style 20-character key id and a
    40-character secret."""
    return Principal(
        access_key_id=random_access_key_id(LONG_TERM_KEY_PREFIX),
        secret_access_key=random_secret_access_key(),
        arn=arn,
    )


def new_temporary_principal(
    arn: str,
    lifetime_seconds: int,
    clock: Callable[[], datetime],
    policy: Policy | None = None,
) -> Principal:
    """TC4: a fresh temporary principal for ``arn``: an ASIA-style key id (as AWS
    gives temporary credentials), a secret, a session token, and an expiration
    ``lifetime_seconds`` after ``clock()``; ``policy`` as for a principal of the
    file (AZ-1, AZ-3). Hand it to `Principals.add_temporary`; it is never written
    to a file."""
    assert 0 < lifetime_seconds <= TEMPORARY_LIFETIME_SECONDS_MAX, "1 s to 12 hours"
    assert ARN_PATTERN.fullmatch(arn), "an ARN with a 12-digit account id"
    now = clock()
    assert now.utcoffset() is not None, "the clock tells UTC instants"
    return Principal(
        access_key_id=random_access_key_id(TEMPORARY_KEY_PREFIX),
        secret_access_key=random_secret_access_key(),
        arn=arn,
        session_token=random_source.token_urlsafe(SESSION_TOKEN_RANDOM_BYTES),
        expiration=now + timedelta(seconds=lifetime_seconds),
        policy=policy,
    )


def random_access_key_id(prefix: str) -> str:
    suffix_length = GENERATED_KEY_LENGTH - len(prefix)
    return prefix + "".join(
        random_source.choice(GENERATED_KEY_ALPHABET) for _ in range(suffix_length)
    )


def random_secret_access_key() -> str:
    return "".join(
        random_source.choice(GENERATED_SECRET_ALPHABET) for _ in range(GENERATED_SECRET_LENGTH)
    )


def write_credentials_file(path: Path, principals: Sequence[Principal]) -> None:
    """Create ``path`` with mode 0600 (`ledger.private_files`: written and fsynced under a
    temporary name, then linked to ``path``, so no reader sees it half-written).

    Raises ``FileExistsError`` if ``path`` exists (it is never overwritten), and the
    system's ``OSError`` if it cannot be written (a missing directory included)."""
    assert principals, "a credentials file names at least one principal"
    lines = ["# secret-ledger credentials: keep this file private (mode 0600).", ""]
    for principal in principals:
        lines += [
            "[[principals]]",
            f"access_key_id = {toml_string(principal.access_key_id)}",
            f"secret_access_key = {toml_string(principal.secret_access_key)}",
            f"arn = {toml_string(principal.arn)}",
        ]
        if principal.session_token is not None:
            lines.append(f"session_token = {toml_string(principal.session_token)}")
        if principal.expiration is not None:
            lines.append(f"expiration = {rfc3339(principal.expiration)}")
        lines.append("")
    if not publish_new_private_file(path, "\n".join(lines).encode("utf-8")):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))


def rfc3339(instant: datetime) -> str:
    """A UTC instant as an RFC 3339 date-time (also a TOML offset date-time)."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def toml_string(value: str) -> str:
    """A TOML basic string for the printable-ASCII values this module writes."""
    assert all(" " <= character <= "~" for character in value), "printable ASCII only"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------
# Received requests and their signatures
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    """An HTTP request as the server received it: header names lower-case, in order."""

    method: str
    path: str
    query_string: str
    headers: Sequence[tuple[str, str]]
    body: bytes = field(repr=False)
    # The values of each header name, in order (verification asks for a dozen).
    _values: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values: dict[str, list[str]] = {}
        for name, value in self.headers:
            values.setdefault(name, []).append(value)
        object.__setattr__(self, "_values", values)

    def header(self, name: str) -> str | None:
        values = self._values.get(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))


@dataclass(frozen=True)
class Identity:
    """An authenticated caller and the region its signature was scoped to."""

    principal: Principal
    region: str


class Denial(Exception):
    """A request refused by authentication: the AWS error to answer and the access key
    id the client claimed ("" if none could be read), for the audit record."""

    def __init__(self, error: SecretsManagerError, claimed_access_key_id: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.claimed_access_key_id = claimed_access_key_id


@dataclass(frozen=True)
class Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date_stamp: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_amz_date(value: str) -> datetime | None:
    """``YYYYMMDDTHHMMSSZ`` as a UTC datetime, or None (strptime is ten times slower)."""
    if not AMZ_DATE_PATTERN.fullmatch(value):
        return None
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:  # a month 13, a February 30th...
        return None


def claimed_access_key_id(header: str | None) -> str:
    match = CLAIMED_KEY_PATTERN.search(header or "")
    return match.group(1) if match else ""


def echoed(value: str) -> str:
    """A client-supplied fragment fit for an error message, or a placeholder."""
    return value if SAFE_ECHO_PATTERN.fullmatch(value) else "<not shown>"


def parse_authorization(header: str) -> Authorization:
    """Raises IncompleteSignature for anything that is not a complete SigV4 header."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(
            f"Unsupported AWS 'algorithm': '{echoed(algorithm)}'; expected '{ALGORITHM}'."
        )
    parameters: dict[str, str] = {}
    for part in rest.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator:
            continue
        if name in parameters:  # SD3: which one would count is for no one to guess
            raise IncompleteSignature(
                f"Authorization header has more than one '{echoed(name)}' parameter."
            )
        parameters[name] = value
    missing = [
        name for name in ("Credential", "SignedHeaders", "Signature") if not parameters.get(name)
    ]
    if missing:
        raise IncompleteSignature(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        )
    scope = parameters["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise IncompleteSignature(
            "Authorization header's Credential parameter must be "
            "'<access key id>/<yyyymmdd>/<region>/<service>/aws4_request'."
        )
    signed_headers = tuple(parameters["SignedHeaders"].split(";"))
    if len(signed_headers) > SIGNED_HEADERS_MAX:
        raise IncompleteSignature(f"At most {SIGNED_HEADERS_MAX} headers may be signed.")
    return Authorization(
        access_key_id=scope[0],
        date_stamp=scope[1],
        region=scope[2],
        service=scope[3],
        terminator=scope[4],
        signed_headers=signed_headers,
        signature=parameters["Signature"],
    )


def check_signed_headers(request: ReceivedRequest, authorization: Authorization) -> None:
    """SD1, SD2, SD4: ``host``, ``x-amz-date`` and every ``x-amz-*`` header sent are
    signed and sent once; every header listed as signed was sent."""
    signed = set(authorization.signed_headers)
    for required in REQUIRED_SIGNED_HEADERS:
        if required not in signed:
            raise IncompleteSignature(
                f"'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )
    sent = {name for name, _ in request.headers}
    absent = sorted(signed - sent)
    if absent:
        raise IncompleteSignature(
            "Headers listed in 'SignedHeaders' are missing from the request: "
            f"{', '.join(echoed(name) for name in absent)}."
        )
    guarded: dict[str, int] = {}
    for name, _ in request.headers:
        if is_guarded_header(name):
            guarded[name] = guarded.get(name, 0) + 1
    unsigned = sorted(guarded.keys() - signed)
    if unsigned:
        raise IncompleteSignature(
            "Headers present in the request must be in 'SignedHeaders': "
            f"{', '.join(echoed(name) for name in unsigned)}."
        )
    repeated = sorted(name for name, count in guarded.items() if count > 1)
    if repeated:
        raise IncompleteSignature(f"The request has more than one '{echoed(repeated[0])}' header.")


def is_guarded_header(name: str) -> bool:
    """A header whose value the server acts on: it must be signed, and sent once."""
    return name == "host" or name.startswith(AMZ_HEADER_PREFIX)


def check_session_token(request: ReceivedRequest, principal: Principal) -> None:
    """TC1, TC3: a temporary principal's requests carry its token; others carry none.
    That the token is signed is rule SD2 (it is an ``x-amz-*`` header)."""
    tokens = request.header_values("x-amz-security-token")
    if principal.session_token is None:
        if tokens:
            raise UnrecognizedClientException(UNRECOGNIZED_CLIENT_MESSAGE)
        return
    if len(tokens) != 1 or not hmac.compare_digest(
        tokens[0].encode("utf-8", "replace"), principal.session_token.encode("ascii")
    ):
        raise UnrecognizedClientException(UNRECOGNIZED_CLIENT_MESSAGE)


class ReceivedRequestSigner(SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's SigV4 signer, pointed at a received request: it signs exactly the
    headers the client listed, and hashes exactly the body that arrived."""

    def __init__(
        self,
        credentials: Credentials,
        service_name: str,
        region_name: str,
        signed_headers: Sequence[str],
        body: bytes,
    ) -> None:
        super().__init__(credentials, service_name, region_name)
        self._client_signed_headers = signed_headers
        self._body = body

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        selected = HTTPHeaders()
        for name in self._client_signed_headers:
            for value in request.headers.get_all(name, []):
                selected[name] = value
        return selected

    def payload(self, request: AWSRequest) -> str:
        return sha256(self._body).hexdigest()

    def expected_signature(self, request: AWSRequest, amz_date: str) -> str:
        request.context["timestamp"] = amz_date
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        signature: str = self.signature(string_to_sign, request)
        return signature


class SignatureVerifier:
    """Verifies SigV4 on received requests against a set of principals."""

    def __init__(
        self,
        principals: Principals,
        *,
        service_name: str = SERVICE_NAME,
        clock: Callable[[], datetime] = utc_now,
        clock_skew_seconds_max: int = CLOCK_SKEW_SECONDS_MAX,
    ) -> None:
        assert clock_skew_seconds_max > 0, "a request time needs some tolerance"
        self.principals = principals
        self.service_name = service_name
        self.clock = clock
        self.clock_skew_seconds_max = clock_skew_seconds_max

    def verify(self, request: ReceivedRequest) -> Identity:
        """The authenticated caller, or raises `Denial`."""
        headers = request.header_values("authorization")
        claimed = claimed_access_key_id(headers[0] if headers else None)
        try:
            return self._verify(request, headers)
        except SecretsManagerError as error:
            raise Denial(error, claimed) from None

    def _verify(self, request: ReceivedRequest, authorization_headers: list[str]) -> Identity:
        if not authorization_headers:
            raise MissingAuthenticationTokenException(MISSING_TOKEN_MESSAGE)
        if len(authorization_headers) > 1:
            raise IncompleteSignature("The request has more than one Authorization header.")
        authorization = parse_authorization(authorization_headers[0])
        amz_date, request_time = self._request_time(request)
        check_signed_headers(request, authorization)
        self._check_scope(authorization, amz_date)
        principal = self.principals.find(authorization.access_key_id)
        if principal is None:
            raise UnrecognizedClientException(UNRECOGNIZED_CLIENT_MESSAGE)
        check_session_token(request, principal)
        self._check_clock_skew(amz_date, request_time)
        self._check_payload_hash(request)
        expected = self._expected_signature(request, authorization, principal, amz_date)
        if not hmac.compare_digest(
            expected.encode("ascii"), authorization.signature.encode("utf-8", "replace")
        ):
            raise InvalidSignatureException(SIGNATURE_MISMATCH_MESSAGE)
        if principal.expired(self.clock()):  # TC2, told only to a holder of the secret
            raise ExpiredTokenException(EXPIRED_TOKEN_MESSAGE)
        return Identity(principal=principal, region=authorization.region)

    def _request_time(self, request: ReceivedRequest) -> tuple[str, datetime]:
        """The ``X-Amz-Date`` header, as sent and as an instant."""
        amz_date = request.header("x-amz-date")
        if amz_date is None:
            raise IncompleteSignature(
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header."
            )
        request_time = parse_amz_date(amz_date)
        if request_time is None:
            raise IncompleteSignature(
                f"Date must be in ISO-8601 'basic format'. Got '{echoed(amz_date)}'."
            )
        return amz_date, request_time

    def _check_scope(self, authorization: Authorization, amz_date: str) -> None:
        if authorization.service != self.service_name:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{self.service_name}'. "
            )
        if authorization.terminator != TERMINATOR:
            raise InvalidSignatureException(
                f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
                f"not '{echoed(authorization.terminator)}'. "
            )
        if authorization.date_stamp != amz_date[:8]:
            raise InvalidSignatureException(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{echoed(authorization.date_stamp)}' != '{amz_date[:8]}', "
                f"from '{amz_date}'."
            )

    def _check_clock_skew(self, amz_date: str, request_time: datetime) -> None:
        now = self.clock()
        skew = timedelta(seconds=self.clock_skew_seconds_max)
        minutes = self.clock_skew_seconds_max // 60
        if request_time < now - skew:
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than "
                f"{(now - skew).strftime(AMZ_DATE_FORMAT)} "
                f"({now.strftime(AMZ_DATE_FORMAT)} - {minutes} min.)"
            )
        if request_time > now + skew:
            raise InvalidSignatureException(
                f"Signature not yet current: {amz_date} is still later than "
                f"{(now + skew).strftime(AMZ_DATE_FORMAT)} "
                f"({now.strftime(AMZ_DATE_FORMAT)} + {minutes} min.)"
            )

    def _check_payload_hash(self, request: ReceivedRequest) -> None:
        declared = request.header_values("x-amz-content-sha256")
        if declared and declared != [sha256(request.body).hexdigest()]:
            raise InvalidSignatureException(SIGNATURE_MISMATCH_MESSAGE)

    def _expected_signature(
        self,
        request: ReceivedRequest,
        authorization: Authorization,
        principal: Principal,
        amz_date: str,
    ) -> str:
        if request.path == "/" and not request.query_string:  # every SDK's POST /
            return root_path_signature(request, authorization, principal, amz_date)
        return botocore_signature(request, authorization, principal, amz_date)


def botocore_signature(
    request: ReceivedRequest, authorization: Authorization, principal: Principal, amz_date: str
) -> str:
    """The SigV4 signature botocore computes for the request as received."""
    # The host only matters as a signed header; a fixed one keeps URL parsing total.
    url = f"http://{URL_HOST}{request.path}"
    if request.query_string:
        url += "?" + request.query_string
    signed = AWSRequest(method=request.method, url=url)
    for name, value in request.headers:
        if name in authorization.signed_headers:
            signed.headers[name] = value
    signer = ReceivedRequestSigner(
        Credentials(principal.access_key_id, principal.secret_access_key),
        authorization.service,
        authorization.region,
        authorization.signed_headers,
        request.body,
    )
    return signer.expected_signature(signed, amz_date)


def root_path_signature(
    request: ReceivedRequest, authorization: Authorization, principal: Principal, amz_date: str
) -> str:
    """The SigV4 signature of a request for ``/`` without a query string, computed as
    `ReceivedRequestSigner` computes it (botocore's canonical request, string to sign
    and key derivation) without building botocore's request and header objects, which
    cost more than the rest of a GetSecretValue. Requires every signed header name to
    be a lower-case name the request carries (`check_signed_headers`); the payload
    hash is the body's (`_check_payload_hash` refused any other). Other paths and
    query strings go through botocore; tests/test_http_verifier.py compares the two."""
    values: dict[str, list[str]] = {}
    for name in authorization.signed_headers:  # a name listed twice adds its values twice
        values.setdefault(name, []).extend(request.header_values(name))
    names = sorted(values)
    canonical_headers = "".join(
        f"{name}:{','.join(' '.join(value.split()) for value in values[name])}\n" for name in names
    )
    canonical_request = "\n".join(
        (
            request.method.upper(),
            "/",
            "",
            canonical_headers,
            ";".join(names),
            sha256(request.body).hexdigest(),
        )
    )
    scope = f"{amz_date[:8]}/{authorization.region}/{authorization.service}/{TERMINATOR}"
    string_to_sign = "\n".join(
        (ALGORITHM, amz_date, scope, sha256(canonical_request.encode("utf-8")).hexdigest())
    )
    key = signing_key(
        principal.secret_access_key, amz_date[:8], authorization.region, authorization.service
    )
    return hmac.new(key, string_to_sign.encode("utf-8"), sha256).hexdigest()


@functools.lru_cache(maxsize=SIGNING_KEYS_CACHED_MAX)
def signing_key(secret_access_key: str, date_stamp: str, region: str, service: str) -> bytes:
    """SigV4's derived key: HMAC chain over the date, region, service and terminator.
    Kept for the day's requests (it changes with the date), a few keys at most: the
    secret keys it is derived from are in memory anyway (`Principals`), and a
    revoked principal is refused before its key is looked for."""
    key = f"AWS4{secret_access_key}".encode()
    for part in (date_stamp, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), sha256).digest()
    return key
