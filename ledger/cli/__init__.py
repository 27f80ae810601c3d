"""The `secretledger` console script: composes the write side and the read side."""

from ledger.cli import evidence, projections, secrets, serve  # noqa: F401  (register commands)
from ledger.cli.common import main

__all__ = ["main"]
