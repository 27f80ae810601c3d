"""`python3 tools/loadtest.py`: many clients against real `secretledger serve` processes,
then a check of the ledger against every acknowledged answer.

It starts its own servers on loopback (SQLite by default; ``--postgres N``: N servers
on one throwaway PostgreSQL, made by tools/with_throwaway_postgres.sh, plus a
``secretledger follow`` process for the projections), creates ``--secrets`` secrets
(the first ``--hot`` of them take half of the traffic), and runs ``--clients``
client processes for ``--duration`` seconds or ``--requests`` requests, whichever
comes first. Each client sends SigV4-signed requests (raw, over http.client; with
``--boto3`` through boto3): PutSecretValue without stages, with AWSCURRENT, with a
custom stage or AWSPENDING, and replays of its last token; rotations by
UpdateSecretVersionStage (AWSCURRENT onto the client's newest version);
GetSecretValue, DescribeSecret and ListSecrets. A request that finds no server, or
answers 5xx, is retried with the same body (so the same ClientRequestToken) until
``--retry-seconds``. Every value is derived from its token, so any answer can be
checked on the spot.

``--kill-every SECONDS`` SIGKILLs every server (and the follower) at that period
and restarts it, while the clients retry.

The check, after the clients stop:

1. every acknowledged put is in the log (``VersionCreated`` with its VersionId) and,
   unless retention removed it (``VersionRemoved``), readable with its value;
   every GetSecretValue answer carried the value of the version it named;
2. every acknowledged stage update is in the log;
3. the labels: replaying each secret's commands from the log (operation and
   parameters of each request) through this tool's own model of the label rules
   gives, after every command and at the end, the labels the ledger has; exactly
   one AWSCURRENT per secret;
4. the projections caught up with the log while the servers ran (within 60 s);
5. `secretledger verify --projections` passes: the log intact, and the projection
   tables equal to a rebuild.

It prints clients, duration, requests, throughput (over the run, and in ten
stretches of it, so that a run long enough shows whether the server slows down
as its ledger grows, and a run with kills shows their dips), p50/p99 latency per
operation, server CPU per request (from /proc/<pid>/stat of the servers), kill
rounds survived, acknowledged puts lost, and the check; exit 0 when the check
passes, 1 when it does not, 2 on a usage error. Loopback only; every loop is
bounded.

Example:
  python3 tools/loadtest.py --clients 4 --duration 20
  python3 tools/loadtest.py --postgres 2 --duration 20
  python3 tools/loadtest.py --kill-every 3 --duration 20 --json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from ledger.api import SecretsManagerApi  # noqa: E402
from ledger.application import Secrets  # noqa: E402
from ledger.auth import Principal, write_credentials_file  # noqa: E402
from ledger.domain import AWSCURRENT, AWSPENDING, AWSPREVIOUS, Secret  # noqa: E402
from ledger.errors import SecretsManagerError  # noqa: E402
from ledger.signing_keys import SigningKeys  # noqa: E402
from projections import ReadModel  # noqa: E402

REGION = "eu-west-1"
ACCOUNT_ID = "111122223333"
PRINCIPAL = Principal(
    access_key_id="AKIALOADTEST00000001",
    secret_access_key="loadtest-secret-access-key-000000000000",
    arn=f"arn:aws:iam::{ACCOUNT_ID}:user/loadtest",
)
POSTGRES_URL_VARIABLE = "SECRETLEDGER_TEST_POSTGRES_URL"
THROWAWAY_POSTGRES = REPOSITORY / "tools" / "with_throwaway_postgres.sh"
CUSTOM_STAGE = "STAGED"
READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 40
HTTP_TIMEOUT_SECONDS = 30
CATCH_UP_TIMEOUT_SECONDS = 60
CLIENT_JOIN_GRACE_SECONDS = 120
VERIFY_TIMEOUT_SECONDS = 600
RETRY_BACKOFF_SECONDS_FIRST = 0.02
RETRY_BACKOFF_SECONDS_MAX = 0.5
PROBLEMS_SHOWN_MAX = 20
TIMELINE_STRETCHES = 10
HOT_SHARE = 0.5
# Operation mix, in percent of requests.
MIX = (
    ("put", 30),
    ("rotate", 8),
    ("get", 40),
    ("describe", 12),
    ("list", 10),
)
EXPECTED_REFUSALS = frozenset(
    {
        "InvalidParameterException",  # a stage update raced by another client's
        "ResourceExistsException",  # a replay of a token retention has removed
        "ResourceNotFoundException",  # a version retention has removed
        "LimitExceededException",  # a hot secret at its quota of versions younger than a day
    }
)


def value_for(token: str) -> str:
    return f"value of {token}"


# --------------------------------------------------------------------------------------
# Clients (each in its own process)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    index: int
    ports: tuple[int, ...]
    secret_names: tuple[str, ...]
    hot_count: int
    duration_seconds: float  # from the client's own start, once imported
    requests_max: int
    retry_seconds: float
    use_boto3: bool
    seed: int
    result_path: str


@dataclass
class ClientResult:
    index: int
    puts: list[dict[str, Any]] = field(default_factory=list)  # name, token, request_id
    stage_moves: list[dict[str, Any]] = field(default_factory=list)  # name, request_id
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # Answers by the second (Unix time, as text: the result travels as JSON).
    answered_by_second: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    retries: int = 0
    started: float = 0.0  # time.time()
    finished: float = 0.0


class Answer:
    """One HTTP answer: status, decoded body, request id."""

    def __init__(self, status: int, body: dict[str, Any], request_id: str) -> None:
        self.status = status
        self.body = body
        self.request_id = request_id

    @property
    def error_code(self) -> str:
        return str(self.body.get("__type", "")) if self.status != 200 else ""


class RawTransport:
    """SigV4-signed requests over persistent http.client connections, one per port."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.connections: dict[int, http.client.HTTPConnection] = {}
        self.credentials = Credentials(PRINCIPAL.access_key_id, PRINCIPAL.secret_access_key)

    def send(self, port: int, operation: str, members: Mapping[str, Any]) -> Answer:
        url = f"http://127.0.0.1:{port}/"
        body = json.dumps(members).encode()
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"secretsmanager.{operation}",
            },
        )
        SigV4Auth(self.credentials, "secretsmanager", REGION).add_auth(request)
        connection = self.connections.get(port)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_SECONDS)
            self.connections[port] = connection
        try:
            connection.request("POST", "/", body=body, headers=dict(request.headers))
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            del self.connections[port]
            raise
        request_id = response.getheader("x-amzn-RequestId") or ""
        return Answer(response.status, json.loads(payload or b"{}"), request_id)


