"""The `secretledger` console script: composes the write side and the read side."""

from ledger.cli import (  # noqa: F401  (register commands)
    evidence,
    forensics,
    keys,
    projections,
    proofs,
    report,
    secrets,
    serve,
)
from ledger.cli.common import main

__all__ = ["main"]
