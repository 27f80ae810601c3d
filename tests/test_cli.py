"""The `secretledger` command line: AWS-like secret commands over the ledger, and the demo.

Each command is one audited Secrets Manager call. Human output by default; --json
prints the API response exactly. AWS errors exit 1 with ``<Code>: <Message>``,
usage errors exit 2, and a value is shown by `get` only.
"""

from __future__ import annotations

import base64
import getpass
import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import click
import pytest
from click.testing import CliRunner, Result

from ledger.application import Secrets
from ledger.cli import main
from ledger.cli.secrets import VALUE_SIZE_BYTES_MAX, expand_list_option

NAME = "prod/payments/api-key"
TOKEN_ONE = "11111111-1111-4111-8111-111111111111"
TOKEN_TWO = "22222222-2222-4222-8222-222222222222"
TOKEN_THREE = "33333333-3333-4333-8333-333333333333"
SUBPROCESS_TIMEOUT_SECONDS = 60
COMMANDS = [
    "create",
    "put",
    "get",
    "describe",
    "versions",
    "update-stage",
    "delete",
    "restore",
    "list",
    "destroy-version",
    "demo",
]


@dataclass
class Cli:
    """Runs `secretledger` commands in-process against one ledger."""

    database: str
    keyring_path: Path
    outputs: list[str] = field(default_factory=list)

    def run(self, *arguments: str, stdin: str | bytes | None = None) -> Result:
        ledger = ["--db", self.database, "--keyring", str(self.keyring_path)]
        result = CliRunner().invoke(main, [*arguments, *ledger], input=stdin)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def ok(self, *arguments: str, stdin: str | bytes | None = None) -> str:
        result = self.run(*arguments, stdin=stdin)
        assert result.exit_code == 0, result.output
        return result.stdout

    def json(self, *arguments: str, stdin: str | bytes | None = None) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.ok(*arguments, "--json", stdin=stdin))
        return parsed

    def labels(self, secret_id: str = NAME) -> dict[str, list[str]]:
        stages: dict[str, list[str]] = self.json("describe", "--secret-id", secret_id).get(
            "VersionIdsToStages", {}
        )
        return stages

    def create(self, value: str = "first-value", token: str = TOKEN_ONE) -> dict[str, Any]:
        return self.json(
            "create",
            "--name",
            NAME,
            "--secret-string-file",
            "-",
            "--client-request-token",
            token,
            stdin=value,
        )

    def put(self, value: str, token: str, *options: str) -> dict[str, Any]:
        return self.json(
            "put", "--secret-id", NAME, "--secret-string-file", "-",
            "--client-request-token", token, *options,
            stdin=value,
        )  # fmt: skip


@pytest.fixture
def cli(persistent_backend: str, tmp_path: Path) -> Cli:
    """A CLI over a fresh, persistent ledger (memory: keeps nothing between commands)."""
    return Cli(persistent_backend, tmp_path / "ledger.keyring")


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    return Cli(str(tmp_path / "ledger.db"), tmp_path / "ledger.keyring")


# Creating and reading


def test_create_with_a_value_from_stdin_then_get_prints_exactly_that_value(cli: Cli) -> None:
    cli.ok("create", "--name", NAME, "--secret-string-file", "-", stdin="s3cr3t-from-stdin")

    assert cli.ok("get", "--secret-id", NAME) == "s3cr3t-from-stdin\n"


def test_create_json_is_exactly_the_create_secret_response(cli: Cli) -> None:
    response = cli.create(token=TOKEN_ONE)

    assert list(response) == ["ARN", "Name", "VersionId"]
    assert response["Name"] == NAME
    assert response["ARN"].startswith(
        f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{NAME}-"
    )
    assert response["VersionId"] == TOKEN_ONE


def test_create_human_output_names_the_secret_and_its_first_version(cli: Cli) -> None:
    output = cli.ok(
        "create", "--name", NAME, "--secret-string", "v", "--client-request-token", TOKEN_ONE
    )

    assert f"Created secret {NAME}" in output
    assert f"VersionId: {TOKEN_ONE}" in output


