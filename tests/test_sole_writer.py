"""`Secrets.assume_sole_writer`: no query for newer events on a cached aggregate,
and a write by another process still caught at insert and retried on fresh state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.api import SecretsManagerApi
from ledger.application import Secrets

NAME = "shared/sole"


def put(api: SecretsManagerApi, token: str) -> dict[str, Any]:
    request = {"SecretId": NAME, "ClientRequestToken": token, "SecretString": f"v-{token}"}
    answer: dict[str, Any] = api.call("PutSecretValue", request)
    return answer


def token(index: int) -> str:
    return f"{index:036d}"


def test_a_sole_writer_reads_cached_secrets_without_asking_the_store(
    persistent_backend: str, tmp_path: Path
) -> None:
    secrets = Secrets(persistent_backend, keyring_path=tmp_path / "keyring")
    try:
        secrets.assume_sole_writer()
        api = SecretsManagerApi(secrets)
        api.call(
            "CreateSecret", {"Name": NAME, "SecretString": "first", "ClientRequestToken": token(0)}
        )
        api.call("GetSecretValue", {"SecretId": NAME})  # cached from here on
        store = secrets.repository.event_store
        asked: list[Any] = []
        original_get = store.get
        store.get = lambda *args, **kwargs: asked.append(args) or original_get(*args, **kwargs)  # type: ignore[method-assign]
        put(api, token(1))
        assert api.call("GetSecretValue", {"SecretId": NAME})["SecretString"] == f"v-{token(1)}"
        assert asked == []
    finally:
        secrets.close()


def test_another_writer_is_caught_at_insert_and_the_put_retried(
    persistent_backend: str, tmp_path: Path
) -> None:
    keyring_path = tmp_path / "keyring"
    sole = Secrets(persistent_backend, keyring_path=keyring_path)
    try:
        sole.assume_sole_writer()
        sole_api = SecretsManagerApi(sole)
        sole_api.call(
            "CreateSecret", {"Name": NAME, "SecretString": "first", "ClientRequestToken": token(0)}
        )
        put(sole_api, token(1))  # the secret is cached at this version
        other = Secrets(persistent_backend, keyring_path=keyring_path)
        try:
            outsider_version = put(SecretsManagerApi(other), token(2))["VersionId"]
        finally:
            other.close()
        mine = put(sole_api, token(3))
        described = sole_api.call("DescribeSecret", {"SecretId": NAME})
        stages = described["VersionIdsToStages"]
        assert stages[mine["VersionId"]] == ["AWSCURRENT"]
        assert stages[outsider_version] == ["AWSPREVIOUS"]  # the retry saw the outsider's put
    finally:
        sole.close()