class Boto3Transport:
    """The same requests through boto3 clients (no SDK retries: this tool retries)."""

    def __init__(self, ports: Sequence[int]) -> None:
        import boto3
        from botocore.config import Config

        self.clients = {
            port: boto3.client(
                "secretsmanager",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name=REGION,
                aws_access_key_id=PRINCIPAL.access_key_id,
                aws_secret_access_key=PRINCIPAL.secret_access_key,
                config=Config(retries={"total_max_attempts": 1}, read_timeout=HTTP_TIMEOUT_SECONDS),
            )
            for port in ports
        }

    def send(self, port: int, operation: str, members: Mapping[str, Any]) -> Answer:
        from botocore.exceptions import ClientError, EndpointConnectionError, HTTPClientError

        method = getattr(self.clients[port], snake_case(operation))
        try:
            response = method(**members)
        except ClientError as error:
            metadata = error.response.get("ResponseMetadata", {})
            body = {"__type": error.response["Error"]["Code"]}
            return Answer(metadata.get("HTTPStatusCode", 500), body, metadata.get("RequestId", ""))
        except (EndpointConnectionError, HTTPClientError) as error:
            raise ConnectionError(type(error).__name__) from None
        metadata = response.pop("ResponseMetadata", {})
        return Answer(200, response, metadata.get("RequestId", ""))