def test_create_without_a_value_makes_a_secret_with_no_version(cli: Cli) -> None:
    output = cli.ok("create", "--name", NAME, "--description", "Payments API key")

    assert "No value yet" in output
    assert cli.labels() == {}
    assert cli.json("describe", "--secret-id", NAME)["Description"] == "Payments API key"


def test_create_stores_tags_given_as_aws_json(cli: Cli) -> None:
    cli.ok("create", "--name", NAME, "--tags", '[{"Key": "team", "Value": "payments"}]')

    assert cli.json("describe", "--secret-id", NAME)["Tags"] == [
        {"Key": "team", "Value": "payments"}
    ]
    assert "team=payments" in cli.ok("describe", "--secret-id", NAME)


def test_get_json_is_the_get_secret_value_response(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)

    response = cli.json("get", "--secret-id", NAME)

    assert list(response) == [
        "ARN", "Name", "VersionId", "SecretString", "VersionStages", "CreatedDate"
    ]  # fmt: skip
    assert response["SecretString"] == "first-value"
    assert response["VersionStages"] == ["AWSCURRENT"]
    assert isinstance(response["CreatedDate"], float)  # epoch seconds, as on the wire


def test_get_reads_by_stage_or_by_version_id(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)
    cli.put("second-value", TOKEN_TWO)

    assert cli.ok("get", "--secret-id", NAME, "--version-stage", "AWSPREVIOUS") == "first-value\n"
    assert cli.ok("get", "--secret-id", NAME, "--version-id", TOKEN_TWO) == "second-value\n"


def test_binary_values_go_in_as_base64_or_a_file_and_come_out_as_base64(
    cli: Cli, tmp_path: Path
) -> None:
    raw = bytes([0, 1, 2, 255, 10])
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(raw)
    encoded = base64.b64encode(raw).decode("ascii")

    cli.ok("create", "--name", "from-base64", "--secret-binary", encoded)
    cli.ok("create", "--name", "from-file", "--secret-binary-file", str(key_file))
    cli.ok("create", "--name", "from-fileb", "--secret-binary", f"fileb://{key_file}")
    cli.ok("create", "--name", "from-stdin", "--secret-binary-file", "-", stdin=raw)

    for name in ("from-base64", "from-file", "from-fileb", "from-stdin"):
        assert cli.ok("get", "--secret-id", name) == encoded + "\n"
        assert cli.json("get", "--secret-id", name)["SecretBinary"] == encoded


def test_a_value_file_is_read_exactly_trailing_newline_included(cli: Cli, tmp_path: Path) -> None:
    value_file = tmp_path / "value.txt"
    value_file.write_text("line one\nline two\n", encoding="utf-8")

    cli.ok("create", "--name", "from-file", "--secret-string-file", str(value_file))
    cli.ok("create", "--name", "from-file-url", "--secret-string", f"file://{value_file}")

    for name in ("from-file", "from-file-url"):
        assert cli.json("get", "--secret-id", name)["SecretString"] == "line one\nline two\n"


# Putting versions and moving labels


def test_put_moves_awscurrent_to_the_new_version_and_awsprevious_follows(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)

    response = cli.put("second-value", TOKEN_TWO)

    assert list(response) == ["ARN", "Name", "VersionId", "VersionStages"]
    assert response["VersionId"] == TOKEN_TWO
    assert response["VersionStages"] == ["AWSCURRENT"]
    assert cli.labels() == {TOKEN_ONE: ["AWSPREVIOUS"], TOKEN_TWO: ["AWSCURRENT"]}


def test_put_human_output_shows_the_version_and_its_labels(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)

    output = cli.ok(
        "put", "--secret-id", NAME, "--secret-string", "second", "--client-request-token",
        TOKEN_TWO,
    )  # fmt: skip

    assert f"Stored version {TOKEN_TWO} of {NAME}" in output
    assert "VersionStages: AWSCURRENT" in output


