"""CloudTrail-shaped records and log files (rules: docs/audit.md).

Choices where AWS leaves the shape open (docs/audit.md states them all):

* ``userIdentity``: ``IAMUser`` for ``arn:…:user/…`` principals (``principalId`` and
  ``userName`` are the user name: the ledger has no IAM unique ids), ``AssumedRole``
  for ``arn:…:assumed-role/<role>/<session>`` (``principalId`` is ``<role>:<session>``),
  ``Unknown`` otherwise (``principalId`` is the access key id, else the principal).
  ``accountId`` is the principal ARN's account, else the ledger's. ``accessKeyId``
  appears only when the caller had one.
* ``eventTime`` is the completion time to the second (truncated), UTC, ``Z``.
* ``requestParameters`` is the allow-listed ``request["parameters"]`` from the event,
  ``null`` when the caller sent none of the allow-listed members.
* ``responseElements``: ``{"arn"}`` for every successful mutation; DeleteSecret adds
  ``name`` and ``deletionDate`` in the same ISO 8601 form as ``eventTime``
  (``2025-03-19T09:20:11Z``); ``null`` for reads, failures, and a mutation that named
  no secret (a forced delete of an unknown secret).
* ``resources``: omitted, as it usually is in AWS's Secrets Manager records (the ARN
  is in ``responseElements`` and ``additionalEventData``).
* ``additionalEventData`` (project extensions, never a value nor a hash of one):
  ``secretLedger.secretArn`` (the resolved secret) and, for reads,
  ``secretLedger.resolvedVersionId`` (the version served); a call touching several
  secrets (BatchGetSecretValue) lists them under ``secretLedger.resources``.
  Service events carry ``SecretId`` and ``secretLedger.versionId``.
* ``eventID`` is a UUID 5 of the request id, the record kind and (for service events)
  the secret and version, so that rebuilding gives byte-identical records.
* Service events (``AwsServiceEvent``): ``readOnly`` false; ``requestID`` is the id of
  the request that caused them (a user's DeleteSecret, or the service's own purge).
* JSON text is compact (``","``/``":"``), UTF-8, with keys in the fixed order below.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ledger.domain import SERVICE_PRINCIPAL

EVENT_VERSION: Final = "1.11"
EVENT_SOURCE: Final = "secretsmanager.amazonaws.com"
EVENT_ID_NAMESPACE: Final = uuid.UUID("8d1f0c55-3f6e-4a8e-9c7b-2b7d4e0a9f31")
EVENT_ID_PREFIX: Final = EVENT_ID_NAMESPACE.bytes
API_CALL: Final = "AwsApiCall"
SERVICE_EVENT: Final = "AwsServiceEvent"
RECORDS_PER_FILE_MAX: Final = 10_000
UNIQUE_STRING_LENGTH: Final = 16
GZIP_COMPRESSION_LEVEL: Final = 9


def format_event_time(moment: datetime) -> str:
    """``2025-03-19T09:20:11Z`` (truncated to the second)."""
    utc = moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, name))``, without building UUID objects."""
    digest = bytearray(hashlib.sha1(EVENT_ID_PREFIX + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def api_call_event_id(request_id: str) -> str:
    return uuid5_text(f"{request_id}/{API_CALL}")


def service_event_id(request_id: str, event_name: str, secret_arn: str, version_id: str) -> str:
    return uuid5_text(f"{request_id}/{event_name}/{secret_arn}/{version_id}")


def user_identity(principal_arn: str, access_key_id: str, account_id: str) -> dict[str, Any]:
    is_arn = principal_arn.startswith("arn:")
    parts = principal_arn.split(":", 5) if is_arn else []
    resource = parts[5] if len(parts) == 6 else ""
    identity: dict[str, Any] = {}
    if resource.startswith("user/"):
        user_name = resource.rsplit("/", 1)[-1]
        identity["type"] = "IAMUser"
        identity["principalId"] = user_name
    elif resource.startswith("assumed-role/") and resource.count("/") >= 2:
        _, role_name, session_name = resource.split("/", 2)
        identity["type"] = "AssumedRole"
        identity["principalId"] = f"{role_name}:{session_name}"
    else:
        identity["type"] = "Unknown"
        identity["principalId"] = access_key_id or principal_arn
    if is_arn:
        identity["arn"] = principal_arn
    identity["accountId"] = parts[4] if len(parts) == 6 and parts[4] else account_id
    if access_key_id:
        identity["accessKeyId"] = access_key_id
    if identity["type"] == "IAMUser":
        identity["userName"] = identity["principalId"]
    return identity


def api_call_record(
    request: Mapping[str, Any],
    *,
    event_time: datetime,
    read_only: bool,
    response_elements: dict[str, Any] | None,
    additional_event_data: dict[str, Any] | None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """The record of one API call, from the request context an event carries."""
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": user_identity(
            request["principal_arn"], request["access_key_id"], request["account_id"]
        ),
        "eventTime": format_event_time(event_time),
        "eventSource": EVENT_SOURCE,
        "eventName": request["operation"],
        "awsRegion": request["region"],
        "sourceIPAddress": request["source_ip"],
        "userAgent": request["user_agent"],
    }
    if error_code is not None:
        record["errorCode"] = error_code
        record["errorMessage"] = error_message or ""
    record["requestParameters"] = dict(request["parameters"]) or None
    record["responseElements"] = None if error_code is not None else response_elements
    if additional_event_data:
        record["additionalEventData"] = additional_event_data
    record["requestID"] = request["request_id"]
    record["eventID"] = api_call_event_id(request["request_id"])
    record["readOnly"] = read_only
    record["eventType"] = API_CALL
    record["managementEvent"] = True
    record["recipientAccountId"] = request["account_id"]
    record["eventCategory"] = "Management"
    return record


def service_event_record(
    event_name: str,
    *,
    request: Mapping[str, Any],
    event_time: datetime,
    secret_arn: str,
    version_id: str,
    error_message: str | None = None,
) -> dict[str, Any]:
    """A service event about one version, caused by the request in ``request``; a
    failure (``RotationFailed``) carries its ``errorMessage``."""
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": {"accountId": request["account_id"], "invokedBy": SERVICE_PRINCIPAL},
        "eventTime": format_event_time(event_time),
        "eventSource": EVENT_SOURCE,
        "eventName": event_name,
        "awsRegion": request["region"],
        "sourceIPAddress": SERVICE_PRINCIPAL,
        "userAgent": SERVICE_PRINCIPAL,
    }
    if error_message is not None:
        record["errorMessage"] = error_message
    return record | {
        "requestParameters": None,
        "responseElements": None,
        "additionalEventData": {"SecretId": secret_arn, "secretLedger.versionId": version_id},
        "requestID": request["request_id"],
        "eventID": service_event_id(request["request_id"], event_name, secret_arn, version_id),
        "readOnly": False,
        "eventType": SERVICE_EVENT,
        "managementEvent": True,
        "recipientAccountId": request["account_id"],
        "eventCategory": "Management",
    }