def snake_case(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


class Client:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.transport: RawTransport | Boto3Transport = (
            Boto3Transport(config.ports) if config.use_boto3 else RawTransport(config.ports)
        )
        self.result = ClientResult(config.index)
        self.port_index = config.index % len(config.ports)
        self.put_count = 0
        self.my_versions: dict[str, list[str]] = {}  # name -> tokens this client put
        self.last_put: tuple[str, str] | None = None  # (name, token)

    def run(self) -> ClientResult:
        operations = [name for name, weight in MIX for _ in range(weight)]
        self.result.started = time.time()
        deadline = self.result.started + self.config.duration_seconds
        for _ in range(self.config.requests_max):
            if time.time() >= deadline:
                break
            getattr(self, "_" + self.random.choice(operations))(self._secret())
        self.result.finished = time.time()
        return self.result

    def _secret(self) -> str:
        names = self.config.secret_names
        if self.random.random() < HOT_SHARE:
            return names[self.random.randrange(self.config.hot_count)]
        return names[self.random.randrange(len(names))]

    def _call(self, kind: str, operation: str, members: Mapping[str, Any]) -> Answer | None:
        """Send until answered (not 5xx) or out of retry time; None if never answered."""
        give_up_at = time.monotonic() + self.config.retry_seconds
        backoff_seconds = RETRY_BACKOFF_SECONDS_FIRST
        while True:
            port = self.config.ports[self.port_index]
            started = time.perf_counter()
            try:
                answer: Answer | None = self.transport.send(port, operation, members)
            except (OSError, http.client.HTTPException, ConnectionError):
                answer = None
            elapsed = time.perf_counter() - started
            if answer is not None and answer.status < 500:
                self.result.latencies.setdefault(kind, []).append(elapsed)
                self.result.counts[kind] = self.result.counts.get(kind, 0) + 1
                second = str(int(time.time()))
                by_second = self.result.answered_by_second
                by_second[second] = by_second.get(second, 0) + 1
                if answer.status != 200:
                    self._refused(kind, answer)
                return answer
            if time.monotonic() >= give_up_at:
                what = f"HTTP {answer.status}" if answer is not None else "no server"
                self.result.problems.append(f"{kind} never answered in time ({what})")
                return None
            self.result.retries += 1
            self.port_index = (self.port_index + 1) % len(self.config.ports)
            time.sleep(backoff_seconds)
            backoff_seconds = min(backoff_seconds * 2, RETRY_BACKOFF_SECONDS_MAX)

    def _refused(self, kind: str, answer: Answer) -> None:
        code = answer.error_code
        self.result.refusals[code] = self.result.refusals.get(code, 0) + 1
        if code not in EXPECTED_REFUSALS:
            self.result.problems.append(f"{kind}: unexpected {answer.status} {code}")

    def _put(self, name: str) -> None:
        if self.last_put is not None and self.random.random() < 0.05:
            name, token = self.last_put  # a replay: same token, same value
        else:
            self.put_count += 1
            token = f"lt-{self.config.index:04d}-{self.put_count:08d}-{uuid.uuid4().hex}"
        members: dict[str, Any] = {
            "SecretId": name,
            "ClientRequestToken": token,
            "SecretString": value_for(token),
        }
        stages = self.random.choice([None, None, None, [AWSCURRENT], [CUSTOM_STAGE], [AWSPENDING]])
        if stages is not None:
            members["VersionStages"] = stages
        answer = self._call("put", "PutSecretValue", members)
        if answer is None or answer.status != 200:
            return
        if answer.body.get("VersionId") != token:
            self.result.problems.append(f"put {token}: answered VersionId {answer.body!r}")
            return
        self.result.puts.append({"name": name, "token": token, "request_id": answer.request_id})
        self.my_versions.setdefault(name, []).append(token)
        self.last_put = (name, token)

    def _rotate(self, name: str) -> None:
        """A rotation's last step: AWSCURRENT onto this client's newest version of it."""
        mine = self.my_versions.get(name)
        if not mine:
            self._describe(name)
            return
        described = self._call("describe", "DescribeSecret", {"SecretId": name})
        if described is None or described.status != 200:
            return
        current = current_version(described.body)
        if current is None or current == mine[-1]:
            return
        members = {
            "SecretId": name,
            "VersionStage": AWSCURRENT,
            "MoveToVersionId": mine[-1],
            "RemoveFromVersionId": current,
        }
        answer = self._call("rotate", "UpdateSecretVersionStage", members)
        if answer is not None and answer.status == 200:
            self.result.stage_moves.append({"name": name, "request_id": answer.request_id})

    def _get(self, name: str) -> None:
        answer = self._call("get", "GetSecretValue", {"SecretId": name})
        if answer is not None and answer.status == 200:
            version_id = str(answer.body.get("VersionId"))
            if answer.body.get("SecretString") != value_for(version_id):
                self.result.problems.append(f"get {name}: a value not of version {version_id}")

    def _describe(self, name: str) -> None:
        answer = self._call("describe", "DescribeSecret", {"SecretId": name})
        if answer is not None and answer.status == 200 and current_version(answer.body) is None:
            self.result.problems.append(f"describe {name}: no AWSCURRENT")

    def _list(self, name: str) -> None:
        members = {"MaxResults": 20, "Filters": [{"Key": "name", "Values": [name]}]}
        answer = self._call("list", "ListSecrets", members)
        if answer is not None and answer.status == 200 and not answer.body.get("SecretList"):
            self.result.problems.append(f"list {name}: not found")


def current_version(described: Mapping[str, Any]) -> str | None:
    for version_id, stages in (described.get("VersionIdsToStages") or {}).items():
        if AWSCURRENT in stages:
            return str(version_id)
    return None


def run_client(config: ClientConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops everything
    result = Client(config).run()
    Path(config.result_path).write_text(json.dumps(asdict(result)))


# --------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------


CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads) and of its living
    descendants (granian serves from a worker process). OSError once the process is
    gone; a descendant that ends meanwhile counts nothing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own_seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND  # fields 14, 15
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return own_seconds + sum(living_cpu_seconds(child) for child in children)


def living_cpu_seconds(pid: int) -> float:
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return 0.0


class Service:
    """One process (a server or the follower) that can be killed and started again;
    its CPU time is summed over every life."""

    def __init__(self, label: str, command: list[str], port: int | None, log_path: Path) -> None:
        self.label = label
        self.command = command
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.cpu_seconds_before = 0.0  # of earlier lives
        self.cpu_seconds_at_start = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log_path.parent,
                env={**os.environ, "PYTHONPATH": str(REPOSITORY), "PYTHONUNBUFFERED": "1"},
            )
        if self.port is not None:
            wait_until_listening(self.process, self.port, self.log_path)

    def cpu_seconds(self) -> float:
        """CPU time of every life so far (utime + stime of the running one)."""
        return self.cpu_seconds_before + self._current_cpu_seconds()

    def _current_cpu_seconds(self) -> float:
        if self.process is None or self.process.poll() is not None:
            return 0.0
        return living_cpu_seconds(self.process.pid)

    def kill(self) -> None:
        assert self.process is not None, "started before killed"
        self.cpu_seconds_before += self._current_cpu_seconds()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return 0 if self.process is None else self.process.returncode
        self.cpu_seconds_before += self._current_cpu_seconds()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -signal.SIGKILL