def test_put_takes_space_separated_version_stages_like_the_aws_cli(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)

    response = cli.put("candidate", TOKEN_TWO, "--version-stages", "AWSPENDING", "blue")

    assert response["VersionStages"] == ["AWSPENDING", "blue"]
    assert cli.labels() == {TOKEN_ONE: ["AWSCURRENT"], TOKEN_TWO: ["AWSPENDING", "blue"]}


def test_put_also_takes_the_version_stages_flag_repeated(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)

    response = cli.put(
        "candidate", TOKEN_TWO, "--version-stages", "AWSPENDING", "--version-stages", "green"
    )

    assert response["VersionStages"] == ["AWSPENDING", "green"]


def test_version_stages_expansion_stops_at_the_next_option_and_at_a_double_dash() -> None:
    assert expand_list_option(["--version-stages", "a", "b", "--json"], "--version-stages") == [
        "--version-stages", "a", "--version-stages", "b", "--json"
    ]  # fmt: skip
    assert expand_list_option(["--version-stages=a", "b"], "--version-stages") == [
        "--version-stages=a", "--version-stages", "b"
    ]  # fmt: skip
    assert expand_list_option(["--", "--version-stages", "a", "b"], "--version-stages") == [
        "--", "--version-stages", "a", "b"
    ]  # fmt: skip


def test_put_without_a_token_uses_a_new_uuid4_like_the_aws_cli(cli: Cli) -> None:
    cli.create()

    first = cli.json("put", "--secret-id", NAME, "--secret-string", "a")["VersionId"]
    second = cli.json("put", "--secret-id", NAME, "--secret-string", "b")["VersionId"]

    assert UUID(first).version == 4
    assert first != second


def test_a_retried_put_with_the_same_token_and_value_changes_nothing(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)
    cli.put("second-value", TOKEN_TWO)
    labels_before = cli.labels()

    replay = cli.put("second-value", TOKEN_TWO)

    assert replay["VersionId"] == TOKEN_TWO
    assert cli.labels() == labels_before
    versions = cli.json("versions", "--secret-id", NAME, "--include-deprecated")["Versions"]
    assert len(versions) == 2


def test_the_same_token_with_another_value_is_refused_and_nothing_is_written(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)
    labels_before = cli.labels()

    result = cli.run(
        "put", "--secret-id", NAME, "--secret-string", "other-value", "--client-request-token",
        TOKEN_ONE,
    )  # fmt: skip

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"ResourceExistsException: You can't use ClientRequestToken {TOKEN_ONE} because"
    )
    assert cli.labels() == labels_before


def test_update_stage_attaches_moves_and_removes_labels(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)
    cli.put("second-value", TOKEN_TWO)

    attached = cli.json(
        "update-stage", "--secret-id", NAME, "--version-stage", "blue",
        "--move-to-version-id", TOKEN_TWO,
    )  # fmt: skip
    assert list(attached) == ["ARN", "Name"]
    assert cli.labels() == {TOKEN_ONE: ["AWSPREVIOUS"], TOKEN_TWO: ["AWSCURRENT", "blue"]}

    rollback = cli.ok(
        "update-stage", "--secret-id", NAME, "--version-stage", "AWSCURRENT",
        "--move-to-version-id", TOKEN_ONE, "--remove-from-version-id", TOKEN_TWO,
    )  # fmt: skip
    assert f"Moved AWSCURRENT of {NAME} from version {TOKEN_TWO} to version {TOKEN_ONE}" in rollback
    assert cli.labels() == {TOKEN_ONE: ["AWSCURRENT"], TOKEN_TWO: ["AWSPREVIOUS", "blue"]}

    removed = cli.ok(
        "update-stage", "--secret-id", NAME, "--version-stage", "blue",
        "--remove-from-version-id", TOKEN_TWO,
    )  # fmt: skip
    assert f"Removed blue of {NAME} from version {TOKEN_TWO}" in removed
    assert cli.labels() == {TOKEN_ONE: ["AWSCURRENT"], TOKEN_TWO: ["AWSPREVIOUS"]}


