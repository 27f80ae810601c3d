"""The Secrets Manager API over the ledger: AWS-shaped requests in, AWS-shaped responses out.

`SecretsManagerApi.call(operation, request, caller)` validates the request against
the service model, asks `ledger.authorization` whether the caller may make it (the
caller's identity policy and the secret's resource policy, AZ-1 to AZ-14 in
docs/authorization.md), runs the command, and records every call that changed no
secret (reads, idempotent replays, failures, denials) as an `ApiCall` event,
durably, before it answers. Successful mutations need no extra record: their events carry
the request context. The HTTP endpoint and the CLI are thin faces over this.
"""

from __future__ import annotations

import base64
import binascii
import copy
import getpass
import json
import logging
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from ledger import __version__
from ledger.application import (
    Outcome,
    RunnerOf,
    Secrets,
    describe,
    external_runner,
    require_valid_secret_id,
    value_from,
)
from ledger.arn import SecretArn
from ledger.auth import rfc3339
from ledger.authorization import (
    Access,
    Requester,
    Target,
    access_for,
    accesses_for,
    decide,
    denial_message,
    policies_apply,
    stored_resource_policy,
)
from ledger.bounds import bounded
from ledger.domain import ApiCall, RequestContext, Secret
from ledger.errors import (
    AccessDeniedException,
    InternalServiceError,
    InvalidNextTokenException,
    InvalidParameterException,
    InvalidRequestException,
    SecretsManagerError,
    UnknownOperationException,
    ValidationException,
)
from ledger.passwords import PasswordRules, random_password
from ledger.policies import Policy
from ledger.refusals import RefusalCount
from ledger.validation import LOCAL_OPERATION_MEMBERS, validate_request

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE_DEFAULT = 100
BATCH_PAGE_SIZE_DEFAULT = 20

READ_ONLY_OPERATIONS = frozenset(
    {
        "GetSecretValue",
        "BatchGetSecretValue",
        "DescribeSecret",
        "ListSecretVersionIds",
        "ListSecrets",
        "GetResourcePolicy",
        "ValidateResourcePolicy",
        "GetRandomPassword",
    }
)

# OOS-1: operations of the service model that secret-ledger does not serve, and why.
UNSUPPORTED_OPERATIONS: dict[str, str] = {
    "ReplicateSecretToRegions": "it keeps every secret in one region, with no replicas",
    "RemoveRegionsFromReplication": "it keeps every secret in one region, with no replicas",
    "StopReplicationToReplica": "it keeps every secret in one region, with no replicas",
}

# Request members that may appear in audit records (docs/audit.md §2): an
# allow-list, so a value can never slip in.
AUDITED_MEMBERS: dict[str, tuple[str, ...]] = {
    "CreateSecret": ("Name", "ClientRequestToken", "Description", "KmsKeyId", "Tags"),
    "PutSecretValue": ("SecretId", "ClientRequestToken", "VersionStages"),
    "UpdateSecret": ("SecretId", "ClientRequestToken", "Description", "KmsKeyId"),
    "UpdateSecretVersionStage": (
        "SecretId",
        "VersionStage",
        "MoveToVersionId",
        "RemoveFromVersionId",
    ),
    "DeleteSecret": ("SecretId", "RecoveryWindowInDays", "ForceDeleteWithoutRecovery"),
    "RotateSecret": (
        "SecretId",
        "ClientRequestToken",
        "RotationLambdaARN",
        "RotationRules",
        "RotateImmediately",
    ),
    "CancelRotateSecret": ("SecretId",),
    "RestoreSecret": ("SecretId",),
    "GetSecretValue": ("SecretId", "VersionId", "VersionStage"),
    "BatchGetSecretValue": ("SecretIdList", "Filters", "MaxResults", "NextToken"),
    "DescribeSecret": ("SecretId",),
    "ListSecretVersionIds": ("SecretId", "MaxResults", "NextToken", "IncludeDeprecated"),
    "DestroySecretVersion": ("SecretId", "VersionId"),
    "ListSecrets": (
        "MaxResults",
        "NextToken",
        "Filters",
        "IncludePlannedDeletion",
        "SortOrder",
        "SortBy",
    ),
    # Tags and policies are metadata, logged in clear as CloudTrail logs them.
    "TagResource": ("SecretId", "Tags"),
    "UntagResource": ("SecretId", "TagKeys"),
    "PutResourcePolicy": ("SecretId", "ResourcePolicy", "BlockPublicPolicy"),
    "GetResourcePolicy": ("SecretId",),
    "DeleteResourcePolicy": ("SecretId",),
    "ValidateResourcePolicy": ("SecretId", "ResourcePolicy"),
    "GetRandomPassword": (
        "PasswordLength",
        "ExcludeCharacters",
        "ExcludeNumbers",
        "ExcludePunctuation",
        "ExcludeUppercase",
        "ExcludeLowercase",
        "IncludeSpace",
        "RequireEachIncludedType",
    ),
    **dict.fromkeys(UNSUPPORTED_OPERATIONS, ("SecretId",)),
}