def wait_until_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not listen within {READY_TIMEOUT_SECONDS} s")


def secretledger_command(*arguments: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from ledger.cli import main; sys.exit(main())",
        *arguments,
    ]


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    clients: int
    duration_seconds: float
    requests: int
    secrets: int
    hot: int
    servers: int
    postgres: bool
    kill_every_seconds: float | None
    retry_seconds: float
    use_boto3: bool
    seed: int
    keep: Path | None
    as_json: bool


@dataclass
class Ledger:
    database: str
    directory: Path

    @property
    def keyring_path(self) -> Path:
        return self.directory / "ledger.keyring"

    @property
    def signing_key_path(self) -> Path:
        """The checkpoint signing key every server shares (made before they start)."""
        return self.directory / "ledger.signing-key"

    def open(self) -> Secrets:
        return Secrets(
            self.database, keyring_path=self.keyring_path, region=REGION, account_id=ACCOUNT_ID
        )


def secret_names(count: int) -> list[str]:
    return [f"load/secret-{number:05d}" for number in range(count)]


def create_secrets(ledger: Ledger, names: Sequence[str]) -> None:
    """The secrets, each with a first version; also creates the keyring and the signing
    key, before any server starts (servers starting together must not each make one)."""
    SigningKeys.create(ledger.signing_key_path)
    secrets = ledger.open()
    try:
        api = SecretsManagerApi(secrets, record_calls=False)
        for name in names:
            token = f"lt-first-{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}"
            api.call(
                "CreateSecret",
                {"Name": name, "ClientRequestToken": token, "SecretString": value_for(token)},
            )
    finally:
        secrets.close()


def services_for(settings: Settings, ledger: Ledger, credentials: Path) -> list[Service]:
    services = []
    for number in range(settings.servers):
        port = free_port()
        arguments = [
            "serve",
            "--db",
            ledger.database,
            "--port",
            str(port),
            "--credentials",
            str(credentials),
            "--region",
            REGION,
            "--account-id",
            ACCOUNT_ID,
            "--keyring",
            str(ledger.keyring_path),
            "--signing-key",
            str(ledger.signing_key_path),
        ]
        if settings.postgres:
            arguments.append("--no-projections")  # the follower keeps them
        log_path = ledger.directory / f"server-{number}.log"
        services.append(
            Service(f"server {number}", secretledger_command(*arguments), port, log_path)
        )
    if settings.postgres:
        command = secretledger_command("follow", "--db", ledger.database)
        services.append(Service("follower", command, None, ledger.directory / "follow.log"))
    return services


