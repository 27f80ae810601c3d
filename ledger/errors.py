"""Exceptions named exactly as AWS Secrets Manager names them on the wire.

Each exception's class name is the wire ``__type`` and its message is the wire
``Message``, so the HTTP layer is only a mapping (``code``, ``message``,
``http_status``). Messages never contain a secret value: callers build them
from names, ARNs, tokens and labels only.
"""

from __future__ import annotations

from ledger.bounds import bounded_text


class SecretsManagerError(Exception):
    """Base of every AWS-shaped error; ``code`` is the wire ``__type``."""

    http_status: int = 400

    def __init__(self, message: str) -> None:
        """``message`` is cut to `ledger.bounds.AUDIT_STRING_LENGTH_MAX` characters (with
        a note), so that the answer and the audit record that quotes it agree, however
        long the values a validation message echoes (rule IL-4 of docs/limits.md)."""
        bounded = bounded_text(message)
        super().__init__(bounded)
        self.message = bounded

    @property
    def code(self) -> str:
        return type(self).__name__


class ResourceNotFoundException(SecretsManagerError):
    pass


class InvalidParameterException(SecretsManagerError):
    pass


class InvalidRequestException(SecretsManagerError):
    pass


class ResourceExistsException(SecretsManagerError):
    pass


class LimitExceededException(SecretsManagerError):
    pass


class ValidationException(SecretsManagerError):
    pass


class InvalidNextTokenException(SecretsManagerError):
    pass


class MalformedPolicyDocumentException(SecretsManagerError):
    pass


class PublicPolicyException(SecretsManagerError):
    pass


class AccessDeniedException(SecretsManagerError):
    """A permission the caller lacks (AZ-11); ``denial`` is what the audit record
    keeps of the decision (AZ-12)."""

    def __init__(self, message: str, denial: dict[str, str | int | None]) -> None:
        super().__init__(message)
        self.denial = denial


class DecryptionFailure(SecretsManagerError):
    pass


class InternalServiceError(SecretsManagerError):
    http_status = 500


class UnknownOperationException(SecretsManagerError):
    pass


class SerializationException(SecretsManagerError):
    pass


class UnrecognizedClientException(SecretsManagerError):
    pass


class ExpiredTokenException(SecretsManagerError):
    """A temporary credential used after its expiration (HTTP 400, as the other
    authentication errors here)."""


class InvalidSignatureException(SecretsManagerError):
    pass


class IncompleteSignature(SecretsManagerError):
    pass


class MissingAuthenticationTokenException(SecretsManagerError):
    """HTTP 400, as Secrets Manager answers an unsigned request (aws/aws-sdk-cpp#2407)."""


class RequestEntityTooLargeException(SecretsManagerError):
    http_status = 413


class ServiceUnavailable(SecretsManagerError):
    http_status = 503


class RequestTimeoutException(SecretsManagerError):
    http_status = 408


SECRET_NOT_FOUND_MESSAGE = "Secrets Manager can't find the specified secret."
VALUE_NOT_FOUND_PREFIX = "Secrets Manager can't find the specified secret value for"
VERSION_DESTROYED_SENTENCE = (
    "The version was destroyed (crypto-shredded): its value can't be recovered."
)
MARKED_FOR_DELETION_MESSAGE = (
    "You can't perform this operation on the secret because it was marked for deletion."
)


def secret_not_found() -> ResourceNotFoundException:
    return ResourceNotFoundException(SECRET_NOT_FOUND_MESSAGE)


def marked_for_deletion() -> InvalidRequestException:
    return InvalidRequestException(MARKED_FOR_DELETION_MESSAGE)


def token_in_use(token: str, secret_arn: str) -> ResourceExistsException:
    return ResourceExistsException(
        f"You can't use ClientRequestToken {token} because that value is already in use "
        f"for a version of secret {secret_arn}."
    )


def version_not_found(version_id: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(f"{VALUE_NOT_FOUND_PREFIX} VersionId: {version_id}")


def version_destroyed(version_id: str) -> ResourceNotFoundException:
    """A version whose data key is gone (destroyed, or removed by retention): AWS's
    not-found answer for the version, then one sentence saying why."""
    return ResourceNotFoundException(
        f"{VALUE_NOT_FOUND_PREFIX} VersionId: {version_id}. {VERSION_DESTROYED_SENTENCE}"
    )