# Describing and listing


def test_describe_shows_metadata_and_a_label_table_but_never_the_value(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)
    cli.put("second-value", TOKEN_TWO, "--version-stages", "AWSCURRENT", "blue")

    output = cli.ok("describe", "--secret-id", NAME)
    response = cli.json("describe", "--secret-id", NAME)

    assert output.startswith(NAME + "\n")
    assert f"{TOKEN_TWO}  AWSCURRENT, blue" in output
    assert f"{TOKEN_ONE}  AWSPREVIOUS" in output
    assert list(response) == [
        "ARN", "Name", "LastChangedDate", "VersionIdsToStages", "CreatedDate"
    ]  # fmt: skip
    assert "value" not in output


def test_versions_hides_deprecated_versions_unless_asked(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)
    cli.put("second-value", TOKEN_TWO)
    cli.put("third-value", TOKEN_THREE)  # TOKEN_ONE is now deprecated

    listed = cli.json("versions", "--secret-id", NAME)
    everything = cli.ok("versions", "--secret-id", NAME, "--include-deprecated")

    assert [version["VersionId"] for version in listed["Versions"]] == [TOKEN_THREE, TOKEN_TWO]
    assert list(listed["Versions"][0]) == ["VersionId", "VersionStages", "CreatedDate", "KmsKeyIds"]
    assert list(listed)[-2:] == ["ARN", "Name"]
    assert f"{TOKEN_ONE}" in everything
    assert "(none: deprecated)" in everything


def test_versions_pages_with_max_results_and_next_token(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)
    cli.put("second-value", TOKEN_TWO)

    first_page = cli.json("versions", "--secret-id", NAME, "--max-results", "1")
    second_page = cli.json(
        "versions", "--secret-id", NAME, "--max-results", "1",
        "--next-token", first_page["NextToken"],
    )  # fmt: skip
    human = cli.ok("versions", "--secret-id", NAME, "--max-results", "1")

    assert [version["VersionId"] for version in first_page["Versions"]] == [TOKEN_TWO]
    assert [version["VersionId"] for version in second_page["Versions"]] == [TOKEN_ONE]
    assert "NextToken" not in second_page
    assert f"--next-token {first_page['NextToken']}" in human


def test_list_shows_secrets_filters_by_name_and_pages(cli: Cli) -> None:
    cli.ok("create", "--name", "prod/orders", "--secret-string", "a")
    cli.ok("create", "--name", "dev/orders", "--secret-string", "b")

    human = cli.ok("list")
    filtered = cli.json("list", "--filters", '[{"Key": "name", "Values": ["prod/"]}]')
    first_page = cli.json("list", "--max-results", "1")

    assert "prod/orders" in human
    assert "dev/orders" in human
    assert [entry["Name"] for entry in filtered["SecretList"]] == ["prod/orders"]
    assert list(filtered) == ["SecretList"]
    assert len(first_page["SecretList"]) == 1
    assert "NextToken" in first_page


# Deleting and restoring


def test_delete_schedules_deletion_and_restore_cancels_it(cli: Cli) -> None:
    cli.create("first-value", TOKEN_ONE)

    scheduled = cli.json("delete", "--secret-id", NAME, "--recovery-window-in-days", "7")
    assert list(scheduled) == ["ARN", "Name", "DeletionDate"]
    assert isinstance(scheduled["DeletionDate"], float)

    refused = cli.run("get", "--secret-id", NAME)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("InvalidRequestException: ")
    assert NAME not in cli.ok("list")
    assert NAME in cli.ok("list", "--include-planned-deletion")

    restored = cli.ok("restore", "--secret-id", NAME)
    assert f"Restored {NAME}" in restored
    assert list(cli.json("restore", "--secret-id", NAME)) == ["ARN", "Name"]
    assert cli.ok("get", "--secret-id", NAME) == "first-value\n"