@dataclass
class RunFigures:
    duration_seconds: float
    server_cpu_seconds: float
    kill_rounds: int


def run_load(
    settings: Settings, ledger: Ledger, services: list[Service], names: list[str]
) -> tuple[list[ClientResult], RunFigures]:
    ports = tuple(service.port for service in services if service.port is not None)
    servers = [service for service in services if service.port is not None]
    cpu_at_start = sum(service.cpu_seconds() for service in servers)
    deadline = time.time() + settings.duration_seconds  # for the kills; clients start later
    context = multiprocessing.get_context("spawn")
    processes = []
    for index in range(settings.clients):
        config = ClientConfig(
            index=index,
            ports=ports,
            secret_names=tuple(names),
            hot_count=settings.hot,
            duration_seconds=settings.duration_seconds,
            requests_max=max(1, settings.requests // settings.clients),
            retry_seconds=settings.retry_seconds,
            use_boto3=settings.use_boto3,
            seed=settings.seed * 1000 + index,
            result_path=str(ledger.directory / f"client-{index}.json"),
        )
        process = context.Process(target=run_client, args=(config,), name=f"client-{index}")
        process.start()
        processes.append((process, config))
    kill_rounds = 0
    while any(process.is_alive() for process, _ in processes):
        period_seconds = settings.kill_every_seconds
        if period_seconds is not None and time.time() + period_seconds < deadline:
            time.sleep(period_seconds)
            for service in services:
                service.kill()
            for service in services:
                service.start()
            kill_rounds += 1
            continue
        time.sleep(0.05)
        if time.time() > deadline + CLIENT_JOIN_GRACE_SECONDS:
            raise RuntimeError("clients did not stop within the grace period")
    results = []
    for process, config in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"client {config.index} failed (exit {process.exitcode})")
        results.append(ClientResult(**json.loads(Path(config.result_path).read_text())))
    server_cpu_seconds = sum(service.cpu_seconds() for service in servers) - cpu_at_start
    started = min(result.started for result in results)
    duration_seconds = max(result.finished for result in results) - started
    return results, RunFigures(duration_seconds, server_cpu_seconds, kill_rounds)


# --------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------


def labels_after_put(
    labels: dict[str, str], version_id: str, stages: list[str] | None
) -> dict[str, str]:
    """The label rules of a put, as this tool models them (not the ledger's code)."""
    attach = set(stages) if stages is not None else {AWSCURRENT}
    if not labels:
        attach.add(AWSCURRENT)  # a secret's first version is current
    after = dict(labels)
    old_current = labels.get(AWSCURRENT)
    for label in attach:
        after[label] = version_id
    if AWSCURRENT in attach and old_current is not None and old_current != version_id:
        if AWSPREVIOUS not in attach:
            after[AWSPREVIOUS] = old_current
        if AWSPENDING not in attach and labels.get(AWSPENDING) == old_current:
            del after[AWSPENDING]
    return after


def labels_after_move(labels: dict[str, str], parameters: Mapping[str, Any]) -> dict[str, str]:
    label = parameters["versionStage"]
    holder = labels.get(label)
    after = dict(labels)
    if parameters.get("moveToVersionId") is not None:
        after[label] = parameters["moveToVersionId"]
    else:
        after.pop(label, None)
    if label == AWSCURRENT and holder is not None and after.get(AWSCURRENT) != holder:
        after[AWSPREVIOUS] = holder
    return after


def commands_of(events: Sequence[Any]) -> Iterator[tuple[Mapping[str, Any], list[Any]]]:
    """A secret's events grouped by the request that appended them, in log order."""
    group: list[Any] = []
    for event in events:
        if group and event.request["request_id"] != group[0].request["request_id"]:
            yield group[0].request, group
            group = []
        group.append(event)
    if group:
        yield group[0].request, group