UNSUPPORTED_CREATE_MEMBERS = ("AddReplicaRegions", "ForceOverwriteReplicaSecret", "Type")
UNSUPPORTED_ROTATE_MEMBERS = ("ExternalSecretRotationMetadata", "ExternalSecretRotationRoleArn")
# AZ-10: a secret not created yet is matched by the ARN its name will have, whatever
# its random suffix: as AWS suggests writing it in a policy.
ARN_SUFFIX_PATTERN = "-??????"


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the face (HTTP, CLI, Python) knows it.

    ``request_id`` is for faces that already gave the request an id (the HTTP
    endpoint's ``x-amzn-RequestId``); without one, every call gets a fresh id, so
    one `Caller` can make many calls. ``policy``: the principal's identity policy;
    None makes it an administrator (AZ-3). ``os_user``: the operating-system
    account a local face runs as, recorded beside the principal, never as it (CA-2)."""

    principal_arn: str
    access_key_id: str = ""
    source_ip: str = "127.0.0.1"
    user_agent: str = f"secret-ledger/{__version__}"
    request_id: str | None = None
    policy: Policy | None = None
    os_user: str = ""


def unsupported_operation(operation: str) -> UnknownOperationException:
    return UnknownOperationException(f"The operation {operation!r} is not supported.")


def local_caller(principal_arn: str) -> Caller:
    """A local caller (CLI, Python): the principal it says it acts as, an
    administrator (AZ-3), with the operating-system user kept beside it (CA-2)."""
    return Caller(principal_arn=principal_arn, os_user=getpass.getuser())


def account_principal_arn(account_id: str) -> str:
    """CA-1: the account's root, the principal of a local caller that names none."""
    return f"arn:aws:iam::{account_id}:root"


def audited_parameters(operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """Allow-listed request members, keys in lowerCamelCase, as CloudTrail logs them;
    bounded (rule IL-4 of docs/limits.md) before anything walks them, since a record
    may be of a request that failed validation."""
    members = AUDITED_MEMBERS.get(operation, ())
    return {
        lower_camel(member): lower_camel_keys(bounded(request[member]))
        for member in members
        if request.get(member) is not None
    }


def log_failure(what: str, operation: str, request_id: str, failure: Exception) -> None:
    """Log a failure's type and stack, never its message, which might quote a value."""
    stack = "".join(traceback.format_tb(failure.__traceback__))
    logger.error(
        "%s %s (request %s): %s\n%s", what, operation, request_id, type(failure).__name__, stack
    )


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def lower_camel_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {lower_camel(key): lower_camel_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [lower_camel_keys(item) for item in value]
    return value


Handler = Callable[["SecretsManagerApi", Mapping[str, Any], RequestContext], Outcome]
# Calls that act on the secret authorization resolved (one look-up per call): the live
# secret the SecretId names, or None (not found, deleted, past its window: the
# operation then looks it up itself, and answers or purges as it does).
ResolvedHandler = Callable[
    ["SecretsManagerApi", Mapping[str, Any], RequestContext, "Secret | None"], Outcome
]
# Handlers that authorize resource by resource themselves (AZ-6: BatchGetSecretValue).
AuthorizingHandler = Callable[
    ["SecretsManagerApi", Mapping[str, Any], RequestContext, Caller], Outcome
]


UNRECORDED_MESSAGE = "The call could not be recorded; try again."


class SecretsManagerApi:
    """AWS Secrets Manager's operations, by name, over a `Secrets` ledger."""

    def __init__(
        self,
        secrets: Secrets,
        *,
        record_calls: bool = True,
        save_record: Callable[[ApiCall], object] | None = None,
        runner_of: RunnerOf = external_runner,
        on_rotation_staged: Callable[[], None] | None = None,
    ) -> None:
        """``save_record`` saves one `ApiCall` (default: ``secrets.save``); a server
        may pass a group-committing recorder (`ledger.call_records.CallRecorder`).
        ``runner_of`` tells who runs a rotation function (default: an external
        driver, RO-5); ``on_rotation_staged`` is called after RotateSecret staged a
        rotation (a rotation runner wakes up)."""
        self.secrets = secrets
        self.runner_of = runner_of
        self.on_rotation_staged = on_rotation_staged
        self.record_calls = record_calls
        self.save_record = save_record or secrets.save
        self.local_caller = local_caller(account_principal_arn(secrets.account_id))

    def recording_with(self, save_record: Callable[[ApiCall], object]) -> SecretsManagerApi:
        """This API, saving its call records with ``save_record`` instead: the server's
        event loop collects the records of the call it answers, to await their commit."""
        view = copy.copy(self)
        view.save_record = save_record
        return view

    def context_for(
        self, operation: str, request: Mapping[str, Any], caller: Caller
    ) -> RequestContext:
        return RequestContext(
            request_id=caller.request_id or str(uuid4()),
            principal_arn=caller.principal_arn,
            access_key_id=caller.access_key_id,
            source_ip=caller.source_ip,
            user_agent=caller.user_agent,
            region=self.secrets.region,
            account_id=self.secrets.account_id,
            operation=operation,
            parameters=audited_parameters(operation, request),
            os_user=caller.os_user,
        )

    def call(
        self, operation: str, request: Mapping[str, Any], caller: Caller | None = None
    ) -> dict[str, Any]:
        """Run one operation; raises a `SecretsManagerError` subclass on any failure.

        Every call is recorded, an unknown operation too (OOS-2): its record names
        the operation and holds no request member. Without a ``caller``, the call is
        the local administrator's (CA-1)."""
        if not isinstance(request, Mapping):
            raise ValidationException("The request body must be a JSON object.")
        caller = caller or self.local_caller
        context = self.context_for(operation, request, caller)
        handler = HANDLERS.get(operation)
        authorizing_handler = AUTHORIZING_HANDLERS.get(operation)
        resolved_handler = RESOLVED_HANDLERS.get(operation)
        if handler is None and authorizing_handler is None and resolved_handler is None:
            unknown = unsupported_operation(operation)
            self._record(context, operation, [], unknown)
            raise unknown
        try:
            validate_request(operation, request)
            target, resolved = self._target(operation, request)
            if policies_apply(caller.policy, target):
                for access in accesses_for(operation, request, self._facts(caller), target):
                    self._require(access, caller.policy, target)
            if authorizing_handler is not None:
                outcome = authorizing_handler(self, request, context, caller)
            elif resolved_handler is not None:
                outcome = resolved_handler(self, request, context, resolved)
            else:
                assert handler is not None
                outcome = handler(self, request, context)
        except SecretsManagerError as error:
            denials = [error.denial] if isinstance(error, AccessDeniedException) else []
            self._record(context, operation, [], error, denials=denials)
            raise
        except Exception as failure:
            log_failure("unexpected failure in", operation, context.request_id, failure)
            internal = InternalServiceError("An error occurred on the server side.")
            self._record(context, operation, [], internal)
            raise internal from None
        if not outcome.changed:
            self._record(context, operation, outcome.resources, None, denials=outcome.denials)
        return outcome.response

    # Authorization (AZ-2 to AZ-12)

    def _facts(self, caller: Caller) -> Requester:
        return Requester(caller.principal_arn, caller.source_ip, self.secrets.now())

    def _target(
        self, operation: str, request: Mapping[str, Any]
    ) -> tuple[Target | None, Secret | None]:
        """AZ-10: the secret a request names, resolved without recording anything, and
        the live secret itself (None if there is none)."""
        prefix = SecretArn(self.secrets.region, self.secrets.account_id, "").prefix
        if operation == "CreateSecret":
            name = str(request["Name"])
            return Target(arn=prefix + name + ARN_SUFFIX_PATTERN, named=name), None
        secret_id = request.get("SecretId")
        if not isinstance(secret_id, str):
            return None, None
        return self._secret_target(secret_id, prefix)

    def _secret_target(self, secret_id: str, prefix: str) -> tuple[Target, Secret | None]:
        secret = self.secrets.resolve(secret_id)
        if secret is None:
            arn = secret_id if secret_id.startswith("arn:") else prefix + secret_id
            return Target(arn=arn, named=secret_id), None
        target = Target(
            arn=secret.arn,
            named=secret_id,
            tags=tuple(secret.tags),
            resource_policy=secret.resource_policy,
        )
        return target, secret

    def _require(
        self, access: Access, identity_policy: Policy | None, target: Target | None
    ) -> None:
        """AccessDeniedException unless ``access`` is allowed (AZ-2, AZ-11): by the
        caller's identity policy and the resource policy of the secret it names."""
        resource_policy = None
        if target is not None and target.resource_policy is not None:
            resource_policy = stored_resource_policy(target.resource_policy)
        decision = decide(access, identity_policy, resource_policy)
        if not decision.allowed:
            raise AccessDeniedException(denial_message(access, decision), decision.record(access))

    def record_denial(
        self, operation: str, request: Mapping[str, Any], caller: Caller, error: SecretsManagerError
    ) -> None:
        """A call refused before it reached an operation (authentication, a body that
        does not decode, a request naming no operation), recorded."""
        self._record(self.context_for(operation, request, caller), operation, [], error)

    def record_refusals_counted(self, counted: RefusalCount) -> None:
        """DR-2: one record for refusals that were counted, not recorded one by one:
        their source, reason (the error code), number and window."""
        caller = Caller("", "", counted.source_ip, "")
        context = self.context_for("", {}, caller)
        start, end = rfc3339(counted.window_start), rfc3339(counted.window_end)
        self._save(
            ApiCall.record(
                request=context,
                read_only=False,
                now=self.secrets.now(),
                resources=[],
                error_code=counted.reason,
                error_message=(
                    f"{counted.count} more refusal(s) ({counted.reason}) from "
                    f"{counted.source_ip} between {start} and {end} were counted, not "
                    "recorded one by one."
                ),
                refusals_counted={
                    "count": counted.count,
                    "window_start": start,
                    "window_end": end,
                },
            ),
            context,
        )

    def _record(
        self,
        context: RequestContext,
        operation: str,
        resources: list[dict[str, str | None]],
        error: SecretsManagerError | None,
        *,
        denials: list[dict[str, Any]] | None = None,
    ) -> None:
        call = ApiCall.record(
            request=context,
            read_only=operation in READ_ONLY_OPERATIONS,
            now=self.secrets.now(),
            resources=resources,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            denials=denials,
        )
        self._save(call, context)

    def _save(self, call: ApiCall, context: RequestContext) -> None:
        if not self.record_calls:
            return
        try:
            self.save_record(call)
        except Exception as failure:
            # No answer (above all no secret value) leaves without its audit record.
            log_failure("could not record", context.operation, context.request_id, failure)
            raise InternalServiceError(UNRECORDED_MESSAGE) from None

    # Handlers: each maps AWS members onto one `Secrets` command.

    def _create_secret(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        for member in UNSUPPORTED_CREATE_MEMBERS:
            if request.get(member) is not None:
                raise InvalidParameterException(
                    f"secret-ledger does not support {member}: it keeps no replicas or types."
                )
        return self.secrets.create_secret(
            name=request["Name"],
            request=context,
            client_request_token=request.get("ClientRequestToken"),
            value=value_from(request.get("SecretString"), request.get("SecretBinary")),
            description=request.get("Description"),
            kms_key_id=request.get("KmsKeyId"),
            tags=[dict(tag) for tag in request.get("Tags") or []],
        )

    def _put_secret_value(
        self, request: Mapping[str, Any], context: RequestContext, resolved: Secret | None
    ) -> Outcome:
        stages = request.get("VersionStages")
        secret_string, secret_binary = request.get("SecretString"), request.get("SecretBinary")
        both_values = secret_string is not None and secret_binary is not None
        return self.secrets.put_secret_value(
            secret_id=request["SecretId"],
            request=context,
            client_request_token=request.get("ClientRequestToken"),
            value=None if both_values else value_from(secret_string, secret_binary),
            version_stages=list(stages) if stages is not None else None,
            both_values=both_values,
            resolved=resolved,
        )

    def _update_secret(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.update_secret(
            secret_id=request["SecretId"],
            request=context,
            client_request_token=request.get("ClientRequestToken"),
            value=value_from(request.get("SecretString"), request.get("SecretBinary")),
            description=request.get("Description"),
            kms_key_id=request.get("KmsKeyId"),
        )

    def _update_secret_version_stage(
        self, request: Mapping[str, Any], context: RequestContext
    ) -> Outcome:
        return self.secrets.update_secret_version_stage(
            secret_id=request["SecretId"],
            request=context,
            version_stage=request["VersionStage"],
            move_to_version_id=request.get("MoveToVersionId"),
            remove_from_version_id=request.get("RemoveFromVersionId"),
        )

    def _delete_secret(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.delete_secret(
            secret_id=request["SecretId"],
            request=context,
            recovery_window_in_days=request.get("RecoveryWindowInDays"),
            force_delete_without_recovery=request.get("ForceDeleteWithoutRecovery"),
        )

    def _rotate_secret(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        for member in UNSUPPORTED_ROTATE_MEMBERS:
            if request.get(member) is not None:
                raise InvalidParameterException(
                    f"secret-ledger does not support {member}: it has no managed external secrets."
                )
        rules = request.get("RotationRules")
        immediately = request.get("RotateImmediately")
        outcome = self.secrets.rotate_secret(
            secret_id=request["SecretId"],
            request=context,
            client_request_token=request.get("ClientRequestToken"),
            rotation_lambda_arn=request.get("RotationLambdaARN"),
            rotation_rules=dict(rules) if rules is not None else None,
            rotate_immediately=True if immediately is None else bool(immediately),
            runner_of=self.runner_of,
        )
        if outcome.changed and self.on_rotation_staged is not None:
            self.on_rotation_staged()
        return outcome

    def _cancel_rotate_secret(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.cancel_rotate_secret(secret_id=request["SecretId"], request=context)

    def _restore_secret(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.restore_secret(secret_id=request["SecretId"], request=context)

    def _get_secret_value(
        self, request: Mapping[str, Any], context: RequestContext, resolved: Secret | None
    ) -> Outcome:
        return self.secrets.get_secret_value(
            secret_id=request["SecretId"],
            request=context,
            version_id=request.get("VersionId"),
            version_stage=request.get("VersionStage"),
            resolved=resolved,
        )

    def _destroy_secret_version(
        self, request: Mapping[str, Any], context: RequestContext
    ) -> Outcome:
        return self.secrets.destroy_version(
            secret_id=request["SecretId"], version_id=request["VersionId"], request=context
        )

    def _describe_secret(
        self, request: Mapping[str, Any], context: RequestContext, resolved: Secret | None
    ) -> Outcome:
        return self.secrets.describe_secret(
            secret_id=request["SecretId"], request=context, resolved=resolved
        )

    def _list_secret_version_ids(
        self, request: Mapping[str, Any], context: RequestContext
    ) -> Outcome:
        secret, versions = self.secrets.list_versions(secret_id=request["SecretId"])
        include_deprecated = bool(request.get("IncludeDeprecated"))
        entries = []
        for version in versions:
            labels = secret.labels_of(version["version_id"])
            if not labels and not include_deprecated:
                continue
            entry: dict[str, Any] = {"VersionId": version["version_id"]}
            if labels:
                entry["VersionStages"] = labels
            accessed_date = secret.accessed_dates.get(version["version_id"])
            if accessed_date is not None:  # LA-4: only on versions read
                entry["LastAccessedDate"] = accessed_date
            entry["CreatedDate"] = version["created_date"]
            entry["KmsKeyIds"] = [secret.kms_key_id or "DefaultEncryptionKey"]
            entries.append(entry)
        scope = f"versions:{secret.arn}:{include_deprecated}"
        page, next_token = paginate(
            entries,
            request.get("MaxResults") or LIST_PAGE_SIZE_DEFAULT,
            request.get("NextToken"),
            scope,
        )
        response: dict[str, Any] = {"Versions": page}
        if next_token is not None:
            response["NextToken"] = next_token
        response["ARN"] = secret.arn
        response["Name"] = secret.name
        return Outcome(response, changed=False, resources=[{"secret_arn": secret.arn}])

    def _list_secrets(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        include_planned = bool(request.get("IncludePlannedDeletion"))
        filters = parse_filters(request.get("Filters") or [])
        matching = [
            secret
            for secret in self.secrets.iterate_secrets()
            if (include_planned or not secret.is_scheduled_for_deletion())
            and all(matches(secret, key, values) for key, values in filters)
        ]
        sort_secrets(matching, request.get("SortBy"), request.get("SortOrder"))
        entries = [list_entry(secret) for secret in matching]
        scope = "secrets:" + json.dumps(
            [
                include_planned,
                request.get("Filters"),
                request.get("SortBy"),
                request.get("SortOrder"),
            ],
            sort_keys=True,
            default=str,
        )
        page, next_token = paginate(
            entries,
            request.get("MaxResults") or LIST_PAGE_SIZE_DEFAULT,
            request.get("NextToken"),
            scope,
        )
        response: dict[str, Any] = {"SecretList": page}
        if next_token is not None:
            response["NextToken"] = next_token
        return Outcome(response, changed=False)

    def _batch_get_secret_value(
        self, request: Mapping[str, Any], context: RequestContext, caller: Caller
    ) -> Outcome:
        """AZ-6: each secret needs GetSecretValue; a secret the caller may not read is
        an ``Errors`` entry (AccessDeniedException), its denial kept in the record."""
        identifiers = request.get("SecretIdList")
        filters = request.get("Filters")
        if identifiers is not None and filters is not None:
            raise InvalidParameterException("You can't specify both SecretIdList and Filters.")
        if identifiers is None and filters is None:
            raise InvalidParameterException("You must specify either SecretIdList or Filters.")
        next_token: str | None = None
        if identifiers is None:
            parsed = parse_filters(filters or [])
            names = [
                secret.arn
                for secret in self.secrets.iterate_secrets()
                if not secret.is_scheduled_for_deletion()
                and all(matches(secret, key, values) for key, values in parsed)
            ]
            scope = "batch:" + json.dumps(filters, sort_keys=True, default=str)
            identifiers, next_token = paginate(
                names,
                request.get("MaxResults") or BATCH_PAGE_SIZE_DEFAULT,
                request.get("NextToken"),
                scope,
            )
        elif request.get("MaxResults") is not None or request.get("NextToken") is not None:
            raise InvalidParameterException(
                "MaxResults and NextToken apply only with Filters, not with SecretIdList."
            )
        prefix = SecretArn(self.secrets.region, self.secrets.account_id, "").prefix
        values: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        resources: list[dict[str, str | None]] = []
        denials: list[dict[str, Any]] = []
        for identifier in identifiers:
            try:
                target, resolved = self._secret_target(identifier, prefix)
                access = access_for(
                    "GetSecretValue", {"SecretId": identifier}, self._facts(caller), target
                )
                self._require(access, caller.policy, target)
                outcome = self.secrets.get_secret_value(
                    secret_id=identifier, request=context, resolved=resolved
                )
            except SecretsManagerError as error:
                if isinstance(error, AccessDeniedException):
                    denials.append(error.denial)
                errors.append(
                    {"SecretId": identifier, "ErrorCode": error.code, "Message": error.message}
                )
                continue
            values.append(outcome.response)
            resources.extend(outcome.resources)
        response: dict[str, Any] = {"SecretValues": values}
        if next_token is not None:
            response["NextToken"] = next_token
        response["Errors"] = errors
        return Outcome(response, changed=False, resources=resources, denials=denials)

    def _tag_resource(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.tag_resource(
            secret_id=request["SecretId"],
            request=context,
            tags=[dict(tag) for tag in request["Tags"]],
        )

    def _untag_resource(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.untag_resource(
            secret_id=request["SecretId"], request=context, tag_keys=list(request["TagKeys"])
        )

    def _put_resource_policy(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.put_resource_policy(
            secret_id=request["SecretId"],
            request=context,
            resource_policy=request["ResourcePolicy"],
            block_public_policy=bool(request.get("BlockPublicPolicy")),
        )

    def _get_resource_policy(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        return self.secrets.get_resource_policy(secret_id=request["SecretId"], request=context)

    def _delete_resource_policy(
        self, request: Mapping[str, Any], context: RequestContext
    ) -> Outcome:
        return self.secrets.delete_resource_policy(secret_id=request["SecretId"], request=context)

    def _validate_resource_policy(
        self, request: Mapping[str, Any], context: RequestContext
    ) -> Outcome:
        return self.secrets.validate_resource_policy(
            resource_policy=request["ResourcePolicy"],
            request=context,
            secret_id=request.get("SecretId"),
        )

    def _get_random_password(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        password = random_password(PasswordRules.from_request(request))
        return Outcome({"RandomPassword": password}, changed=False)

    def _unsupported(self, request: Mapping[str, Any], context: RequestContext) -> Outcome:
        """OOS-1: a well-formed call to an operation secret-ledger does not serve."""
        require_valid_secret_id(request["SecretId"])
        operation = context.operation
        raise InvalidRequestException(
            f"secret-ledger does not support {operation}: {UNSUPPORTED_OPERATIONS[operation]}."
        )


HANDLERS: dict[str, Handler] = {
    "CreateSecret": SecretsManagerApi._create_secret,
    "UpdateSecret": SecretsManagerApi._update_secret,
    "UpdateSecretVersionStage": SecretsManagerApi._update_secret_version_stage,
    "DeleteSecret": SecretsManagerApi._delete_secret,
    "RestoreSecret": SecretsManagerApi._restore_secret,
    "RotateSecret": SecretsManagerApi._rotate_secret,
    "CancelRotateSecret": SecretsManagerApi._cancel_rotate_secret,
    "ListSecretVersionIds": SecretsManagerApi._list_secret_version_ids,
    "ListSecrets": SecretsManagerApi._list_secrets,
    "TagResource": SecretsManagerApi._tag_resource,
    "UntagResource": SecretsManagerApi._untag_resource,
    "PutResourcePolicy": SecretsManagerApi._put_resource_policy,
    "GetResourcePolicy": SecretsManagerApi._get_resource_policy,
    "DeleteResourcePolicy": SecretsManagerApi._delete_resource_policy,
    "ValidateResourcePolicy": SecretsManagerApi._validate_resource_policy,
    "GetRandomPassword": SecretsManagerApi._get_random_password,
    "DestroySecretVersion": SecretsManagerApi._destroy_secret_version,
    **dict.fromkeys(UNSUPPORTED_OPERATIONS, SecretsManagerApi._unsupported),
}

AUTHORIZING_HANDLERS: dict[str, AuthorizingHandler] = {
    "BatchGetSecretValue": SecretsManagerApi._batch_get_secret_value,
}

RESOLVED_HANDLERS: dict[str, ResolvedHandler] = {
    "PutSecretValue": SecretsManagerApi._put_secret_value,
    "GetSecretValue": SecretsManagerApi._get_secret_value,
    "DescribeSecret": SecretsManagerApi._describe_secret,
}

# Operations that are secret-ledger's own (`ledger.validation.LOCAL_OPERATION_MEMBERS`):
# the CLI and Python callers reach them through `SecretsManagerApi.call`, audited like
# every call; the HTTP endpoint speaks AWS's protocol only and refuses them as unknown.
LOCAL_OPERATIONS = frozenset(LOCAL_OPERATION_MEMBERS)
AWS_OPERATIONS = (
    frozenset(HANDLERS) | frozenset(AUTHORIZING_HANDLERS) | frozenset(RESOLVED_HANDLERS)
) - LOCAL_OPERATIONS


def paginate(
    entries: list[Any], page_size: int, next_token: str | None, scope: str
) -> tuple[list[Any], str | None]:
    """An opaque NextToken: the offset and the listing it belongs to. A token that does
    not decode, or that belongs to another listing, is InvalidNextTokenException."""
    offset = 0
    if next_token is not None:
        offset = decode_token(next_token, scope)
    end = offset + page_size
    page = entries[offset:end]
    token = encode_token(end, scope) if end < len(entries) else None
    return page, token


def encode_token(offset: int, scope: str) -> str:
    payload = json.dumps({"offset": offset, "scope": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii")


def decode_token(token: str, scope: str) -> int:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidNextTokenException("The NextToken value is not valid.") from None
    if (
        not isinstance(payload, dict)
        or payload.get("scope") != scope
        or not isinstance(payload.get("offset"), int)
        or payload["offset"] < 0
    ):
        raise InvalidNextTokenException("The NextToken value is not valid.")
    offset: int = payload["offset"]
    return offset


FILTER_KEYS = frozenset(
    {"description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all"}
)


def parse_filters(filters: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    parsed = []
    for index, item in enumerate(filters, start=1):
        key = item.get("Key")
        if key not in FILTER_KEYS:
            raise ValidationException(
                f"1 validation error detected: Value '{key}' at 'filters.{index}.member.key' "
                "failed to satisfy constraint: Member must satisfy enum value set: "
                f"[{', '.join(sorted(FILTER_KEYS))}]"
            )
        parsed.append((key, list(item.get("Values") or [])))
    return parsed


def matches(secret: Secret, key: str, values: list[str]) -> bool:
    """LF-1: a filter matches when any of its values matches (a filter without values
    constrains nothing); LF-2: a value starting with ``!`` matches when the rest
    does not."""
    if not values:
        return True
    return any(
        not value_matches(secret, key, value[1:])
        if value.startswith("!")
        else value_matches(secret, key, value)
        for value in values
    )


def value_matches(secret: Secret, key: str, value: str) -> bool:
    """LF-3 to LF-6: how one (not negated) value matches one secret."""
    tag_keys = [tag.get("Key", "") for tag in secret.tags]
    tag_values = [tag.get("Value", "") for tag in secret.tags]
    if key == "name":
        return secret.name.startswith(value)
    if key == "tag-key":
        return any(tag_key.startswith(value) for tag_key in tag_keys)
    if key == "tag-value":
        return any(tag_value.startswith(value) for tag_value in tag_values)
    if key == "description":
        return words_prefix(value.lower().split(), (secret.description or "").lower().split())
    if key == "all":
        attributes = [secret.name, secret.description or "", *tag_keys, *tag_values]
        searched = [word for attribute in attributes for word in searched_words(attribute)]
        return words_prefix(search_pieces(value), searched)
    return False  # primary-region, owning-service: secret-ledger has no replicas or owners


def words_prefix(filter_words: list[str], words: list[str]) -> bool:
    """Every filter word begins some word; a value without words matches nothing."""
    return bool(filter_words) and all(
        any(word.startswith(filter_word) for word in words) for filter_word in filter_words
    )


SEARCH_WORD_SEPARATORS = re.compile(r"[/_+=.@-]+")
CASE_CHANGE = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def search_pieces(text: str) -> list[str]:
    """LF-6: the words of ``text`` for ``all``, lowercased: split at whitespace, at
    ``/ _ + = . @ -`` and at case changes (``AppBeta``: App, Beta; ``COMPANYthings``:
    COMPAN, Ythings); punctuation alone is no word."""
    return [
        piece.lower()
        for word in text.split()
        for part in SEARCH_WORD_SEPARATORS.split(word)
        for piece in CASE_CHANGE.split(part)
        if piece
    ]


def searched_words(text: str) -> list[str]:
    """LF-6: what ``all`` searches in an attribute: its pieces and its whole words."""
    return [*search_pieces(text), *text.lower().split()]


NEVER_ACCESSED = datetime.min.replace(tzinfo=UTC)


def sort_secrets(secrets: list[Secret], sort_by: str | None, sort_order: str | None) -> None:
    """OPEN: default order is by CreatedDate, newest first ("desc"). LA-5: by
    LastAccessedDate, secrets never read count as the oldest; ties by name."""
    keys: dict[str, Callable[[Secret], Any]] = {
        "created-date": lambda secret: (secret.created_on, secret.name),
        "last-changed-date": lambda secret: (secret.modified_on, secret.name),
        "last-accessed-date": lambda secret: (
            secret.last_accessed_date or NEVER_ACCESSED,
            secret.name,
        ),
        "name": lambda secret: secret.name,
    }
    secrets.sort(key=keys[sort_by or "created-date"], reverse=(sort_order or "desc") == "desc")


def list_entry(secret: Secret) -> dict[str, Any]:
    entry = describe(secret)
    stages = entry.pop("VersionIdsToStages", None)
    if stages:
        entry["SecretVersionsToStages"] = stages
    return entry


def to_wire(value: Any) -> Any:
    """AWS JSON 1.1 values: timestamps as epoch seconds, blobs as base64."""
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    return value