def test_delete_human_output_says_when_and_how_to_restore(cli: Cli) -> None:
    cli.create()

    output = cli.ok("delete", "--secret-id", NAME)

    assert f"Scheduled {NAME} for deletion on " in output
    assert f"secretledger restore --secret-id {NAME}" in output


def test_force_delete_removes_the_secret_at_once(cli: Cli) -> None:
    cli.create()

    output = cli.ok("delete", "--secret-id", NAME, "--force-delete-without-recovery")
    missing = cli.run("describe", "--secret-id", NAME)

    assert f"Deleted {NAME} now" in output
    assert missing.exit_code == 1
    assert missing.stderr == (
        "ResourceNotFoundException: Secrets Manager can't find the specified secret.\n"
    )


# Errors


def test_an_aws_error_exits_1_with_its_code_and_message(cli: Cli) -> None:
    human = cli.run("get", "--secret-id", "no/such/secret")
    as_json = cli.run("get", "--secret-id", "no/such/secret", "--json")

    assert human.exit_code == 1
    assert human.stdout == ""
    assert human.stderr == (
        "ResourceNotFoundException: Secrets Manager can't find the specified secret.\n"
    )
    assert as_json.exit_code == 1
    assert json.loads(as_json.stderr) == {
        "__type": "ResourceNotFoundException",
        "Message": "Secrets Manager can't find the specified secret.",
    }


def test_a_string_and_a_binary_value_together_are_refused_as_aws_refuses_them(cli: Cli) -> None:
    result = cli.run("create", "--name", NAME, "--secret-string", "a", "--secret-binary", "YQ==")

    assert result.exit_code == 1
    assert result.stderr.startswith("InvalidParameterException: You can't specify both")


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["get"], id="missing --secret-id"),
        pytest.param(["versions", "--secret-id", NAME, "--max-results", "many"], id="not a number"),
        pytest.param(["create", "--name", NAME, "--tags", "{not json"], id="tags not json"),
        pytest.param(["create", "--name", NAME, "--tags", "{}"], id="tags not a list"),
        pytest.param(["list", "--filters", "[{"], id="filters not json"),
        pytest.param(
            ["create", "--name", NAME, "--secret-string", "a", "--secret-string-file", "-"],
            id="two string sources",
        ),
        pytest.param(
            ["create", "--name", NAME, "--secret-binary", "not base64!"], id="binary not base64"
        ),
        pytest.param(
            ["create", "--name", NAME, "--secret-string-file", "/no/such/file"], id="no file"
        ),
        pytest.param(["put", "--secret-id", NAME, "--version-stages"], id="stages without label"),
        pytest.param(
            ["put", "--secret-id", NAME, "--version-stages", "--json"], id="stages before option"
        ),
        pytest.param(["frobnicate"], id="unknown command"),
    ],
)
def test_a_usage_error_exits_2(sqlite_cli: Cli, arguments: list[str]) -> None:
    result = sqlite_cli.run(*arguments)

    assert result.exit_code == 2, result.output


def test_a_value_larger_than_secrets_manager_accepts_is_a_usage_error(sqlite_cli: Cli) -> None:
    result = sqlite_cli.run(
        "create",
        "--name",
        NAME,
        "--secret-string-file",
        "-",
        stdin="x" * (VALUE_SIZE_BYTES_MAX + 1),
    )

    assert result.exit_code == 2
    assert "more than 65536 bytes" in result.stderr


def test_a_text_value_file_must_be_utf8(sqlite_cli: Cli) -> None:
    result = sqlite_cli.run("create", "--name", NAME, "--secret-string-file", "-", stdin=b"\xff")

    assert result.exit_code == 2
    assert "--secret-binary-file" in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])

    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"  secretledger {command}" in result.stdout


def all_commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield prefix + name, command
        if isinstance(command, click.Group):
            yield from all_commands(command, f"{prefix}{name} ")