def check_secret(
    secrets: Secrets, name: str, problems: list[str]
) -> tuple[set[str], set[str], set[str]]:
    """Replay the secret's commands through the model, comparing labels after each;
    returns its created, removed version ids and the request ids of its commands."""
    secret = secrets.find_secret(name)
    events = list(secrets.events.get(secret.id))
    model: dict[str, str] = {}
    ledger_labels: dict[str, str] = {}
    created: set[str] = set()
    removed: set[str] = set()
    request_ids: set[str] = set()
    for request, group in commands_of(events):
        request_ids.add(request["request_id"])
        parameters = request.get("parameters", {})
        for event in group:
            if isinstance(event, Secret.VersionCreated):
                created.add(event.version_id)
                stages = parameters.get("versionStages")
                model = labels_after_put(model, event.version_id, stages)
            elif isinstance(event, Secret.VersionRemoved):
                removed.add(event.version_id)
            elif isinstance(event, Secret.LabelMoved):
                if event.to_version_id is None:
                    ledger_labels.pop(event.label, None)
                else:
                    ledger_labels[event.label] = event.to_version_id
        if request["operation"] == "UpdateSecretVersionStage":
            model = labels_after_move(model, parameters)
        if model != ledger_labels:
            problems.append(
                f"{name}: after request {request['request_id']} ({request['operation']}) the "
                f"model has {model}, the log {ledger_labels}"
            )
            model = dict(ledger_labels)  # report each divergence once
    if secret.labels != ledger_labels:
        problems.append(f"{name}: the secret's labels {secret.labels} differ from its log")
    holders = [v for v, stages in secret.version_ids_to_stages().items() if AWSCURRENT in stages]
    if len(holders) != 1:
        problems.append(f"{name}: {len(holders)} versions hold AWSCURRENT")
    return created, removed, request_ids


def check_ledger(
    ledger: Ledger, names: Sequence[str], results: Sequence[ClientResult]
) -> dict[str, Any]:
    problems: list[str] = [problem for result in results for problem in result.problems]
    secrets = ledger.open()
    lost = 0
    try:
        api = SecretsManagerApi(secrets, record_calls=False)
        created: dict[str, set[str]] = {}
        removed: dict[str, set[str]] = {}
        request_ids: set[str] = set()
        for name in names:
            created[name], removed[name], ids = check_secret(secrets, name, problems)
            request_ids |= ids
        for result in results:
            for put in result.puts:
                name, token = put["name"], put["token"]
                if token not in created[name]:
                    lost += 1
                    problems.append(f"acknowledged put {token} of {name} is not in the log")
                elif token not in removed[name]:
                    answer = api.call("GetSecretValue", {"SecretId": name, "VersionId": token})
                    if answer["SecretString"] != value_for(token):
                        problems.append(f"version {token} of {name} has another value")
            for move in result.stage_moves:
                if move["request_id"] not in request_ids:
                    problems.append(f"acknowledged stage move {move['request_id']} not in the log")
    except SecretsManagerError as error:
        problems.append(f"the check could not read the ledger: {error.code}")
    finally:
        secrets.close()
    return {"problems": problems, "lost": lost}


def wait_for_projections(database: str) -> float | None:
    """Seconds until the followers' projections reached the log's end as it is now;
    None if they did not within the timeout."""
    started = time.monotonic()
    model = ReadModel.open(database)
    try:
        target = model.log.last_position()
        while time.monotonic() - started < CATCH_UP_TIMEOUT_SECONDS:
            if min(model.runner.positions().values()) >= target:
                return time.monotonic() - started
            time.sleep(0.1)
        return None
    finally:
        model.close()


