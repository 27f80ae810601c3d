"""Sealing formats of a version's value: one number, stored in every version's
``VersionCreated`` event (docs/events.md S-1). Defined apart from
:mod:`ledger.crypto` so that the domain and the read side can name a format
without importing any cryptography.

* ``SEALING_V1``: the value sealed as is; fingerprint bound to the secret ARN.
  Versions stored before padding; read, never written any more.
* ``SEALING_V2``: the value padded to its size bucket before sealing; fingerprint
  bound to the secret ARN and the version id. Every new version.
"""

from __future__ import annotations

from typing import Final

SEALING_V1: Final = 1
SEALING_V2: Final = 2
SEALING_CURRENT: Final = SEALING_V2
SEALINGS: Final = frozenset({SEALING_V1, SEALING_V2})
