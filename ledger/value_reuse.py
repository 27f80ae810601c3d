"""Which live versions share a value, within one secret or across secrets (rules F-9 to
F-12 of docs/forensics.md).

Every live version is decrypted through the application, in memory, and reduced to
an HMAC-SHA-256 under a key drawn afresh for each run and never written anywhere: a
digest means nothing outside the run, and the run keeps only digests and version
references, never a value. Versions are grouped by digest; what comes out names
secrets and version ids only. Nothing is stored, and nothing is appended to the log
(unlike listing secrets through the API, no secret past its recovery window is
purged on the way).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as random_source
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from ledger.application import Secrets
from ledger.domain import Secret, VersionRecord, is_filled

DIGEST_KEY_BYTES: Final = 32


@dataclass(frozen=True, order=True)
class VersionReference:
    """A version, by its secret's ARN and name and its id: never its value."""

    arn: str
    name: str
    version_id: str

    def to_json(self) -> dict[str, str]:
        return {"ARN": self.arn, "Name": self.name, "VersionId": self.version_id}


@dataclass(frozen=True, order=True)
class SharedValue:
    """Two or more live versions holding one value, in (ARN, version id) order."""

    versions: tuple[VersionReference, ...]

    def __post_init__(self) -> None:
        assert len(self.versions) >= 2, "a value is shared by two versions or more"
        assert list(self.versions) == sorted(self.versions), "versions in a stable order"

    @property
    def across_secrets(self) -> bool:
        return len({version.arn for version in self.versions}) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "Scope": "across-secrets" if self.across_secrets else "within-secret",
            "Versions": [version.to_json() for version in self.versions],
        }


@dataclass(frozen=True)
class ValueReuse:
    """The outcome of one run (F-11): the shared values, and what was looked at."""

    shared: tuple[SharedValue, ...]
    secrets_scanned: int
    versions_compared: int
    destroyed_versions_skipped: int

    def to_json(self) -> dict[str, Any]:
        return {
            "SharedValues": [shared.to_json() for shared in self.shared],
            "SecretsScanned": self.secrets_scanned,
            "VersionsCompared": self.versions_compared,
            "DestroyedVersionsSkipped": self.destroyed_versions_skipped,
        }


def find_value_reuse(secrets: Secrets, secret_ids: Iterable[UUID]) -> ValueReuse:
    """Compare the live versions of the secrets ``secret_ids`` names (normally
    ``secrets.secret_ids()``, perhaps behind a progress bar). Deleted secrets are
    skipped (F-10); versions whose data key was destroyed cannot be decrypted and are
    counted, not compared. A version that does not decrypt raises DecryptionFailure."""
    digest_key = random_source.token_bytes(DIGEST_KEY_BYTES)
    groups: dict[bytes, list[VersionReference]] = defaultdict(list)
    secrets_scanned = versions_compared = destroyed_versions_skipped = 0
    for secret_id in secret_ids:
        secret = secrets.stored_secret(secret_id)
        if secret.is_deleted:
            continue
        destroyed_versions_skipped += len(secret.destroyed_version_ids)
        secrets_scanned += 1
        for version in secret.versions.values():
            if not is_filled(version):
                continue  # staged by a rotation, no value yet (RO-3)
            digest = value_digest(digest_key, secrets, secret, version)
            groups[digest].append(VersionReference(secret.arn, secret.name, version["version_id"]))
            versions_compared += 1
    shared = sorted(
        SharedValue(tuple(sorted(references)))
        for references in groups.values()
        if len(references) > 1
    )
    return ValueReuse(
        shared=tuple(shared),
        secrets_scanned=secrets_scanned,
        versions_compared=versions_compared,
        destroyed_versions_skipped=destroyed_versions_skipped,
    )


def value_digest(
    digest_key: bytes, secrets: Secrets, secret: Secret, version: VersionRecord
) -> bytes:
    """The keyed digest of a version's value and kind (a string and binary value of the
    same bytes are different values, as for the ledger's fingerprints)."""
    plaintext = secrets.decrypt(secret, version)
    kind = version["kind"].encode("ascii")
    return hmac.digest(digest_key, len(kind).to_bytes(1, "big") + kind + plaintext, hashlib.sha256)