def test_every_command_names_a_secret_with_the_one_secret_id_option() -> None:
    takers = []
    for name, command in all_commands(main):
        arguments = [param.name for param in command.params if isinstance(param, click.Argument)]
        assert not [argument for argument in arguments if "secret" in (argument or "")], name
        options = [param for param in command.params if "--secret-id" in param.opts]
        if options:
            (option,) = options
            assert option.opts == ["--secret-id"] and option.name == "secret_id", name
            takers.append(name)
    assert {"get", "put", "destroy-version", "labels", "history", "diff"} <= set(takers)


# Audit


def recorded_requests(cli: Cli) -> list[dict[str, Any]]:
    """The request context of every event of the ledger, in log order."""
    secrets = Secrets(cli.database, keyring_path=cli.keyring_path)
    try:
        notifications = secrets.recorder.select_notifications(start=1, limit=100)
        events = [secrets.mapper.to_domain_event(item) for item in notifications]
    finally:
        secrets.close()
    return [event.request for event in events]  # type: ignore[attr-defined]


def test_every_cli_call_is_recorded_as_made_by_the_account_root_without_a_principal(
    sqlite_cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CA-1, CA-2: $USER names no one; the OS user is a field beside the principal."""
    monkeypatch.setenv("SECRETLEDGER_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("SECRETLEDGER_PRINCIPAL", raising=False)
    monkeypatch.setenv("USER", "ceo")
    monkeypatch.setenv("LOGNAME", "ceo")
    sqlite_cli.create()
    sqlite_cli.ok("get", "--secret-id", NAME)
    sqlite_cli.run("get", "--secret-id", "no/such/secret")

    requests = recorded_requests(sqlite_cli)
    assert [request["operation"] for request in requests][-2:] == ["GetSecretValue"] * 2
    for request in requests:  # the create's events as well as the recorded reads
        assert request["principal_arn"] == "arn:aws:iam::123456789012:root"
        assert request["os_user"] == "ceo"  # getpass reads $LOGNAME, $USER: kept, not trusted
        assert request["user_agent"].startswith("secretledger-cli/")


def test_the_cli_principal_comes_from_the_option_or_the_configuration_file(
    sqlite_cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('principal = "arn:aws:iam::123456789012:user/from-config"\n')
    monkeypatch.setenv("SECRETLEDGER_CONFIG", str(config))
    monkeypatch.delenv("SECRETLEDGER_PRINCIPAL", raising=False)
    sqlite_cli.create()
    sqlite_cli.ok("get", "--secret-id", NAME, "--principal", "arn:aws:iam::123456789012:user/ops")

    by_operation: dict[str, set[str]] = {}
    for request in recorded_requests(sqlite_cli):
        by_operation.setdefault(request["operation"], set()).add(request["principal_arn"])
    assert by_operation == {
        "CreateSecret": {"arn:aws:iam::123456789012:user/from-config"},
        "GetSecretValue": {"arn:aws:iam::123456789012:user/ops"},  # its record and access date
    }
    assert {request["os_user"] for request in recorded_requests(sqlite_cli)} == {getpass.getuser()}


@pytest.mark.parametrize(
    ("arguments", "config_text", "expected"),
    [
        (["--principal", "ops"], None, "is not an IAM ARN"),
        ([], 'principal = "alice"\n', "is not an IAM ARN"),
        ([], 'principal = ["arn:aws:iam::123456789012:user/a"]\n', "must be a string"),
        ([], 'principals = "arn:aws:iam::123456789012:user/a"\n', "unknown key(s)"),
        ([], "principal = \n", "cannot read the configuration file"),
    ],
)
def test_a_bad_principal_is_a_usage_error(
    sqlite_cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    arguments: list[str],
    config_text: str | None,
    expected: str,
) -> None:
    config = tmp_path / "config.toml"
    if config_text is not None:
        config.write_text(config_text)
    monkeypatch.setenv("SECRETLEDGER_CONFIG", str(config))
    monkeypatch.delenv("SECRETLEDGER_PRINCIPAL", raising=False)
    result = sqlite_cli.run("list", *arguments)
    assert result.exit_code == 2
    assert expected in result.output


# The demo


DEMO_LABEL_MAPS = [
    "labels: v1[AWSCURRENT]",
    "labels: v1[AWSPREVIOUS]  v2[AWSCURRENT]",
    "labels: v1[AWSPREVIOUS]  v2[AWSCURRENT, blue]",
    "labels: v1[AWSPREVIOUS]  v2[AWSCURRENT, blue]  v3[AWSPENDING]",
    "labels: v1[]  v2[AWSPREVIOUS, blue]  v3[AWSCURRENT, AWSPENDING]",
    "labels: v1[]  v2[AWSCURRENT, blue]  v3[AWSPENDING, AWSPREVIOUS]",
]


def test_the_demo_tells_the_rotation_story_on_a_fresh_database(tmp_path: Path) -> None:
    database = str(tmp_path / "demo.db")

    result = CliRunner().invoke(main, ["demo", "--db", database])

    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    label_lines = [line for line in lines if line.startswith("labels: ")]
    assert label_lines[: len(DEMO_LABEL_MAPS)] == DEMO_LABEL_MAPS
    assert label_lines[len(DEMO_LABEL_MAPS) :] == [DEMO_LABEL_MAPS[-1]] * 2  # retry, refusal
    assert "get returns v2 (value not printed here)" in lines
    assert any(line.startswith("refused: ResourceExistsException: ") for line in lines)
    assert "searched the raw database files for the 4 values: 0 hits" in lines
    assert f"secretledger describe --secret-id demo/payments/api-key --db {database}" in lines


def test_the_demo_lists_every_version_at_the_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--db", str(tmp_path / "demo.db")])

    table = result.stdout.split("--include-deprecated\n", 1)[1]
    rows = [line.split() for line in table.splitlines()[1:4]]
    assert [(row[0], row[2:]) for row in rows] == [
        ("v3", ["AWSPENDING,", "AWSPREVIOUS"]),
        ("v2", ["AWSCURRENT,", "blue"]),
        ("v1", ["(none:", "deprecated)"]),
    ]


def test_the_demo_refuses_a_database_that_already_has_events(sqlite_cli: Cli) -> None:
    sqlite_cli.create()

    keyring = str(sqlite_cli.keyring_path)
    result = CliRunner().invoke(main, ["demo", "--db", sqlite_cli.database, "--keyring", keyring])

    assert result.exit_code == 2
    assert "already holds events" in result.stderr


def test_a_command_without_the_ledgers_keyring_is_refused_and_names_it(sqlite_cli: Cli) -> None:
    """KR2: the default <db>.keyring does not exist, but the ledger holds events."""
    sqlite_cli.create()

    result = CliRunner().invoke(main, ["get", "--db", sqlite_cli.database, "--secret-id", NAME])

    assert result.exit_code == 1
    assert f"keyring {sqlite_cli.database}.keyring does not exist" in result.stderr
    assert "Traceback" not in result.output
    assert not Path(sqlite_cli.database + ".keyring").exists()
    assert sqlite_cli.ok("get", "--secret-id", NAME) == "first-value\n"


@pytest.fixture
def temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path


def test_the_demo_uses_a_new_temporary_database_by_default(temporary_directory: Path) -> None:
    first = CliRunner().invoke(main, ["demo"])
    second = CliRunner().invoke(main, ["demo"])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    databases = sorted(temporary_directory.glob("secretledger-demo-*/demo.db"))
    assert len(databases) == 2


def test_the_demo_points_to_the_read_side_commands_and_they_run(tmp_path: Path) -> None:
    database = str(tmp_path / "demo.db")

    result = CliRunner().invoke(main, ["demo", "--db", database])

    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    for command in ("labels", "history"):
        pointer = f"secretledger {command} --secret-id demo/payments/api-key --db {database}"
        assert pointer in lines
        pointed = CliRunner().invoke(main, shlex.split(pointer)[1:])
        assert pointed.exit_code == 0, (pointer, pointed.output)


def test_the_demo_points_only_to_read_side_commands_that_are_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(main.commands, "history")
    database = str(tmp_path / "demo.db")

    result = CliRunner().invoke(main, ["demo", "--db", database])

    assert result.exit_code == 0, result.output
    assert "secretledger labels --secret-id demo/payments/api-key" in result.stdout
    assert "secretledger history" not in result.stdout


def test_the_demo_runs_in_memory_too() -> None:
    result = CliRunner().invoke(main, ["demo", "--db", "memory:"])

    assert result.exit_code == 0, result.output
    assert "labels: v1[]  v2[AWSCURRENT, blue]  v3[AWSPENDING, AWSPREVIOUS]" in result.stdout


# The canary: a value is seen through `get` only


CANARY = "canary-7f3a9c-do-not-leak-ELEPHANT"
OTHER_CANARY = "canary-2b8e1d-refused-value-GIRAFFE"


def test_a_value_never_appears_in_any_output_but_get_nor_in_the_database_file(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    cli = sqlite_cli
    cli.ok("create", "--name", NAME, "--secret-string", CANARY, "--client-request-token", TOKEN_ONE)
    cli.ok("create", "--name", "other", "--secret-string-file", "-", stdin=CANARY)
    cli.put(CANARY, TOKEN_TWO, "--version-stages", "AWSPENDING", "blue")
    cli.put(CANARY, TOKEN_TWO)  # an idempotent replay
    cli.run("put", "--secret-id", NAME, "--secret-string", OTHER_CANARY,
            "--client-request-token", TOKEN_TWO)  # fmt: skip
    cli.run("put", "--secret-id", NAME, "--secret-string", OTHER_CANARY,
            "--client-request-token", "too-short")  # fmt: skip
    for as_json in ([], ["--json"]):
        cli.ok("describe", "--secret-id", NAME, *as_json)
        cli.ok("versions", "--secret-id", NAME, "--include-deprecated", *as_json)
        cli.ok("list", "--include-planned-deletion", *as_json)
        cli.ok("update-stage", "--secret-id", NAME, "--version-stage", "AWSCURRENT",
               "--move-to-version-id", TOKEN_TWO, "--remove-from-version-id", TOKEN_ONE,
               *as_json)  # fmt: skip
        cli.ok("update-stage", "--secret-id", NAME, "--version-stage", "AWSCURRENT",
               "--move-to-version-id", TOKEN_ONE, "--remove-from-version-id", TOKEN_TWO,
               *as_json)  # fmt: skip
        cli.ok("delete", "--secret-id", "other", *as_json)
        cli.ok("restore", "--secret-id", "other", *as_json)
    revealed = cli.ok("get", "--secret-id", NAME)

    assert CANARY in revealed  # get reveals it: the search below can find it
    assert len(cli.outputs) > 20
    for output in cli.outputs[:-1]:
        assert CANARY not in output
        assert OTHER_CANARY not in output
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert stored  # the database files were searched
    assert CANARY.encode() not in stored
    assert OTHER_CANARY.encode() not in stored


# The console script, in a real process


def test_the_console_script_runs_in_a_real_process(tmp_path: Path) -> None:
    executable = shutil.which("secretledger")
    assert executable is not None, "pip install -e . installs the secretledger console script"
    database = str(tmp_path / "ledger.db")

    def run(*arguments: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable, *arguments, "--db", database],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_SECONDS,
            check=False,
        )

    created = run("create", "--name", NAME, "--secret-string-file", "-", stdin="from-a-pipe")
    read = run("get", "--secret-id", NAME)
    missing = run("get", "--secret-id", "no/such/secret")
    usage = run("get")

    assert created.returncode == 0, created.stderr
    assert (read.returncode, read.stdout) == (0, "from-a-pipe\n")
    assert missing.returncode == 1
    assert missing.stderr.startswith("ResourceNotFoundException: ")
    assert usage.returncode == 2
    assert "Missing option '--secret-id'" in usage.stderr
