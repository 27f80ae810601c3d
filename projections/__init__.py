"""The read side of secret-ledger: projections of the log, rebuildable from it alone.

* :mod:`projections.labels`: the label map and label history (time travel);
* :mod:`projections.audit`: CloudTrail-style audit records and log file export;
* :mod:`projections.forensics`: the forensic timeline of a secret or a principal;
* :mod:`projections.runner`: the runner that keeps them up to date, exactly once;
* :mod:`projections.read_model`: all of it in one object (:class:`ReadModel`) and
  :func:`start_in_background` for ``serve``.

The read side imports only event types and constants from :mod:`ledger.domain` and
the transcoder from :mod:`ledger.storage`; it holds no key and never sees a value.
"""

from projections.audit import AuditFilter, AuditRecord
from projections.base import format_instant, parse_instant
from projections.forensics import TimelineFilter, TimelineRow
from projections.labels import (
    LabelChange,
    LabelInterval,
    LabelMap,
    LabelMove,
    SecretNotFoundError,
    SecretRecord,
)
from projections.read_model import (
    PROJECTION_NAMES,
    ReadModel,
    RunningReadModel,
    start_in_background,
)

__all__ = [
    "PROJECTION_NAMES",
    "AuditFilter",
    "AuditRecord",
    "LabelChange",
    "LabelInterval",
    "LabelMap",
    "LabelMove",
    "ReadModel",
    "RunningReadModel",
    "SecretNotFoundError",
    "SecretRecord",
    "TimelineFilter",
    "TimelineRow",
    "format_instant",
    "parse_instant",
    "start_in_background",
]