def run_verify(ledger: Ledger) -> dict[str, Any]:
    """`secretledger verify --projections`: the log intact (hash chain, Merkle roots,
    the servers' checkpoints), the projections equal to a rebuild apart."""
    command = secretledger_command(
        "verify",
        "--db",
        ledger.database,
        "--signing-key",
        str(ledger.signing_key_path),
        "--projections",
        "--json",
    )
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=VERIFY_TIMEOUT_SECONDS,
            cwd=ledger.directory,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        )
    except subprocess.TimeoutExpired:
        return {"exit_code": None, "passed": False, "output": "timed out"}
    output = (completed.stdout + completed.stderr).strip()
    if "No such command" in output:
        return {"exit_code": completed.returncode, "passed": None, "output": "not available"}
    return {
        "exit_code": completed.returncode,
        "passed": completed.returncode == 0,
        "output": output[-2000:],
    }


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def throughput_timeline(results: Sequence[ClientResult]) -> tuple[int, list[float]]:
    """Answers per second in up to ``TIMELINE_STRETCHES`` equal stretches of the run
    (the first and last seconds, partly outside it, left out), and their length in
    seconds; no stretches for a run of less than three seconds."""
    answered: dict[int, int] = {}
    for result in results:
        for second, count in result.answered_by_second.items():
            answered[int(second)] = answered.get(int(second), 0) + count
    if not answered:
        return 0, []
    first, last = min(answered) + 1, max(answered) - 1
    if last < first:
        return 0, []
    span_seconds = last - first + 1
    stretch_seconds = -(-span_seconds // TIMELINE_STRETCHES)  # rounded up
    rates = []
    for start in range(first, last + 1, stretch_seconds):
        seconds = range(start, min(start + stretch_seconds, last + 1))
        rates.append(sum(answered.get(second, 0) for second in seconds) / len(seconds))
    return stretch_seconds, rates


def percentile_ms(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(
    settings: Settings,
    results: Sequence[ClientResult],
    figures: RunFigures,
    check: dict[str, Any],
    caught_up_seconds: float | None,
    verify: dict[str, Any],
) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    refusals: dict[str, int] = {}
    for result in results:
        for kind, values in result.latencies.items():
            latencies.setdefault(kind, []).extend(values)
        for kind, count in result.counts.items():
            counts[kind] = counts.get(kind, 0) + count
        for code, count in result.refusals.items():
            refusals[code] = refusals.get(code, 0) + count
    every = [value for values in latencies.values() for value in values]
    answered = len(every)
    stretch_seconds, rates = throughput_timeline(results)
    problems = list(check["problems"])
    if caught_up_seconds is None:
        problems.append(f"the projections did not catch up within {CATCH_UP_TIMEOUT_SECONDS} s")
    if verify["passed"] is False:
        problems.append(f"secretledger verify failed (exit {verify['exit_code']})")
    return {
        "engine": "postgresql" if settings.postgres else "sqlite",
        "servers": settings.servers,
        "clients": settings.clients,
        "transport": "boto3" if settings.use_boto3 else "raw SigV4",
        "duration_seconds": round(figures.duration_seconds, 2),
        "requests_answered": answered,
        "throughput_per_second": round(answered / figures.duration_seconds, 1),
        "throughput_timeline": {
            "stretch_seconds": stretch_seconds,
            "per_second": [round(rate, 1) for rate in rates],
        },
        "latency_ms": {
            kind: {
                "count": len(values),
                "p50": round(percentile_ms(values, 0.5), 2),
                "p99": round(percentile_ms(values, 0.99), 2),
            }
            for kind, values in sorted(latencies.items())
        },
        "p50_ms": round(percentile_ms(every, 0.5), 2),
        "p99_ms": round(percentile_ms(every, 0.99), 2),
        "server_cpu_ms_per_request": round(1000 * figures.server_cpu_seconds / max(answered, 1), 3),
        "acknowledged_puts": sum(len(result.puts) for result in results),
        "acknowledged_stage_moves": sum(len(result.stage_moves) for result in results),
        "refusals": refusals,
        "retries": sum(result.retries for result in results),
        "kill_rounds_survived": figures.kill_rounds,
        "lost": check["lost"],
        "projections_caught_up_seconds": (
            None if caught_up_seconds is None else round(caught_up_seconds, 2)
        ),
        "verify": {key: verify[key] for key in ("exit_code", "passed")},
        "check": "passed" if not problems else "FAILED",
        "problems": problems[:PROBLEMS_SHOWN_MAX],
        "problem_count": len(problems),
    }


def print_summary(report: dict[str, Any]) -> None:
    print(
        f"{report['engine']}, {report['servers']} server(s), {report['clients']} clients "
        f"({report['transport']}), {report['duration_seconds']} s"
    )
    print(
        f"  {report['requests_answered']} requests answered: "
        f"{report['throughput_per_second']}/s, p50 {report['p50_ms']} ms, "
        f"p99 {report['p99_ms']} ms, server CPU {report['server_cpu_ms_per_request']} ms/request"
    )
    timeline = report["throughput_timeline"]
    if timeline["per_second"]:
        rates = " ".join(f"{rate:.0f}" for rate in timeline["per_second"])
        print(f"  throughput by {timeline['stretch_seconds']} s stretch: {rates} /s")
    for kind, figures in report["latency_ms"].items():
        print(
            f"    {kind:9} {figures['count']:7}  "
            f"p50 {figures['p50']:8} ms  p99 {figures['p99']:8} ms"
        )
    print(
        f"  acknowledged: {report['acknowledged_puts']} puts, "
        f"{report['acknowledged_stage_moves']} stage moves; refusals {report['refusals']}; "
        f"retries {report['retries']}"
    )
    print(
        f"  kill rounds survived: {report['kill_rounds_survived']}, lost: {report['lost']}, "
        f"projections caught up in {report['projections_caught_up_seconds']} s, "
        f"verify: {report['verify']}"
    )
    print(f"  check: {report['check']}")
    for problem in report["problems"]:
        print(f"    - {problem}")


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the throwaway cluster, dropped afterwards."""
    import psycopg
    from psycopg import sql

    server_url = os.environ[POSTGRES_URL_VARIABLE]
    name = f"loadtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield server_url.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def work_directory(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="secretledger-loadtest-") as directory:
        yield Path(directory)


def run(settings: Settings) -> dict[str, Any]:
    names = secret_names(settings.secrets)
    with work_directory(settings.keep) as directory, contextlib.ExitStack() as stack:
        database = (
            stack.enter_context(postgres_database())
            if settings.postgres
            else str(directory / "ledger.db")
        )
        ledger = Ledger(database, directory)
        credentials = directory / "credentials.toml"
        if not credentials.exists():
            write_credentials_file(credentials, [PRINCIPAL])
        create_secrets(ledger, names)
        services = services_for(settings, ledger, credentials)
        try:
            for service in services:
                service.start()
            results, figures = run_load(settings, ledger, services, names)
            caught_up_seconds = wait_for_projections(database)
        finally:
            for service in services:
                service.stop()
        check = check_ledger(ledger, names, results)
        verify = run_verify(ledger)
        return summary(settings, results, figures, check, caught_up_seconds, verify)


def parse_arguments(arguments: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(
        prog="tools/loadtest.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: python3 tools/loadtest.py --postgres 2 --duration 20 --kill-every 4",
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument(
        "--requests", type=int, default=10_000_000, help="stop after this many requests in all"
    )
    parser.add_argument("--secrets", type=int, default=50, help="secrets (default 50)")
    parser.add_argument("--hot", type=int, default=3, help="hot secrets among them (default 3)")
    parser.add_argument("--servers", type=int, default=1, help="servers on SQLite (default 1)")
    parser.add_argument(
        "--postgres", type=int, metavar="N", help="N servers on a throwaway PostgreSQL + follow"
    )
    parser.add_argument(
        "--kill-every", type=float, metavar="SECONDS", help="SIGKILL and restart the servers"
    )
    parser.add_argument(
        "--retry-seconds", type=float, default=60.0, help="retry a request this long (default 60)"
    )
    parser.add_argument("--boto3", action="store_true", help="clients use boto3, not raw SigV4")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the clients")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parsed = parser.parse_args(arguments)
    if not 1 <= parsed.hot <= parsed.secrets:
        parser.error("--hot must be between 1 and --secrets")
    if parsed.clients < 1 or parsed.duration <= 0 or parsed.requests < 1:
        parser.error("--clients, --duration and --requests must be positive")
    if parsed.kill_every is not None and parsed.kill_every <= 0:
        parser.error("--kill-every must be positive")
    servers = parsed.postgres if parsed.postgres is not None else parsed.servers
    if servers < 1:
        parser.error("at least one server")
    return Settings(
        clients=parsed.clients,
        duration_seconds=parsed.duration,
        requests=parsed.requests,
        secrets=parsed.secrets,
        hot=parsed.hot,
        servers=servers,
        postgres=parsed.postgres is not None,
        kill_every_seconds=parsed.kill_every,
        retry_seconds=parsed.retry_seconds,
        use_boto3=parsed.boto3,
        seed=parsed.seed,
        keep=parsed.keep,
        as_json=parsed.json,
    )


def main(arguments: Sequence[str]) -> int:
    settings = parse_arguments(arguments)
    if settings.postgres and not os.environ.get(POSTGRES_URL_VARIABLE):
        # Re-run under a throwaway cluster (the script sets the variable).
        completed = subprocess.run(
            ["bash", str(THROWAWAY_POSTGRES), sys.executable, __file__, *arguments], check=False
        )
        return completed.returncode
    report = run(settings)
    if settings.as_json:
        print(json.dumps(report, indent=2))
    else:
        print_summary(report)
    return 0 if report["check"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