def _placeholder_for(value: object) -> str:
    """A request member of a type JSON cannot hold (only a malformed request from a
    Python caller has one): its type name, never its content."""
    return f"<{type(value).__name__}>"


ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_placeholder_for
)


def record_text(record: Mapping[str, Any] | Sequence[Any]) -> str:
    return ENCODER.encode(record)


# --------------------------------------------------------------------------------------
# Log files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFileGroup:
    """Records that go into the same series of files: one account, region and hour."""

    account_id: str
    region: str


class LogFileWriter:
    """Writes one group's records (already in their final order) into gzipped
    ``{"Records":[...]}`` files of at most ``records_per_file_max`` records.

    The bytes are deterministic: gzip with mtime 0 and no file name, compact JSON, the
    records in the given order. A file is named after its newest record's eventTime
    (to the minute, standing in for the delivery time) and the first 16 hex digits of
    the SHA-256 of its uncompressed content, and placed under
    ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`` of that same time.
    """

    def __init__(self, root: Path, group: LogFileGroup, records_per_file_max: int) -> None:
        assert records_per_file_max > 0, "files hold at least one record"
        self.root = root
        self.group = group
        self.records_per_file_max = records_per_file_max
        self.written: list[Path] = []

    def write(self, records: Iterable[tuple[datetime, str]]) -> list[Path]:
        """``records``: (eventTime, record JSON text) in order."""
        batch: list[tuple[datetime, str]] = []
        for item in records:
            batch.append(item)
            if len(batch) == self.records_per_file_max:
                self._write_file(batch)
                batch = []
        if batch:
            self._write_file(batch)
        return self.written

    def _write_file(self, batch: list[tuple[datetime, str]]) -> None:
        content = ('{"Records":[' + ",".join(text for _, text in batch) + "]}").encode("utf-8")
        unique = hashlib.sha256(content).hexdigest()[:UNIQUE_STRING_LENGTH]
        newest = max(moment for moment, _ in batch).astimezone(UTC)
        directory = (
            self.root
            / "AWSLogs"
            / self.group.account_id
            / "CloudTrail"
            / self.group.region
            / newest.strftime("%Y/%m/%d")
        )
        name = (
            f"{self.group.account_id}_CloudTrail_{self.group.region}_"
            f"{newest.strftime('%Y%m%dT%H%MZ')}_{unique}.json.gz"
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        temporary = directory / f".{name}.partial"
        temporary.write_bytes(gzip.compress(content, compresslevel=GZIP_COMPRESSION_LEVEL, mtime=0))
        os.replace(temporary, path)
        self.written.append(path)


def read_log_file(path: Path) -> list[dict[str, Any]]:
    """The records of one exported file."""
    document = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
    records: list[dict[str, Any]] = document["Records"]
    return records
