"""secret-ledger: an event-sourced ledger of secret versions with AWS Secrets Manager semantics."""

__version__ = "0.1.0"
