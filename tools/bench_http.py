"""`python3 tools/bench.py http`: boto3 and raw SigV4 clients against servers, side by side.

- floor: a constant-answer ASGI app under exactly the uvicorn settings of
  `secretledger serve` (`ledger.cli.serve.server_config`): it reads the request
  and returns a fixed PutSecretValue or GetSecretValue answer, so it measures the
  client, HTTP and uvicorn, and nothing else;
- with ``--stacks``: the same app under the other ASGI servers the endpoint could
  use, hypercorn (on uvloop) and granian (one worker, one runtime thread, uvloop),
  which must be installed (``pip install -e '.[bench]'``): the measurement
  behind the choice of uvicorn (see docs/decisions.md);
- moto server (``python -m moto.server``), the usual local stand-in;
- with ``--postgres URL`` (or ``SECRETLEDGER_TEST_POSTGRES_URL``, as
  tools/with_throwaway_postgres.sh sets it): secret-ledger on PostgreSQL, one
  server, and two servers on one database (clients split between them, CPU of
  both counted);
- secret-ledger: `secretledger serve --sole-writer` on SQLite (durable: WAL,
  synchronous=FULL), verifying SigV4; twice: recording every read before answering it
  (``--call-records durable``, the default) and queueing the read's record, which
  is committed within milliseconds (``--call-records async``). Puts are durable
  before they are answered in both.

Two tables. First, raw SigV4-signed clients (botocore's signer and
``http.client`` in their own processes, no SDK cost) at concurrency 1 and 4, each
for ``--raw-seconds``: calls per second and the server's CPU time per call (user
plus system time of the server process over the window, divided by the calls
answered). Second, PutSecretValue and GetSecretValue calls per second for one
boto3 client. Both in interleaved rounds (the order rotates, so noise from other work on the machine
hits every server alike), median of the rounds, and each server's ratio to the
floor. Then the targets of issue 11, each with its figure and "met" or "missed":
at concurrency 4, Get and Put at least 4x moto and Get at least 0.5 of the floor;
server CPU per Get at most 0.6 ms; one boto3 client at least 0.6 (Put) and 0.7
(Get) of the floor with durable records; two PostgreSQL servers within 1.2x one
server's CPU per call, with a total throughput not below one server's (a server
not promised to be the only writer either, as neither of the two can be).

Puts are spread over many secrets (a new one every 90 puts), as every server is
given the same work and secret-ledger keeps AWS's limit of 100 versions younger
than a day per secret.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from loadtest import free_port, process_cpu_seconds, secretledger_command, wait_until_listening

from ledger.auth import Principal, write_credentials_file
from ledger.cli.serve import server_config

REGION = "us-east-1"
PRINCIPAL = Principal(
    access_key_id="AKIABENCHMARK0000001",
    secret_access_key="benchmark-secret-access-key-000000000000",
    arn="arn:aws:iam::123456789012:user/benchmark",
)
VALUE = "v" * 32
PUTS_PER_SECRET = 90
STOP_TIMEOUT_SECONDS = 30
WARM_UP_CALLS = 20
LABEL_WIDTH = 48
MOTO_MULTIPLE_MIN = 4.0
FLOOR_RATIO_GET_MIN = 0.5
CPU_MS_PER_GET_MAX = 0.6
BOTO3_PUT_RATIO_MIN = 0.6
BOTO3_GET_RATIO_MIN = 0.7
TWO_SERVERS_CPU_RATIO_MAX = 1.2
RAW_CONCURRENCIES = (1, 4)
RAW_OPERATIONS = ("Put", "Get")
RAW_SECONDS_DEFAULT = 3.0
POSTGRES_URL_VARIABLE = "SECRETLEDGER_TEST_POSTGRES_URL"
FLOOR_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-AbCdEf"
FLOOR_VERSION_ID = "00000000-0000-4000-8000-000000000000"
FLOOR_ANSWERS = {
    "secretsmanager.PutSecretValue": {
        "ARN": FLOOR_ARN,
        "Name": "bench",
        "VersionId": FLOOR_VERSION_ID,
        "VersionStages": ["AWSCURRENT"],
    },
    "secretsmanager.GetSecretValue": {
        "ARN": FLOOR_ARN,
        "Name": "bench",
        "VersionId": FLOOR_VERSION_ID,
        "SecretString": VALUE,
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1742376011.482,
    },
    "secretsmanager.CreateSecret": {"ARN": FLOOR_ARN, "Name": "bench"},
}


# --------------------------------------------------------------------------------------
# The floor server (runs in its own process: `bench_http.py --serve-floor PORT`)
# --------------------------------------------------------------------------------------


class ConstantAnswers:
    """A minimal ASGI app: reads the whole request, answers the fixed body for its target."""

    def __init__(self) -> None:
        self.bodies = {
            target: json.dumps(answer).encode() for target, answer in FLOOR_ANSWERS.items()
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        target = dict(scope["headers"]).get(b"x-amz-target", b"").decode()
        body = self.bodies.get(target, b"{}")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/x-amz-json-1.1"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-amzn-requestid", FLOOR_VERSION_ID.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


FLOOR_STACKS = ("uvicorn", "hypercorn", "granian")


def serve_floor(port: int, stack: str) -> None:
    """The constant-answer app on ``stack``, until SIGINT or SIGTERM."""
    assert stack in FLOOR_STACKS, stack
    if stack == "uvicorn":
        uvicorn.Server(server_config(ConstantAnswers(), "127.0.0.1", port)).run()
    elif stack == "hypercorn":
        import asyncio

        import uvloop
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = config.errorlog = None
        uvloop.install()
        asyncio.run(serve(ConstantAnswers(), config))
    else:
        from granian import Granian
        from granian.constants import Interfaces, Loops

        Granian(
            f"{Path(__file__).stem}:{ConstantAnswers.__name__}",
            factory=True,
            working_dir=Path(__file__).parent,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            loop=Loops.uvloop,
            workers=1,
            runtime_threads=1,
            log_enabled=False,
        ).serve()


def floor_command(port: int, stack: str) -> list[str]:
    return [sys.executable, __file__, "--serve-floor", str(port), stack]


# --------------------------------------------------------------------------------------
# Servers under test
# --------------------------------------------------------------------------------------


@dataclass
class Subject:
    label: str
    command: list[str]
    port: int
    puts_per_second: list[float] = field(default_factory=list)
    gets_per_second: list[float] = field(default_factory=list)
    raw_per_second: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    raw_cpu_ms: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    client: Any = None
    put_count: int = 0
    pid: int = 0
    companions: list[Subject] = field(default_factory=list)  # servers of the same ledger

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def running(subject: Subject, log_directory: Path) -> Iterator[None]:
    log_path = log_directory / f"{subject.port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            subject.command, stdout=log, stderr=subprocess.STDOUT, cwd=log_directory
        )
    try:
        wait_until_listening(process, subject.port, log_path)
        subject.pid = process.pid
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ledger_command(database: str, port: int, credentials: Path, *options: str) -> list[str]:
    return secretledger_command(
        "serve",
        "--db",
        database,
        "--port",
        str(port),
        "--credentials",
        str(credentials),
        "--region",
        REGION,
        *options,
    )


def subjects(
    directory: Path, with_moto: bool, postgres: str | None, with_stacks: bool
) -> list[Subject]:
    credentials = directory / "credentials.toml"
    write_credentials_file(credentials, [PRINCIPAL])
    floor_port, moto_port = free_port(), free_port()
    chosen = [
        Subject("constant answer (floor)", floor_command(floor_port, "uvicorn"), floor_port),
    ]
    if with_stacks:
        for stack in FLOOR_STACKS[1:]:
            port = free_port()
            chosen.append(Subject(f"constant answer on {stack}", floor_command(port, stack), port))
    if with_moto:
        chosen.append(
            Subject(
                "moto server",
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                moto_port,
            )
        )
    for call_records in ("durable", "async"):
        port = free_port()
        database = str(directory / f"ledger-{call_records}.db")
        chosen.append(
            Subject(
                f"secret-ledger (SQLite, {call_records} records)",
                ledger_command(
                    database, port, credentials, "--call-records", call_records, "--sole-writer"
                ),
                port,
            )
        )
    if postgres is not None:
        chosen += postgres_subjects(directory, credentials, postgres)
    return chosen


def postgres_subjects(directory: Path, credentials: Path, url: str) -> list[Subject]:
    """One server (sole writer) on the given, empty database; one server that is not
    promised to be the only writer (what each of several servers is) on a second
    database; two servers on a third, each driven by half of the raw clients.
    Projections are left to a follower (not run here), as with several servers."""
    import psycopg  # only with --postgres

    second, third = (f"bench_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("two", "shared"))
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {second}")
        connection.execute(f"CREATE DATABASE {third}")
    second_url = url.rsplit("/", 1)[0] + "/" + second
    third_url = url.rsplit("/", 1)[0] + "/" + third
    one_port, first_port, second_port = free_port(), free_port(), free_port()
    shared_port = free_port()

    def files(name: str) -> tuple[str, ...]:
        """The keyring and checkpoint signing key every server of one ledger shares."""
        return (
            "--no-projections",
            "--keyring",
            str(directory / f"{name}.keyring"),
            "--signing-key",
            str(directory / f"{name}.signing-key"),
        )

    one = Subject(
        "secret-ledger (PostgreSQL, one server)",
        ledger_command(url, one_port, credentials, *files("one"), "--sole-writer"),
        one_port,
    )
    shared = Subject(  # what each of two servers is: not the ledger's only writer
        "secret-ledger (PostgreSQL, one shared server)",
        ledger_command(third_url, shared_port, credentials, *files("shared")),
        shared_port,
    )
    two = Subject(
        "secret-ledger (PostgreSQL, two servers)",
        ledger_command(second_url, first_port, credentials, *files("two")),
        first_port,
    )
    two.companions.append(
        Subject(
            "second server",
            ledger_command(second_url, second_port, credentials, *files("two")),
            second_port,
        )
    )
    return [one, shared, two]


# --------------------------------------------------------------------------------------
# The client and the measurements
# --------------------------------------------------------------------------------------


def client_for(subject: Subject) -> Any:
    return boto3.client(
        "secretsmanager",
        endpoint_url=subject.url,
        region_name=REGION,
        aws_access_key_id=PRINCIPAL.access_key_id,
        aws_secret_access_key=PRINCIPAL.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )


def put_secret_name(index: int) -> str:
    return f"bench/put-{index // PUTS_PER_SECRET}"


def prepare(subject: Subject, puts_total: int) -> None:
    subject.client = client_for(subject)
    for index in range(0, puts_total + PUTS_PER_SECRET, PUTS_PER_SECRET):
        subject.client.create_secret(Name=put_secret_name(index))
    subject.client.create_secret(Name="bench/get", SecretString=VALUE)
    measure(functools.partial(put, subject), WARM_UP_CALLS)
    measure(functools.partial(get, subject), WARM_UP_CALLS)


def put(subject: Subject) -> None:
    subject.client.put_secret_value(SecretId=put_secret_name(subject.put_count), SecretString=VALUE)
    subject.put_count += 1


def get(subject: Subject) -> None:
    subject.client.get_secret_value(SecretId="bench/get")


def measure(call: Callable[[], None], operations: int) -> float:
    start = time.perf_counter()
    for _ in range(operations):
        call()
    return operations / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------
# Raw SigV4 clients (each in its own process, so the client's CPU is not the server's)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawTask:
    port: int
    operation: str
    seconds: float


class RawClient:
    """One keep-alive connection; every call signed afresh with SigV4."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        credentials = Credentials(PRINCIPAL.access_key_id, PRINCIPAL.secret_access_key)
        self.signer = SigV4Auth(credentials, "secretsmanager", REGION)

    def call(self, operation: str, members: dict[str, Any]) -> None:
        body = json.dumps(members).encode()
        request = AWSRequest(
            "POST",
            self.url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"secretsmanager.{operation}",
            },
        )
        self.signer.add_auth(request)
        self.connection.request("POST", "/", body, dict(request.headers.items()))
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"{operation}: {response.status} {answer[:200]!r}")


def run_raw_task(task: RawTask) -> int:
    """Calls answered in ``task.seconds`` by one client (Puts: a new secret every 90)."""
    client = RawClient(task.port)
    prefix = f"bench/raw-{uuid.uuid4().hex[:12]}"
    count = 0
    deadline = time.perf_counter() + task.seconds
    while time.perf_counter() < deadline:
        if task.operation == "Get":
            client.call("GetSecretValue", {"SecretId": "bench/get"})
        else:
            name = f"{prefix}-{count // PUTS_PER_SECRET}"
            if count % PUTS_PER_SECRET == 0:
                client.call("CreateSecret", {"Name": name, "ClientRequestToken": str(uuid.uuid4())})
            client.call(
                "PutSecretValue",
                {"SecretId": name, "SecretString": VALUE, "ClientRequestToken": str(uuid.uuid4())},
            )
        count += 1
    return count


def measure_raw(
    subject: Subject, pool: Any, operation: str, concurrency: int, seconds: float
) -> None:
    servers = [subject, *subject.companions]
    cpu_before = sum(process_cpu_seconds(server.pid) for server in servers)
    tasks = [
        RawTask(servers[index % len(servers)].port, operation, seconds)
        for index in range(concurrency)
    ]
    start = time.perf_counter()
    counts = pool.map(run_raw_task, tasks, chunksize=1)
    elapsed = time.perf_counter() - start
    cpu_seconds = sum(process_cpu_seconds(server.pid) for server in servers) - cpu_before
    calls = max(sum(counts), 1)
    key = (operation, concurrency)
    subject.raw_per_second.setdefault(key, []).append(calls / elapsed)
    subject.raw_cpu_ms.setdefault(key, []).append(cpu_seconds * 1000 / calls)


def run_raw_rounds(chosen: list[Subject], rounds: int, seconds: float) -> None:
    with multiprocessing.get_context("fork").Pool(max(RAW_CONCURRENCIES)) as pool:
        for round_index in range(rounds):
            shift = round_index % len(chosen)
            for subject in chosen[shift:] + chosen[:shift]:
                for operation in RAW_OPERATIONS:
                    for concurrency in RAW_CONCURRENCIES:
                        measure_raw(subject, pool, operation, concurrency, seconds)


def report_raw(chosen: list[Subject], rounds: int, seconds: float) -> None:
    floor = chosen[0]
    print(
        f"Raw SigV4 clients, {seconds:g} s per cell; median of {rounds} interleaved round(s);"
        " calls/s, ratio to the floor, server CPU ms per call"
    )
    columns = [
        (operation, concurrency)
        for operation in RAW_OPERATIONS
        for concurrency in RAW_CONCURRENCIES
    ]
    print(f"{'server':<{LABEL_WIDTH}}" + "".join(f"{f'{op} x{n}':>22}" for op, n in columns))
    for subject in chosen:
        cells = []
        for key in columns:
            rate = statistics.median(subject.raw_per_second[key])
            ratio = rate / statistics.median(floor.raw_per_second[key])
            cpu_ms = statistics.median(subject.raw_cpu_ms[key])
            cells.append(f"{rate:>8.0f} {ratio:>5.2f} {cpu_ms:>5.2f}ms")
        print(f"{subject.label:<{LABEL_WIDTH}}" + "".join(f"{cell:>22}" for cell in cells))
    print()


def run_rounds(chosen: list[Subject], rounds: int, operations: int) -> None:
    for round_index in range(rounds):
        shift = round_index % len(chosen)
        for subject in chosen[shift:] + chosen[:shift]:
            subject.puts_per_second.append(measure(functools.partial(put, subject), operations))
            subject.gets_per_second.append(measure(functools.partial(get, subject), operations))


def report(chosen: list[Subject], rounds: int, operations: int) -> None:
    floor = chosen[0]
    floor_put = statistics.median(floor.puts_per_second)
    floor_get = statistics.median(floor.gets_per_second)
    print(
        f"HTTP endpoint, one boto3 client, {len(VALUE)}-byte SecretString; "
        f"median of {rounds} interleaved round(s) x {operations} calls per operation"
    )
    print(f"{'server':<{LABEL_WIDTH}}{'Put ops/s':>11}{'ratio':>8}{'Get ops/s':>12}{'ratio':>8}")
    for subject in chosen:
        put_rate = statistics.median(subject.puts_per_second)
        get_rate = statistics.median(subject.gets_per_second)
        print(
            f"{subject.label:<{LABEL_WIDTH}}{put_rate:>11.0f}{put_rate / floor_put:>8.2f}"
            f"{get_rate:>12.0f}{get_rate / floor_get:>8.2f}"
        )
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print()


@dataclass(frozen=True)
class Target:
    subject: str
    name: str
    figure: float
    bound: float
    at_least: bool

    def line(self) -> str:
        met = self.figure >= self.bound if self.at_least else self.figure <= self.bound
        relation = ">=" if self.at_least else "<="
        return (
            f"{self.subject:<{LABEL_WIDTH}}{self.name:<34}{self.figure:>7.2f} "
            f"{relation} {self.bound:<5g} {'met' if met else 'missed'}"
        )


def median_of(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def targets(chosen: list[Subject], with_raw: bool) -> list[Target]:
    """Issue 11's targets, from the medians of the tables above."""
    floor = chosen[0]
    moto = next((subject for subject in chosen if subject.label == "moto server"), None)
    shared = next((s for s in chosen if s.label.endswith("(PostgreSQL, one shared server)")), None)
    found: list[Target] = []
    for ledger in [subject for subject in chosen if subject.label.startswith("secret-ledger")]:
        label = ledger.label

        def rate(subject: Subject, operation: str) -> float:
            return median_of(subject.raw_per_second.get((operation, 4), []))

        def cpu(subject: Subject, operation: str, concurrency: int) -> float:
            return median_of(subject.raw_cpu_ms.get((operation, concurrency), []))

        if with_raw:
            if moto is not None:
                for operation in RAW_OPERATIONS:
                    multiple = rate(ledger, operation) / rate(moto, operation)
                    found.append(
                        Target(label, f"{operation} x4 / moto", multiple, MOTO_MULTIPLE_MIN, True)
                    )
            get_ratio = rate(ledger, "Get") / rate(floor, "Get")
            found.append(Target(label, "Get x4 / floor", get_ratio, FLOOR_RATIO_GET_MIN, True))
            for concurrency in RAW_CONCURRENCIES:
                found.append(
                    Target(
                        label,
                        f"CPU ms per Get x{concurrency}",
                        cpu(ledger, "Get", concurrency),
                        CPU_MS_PER_GET_MAX,
                        False,
                    )
                )
            if ledger.companions and shared is not None:
                for operation in RAW_OPERATIONS:
                    found.append(
                        Target(
                            label,
                            f"CPU per {operation} x4 / one server",
                            cpu(ledger, operation, 4) / cpu(shared, operation, 4),
                            TWO_SERVERS_CPU_RATIO_MAX,
                            False,
                        )
                    )
                    found.append(
                        Target(
                            label,
                            f"{operation} x4 / one server",
                            rate(ledger, operation) / rate(shared, operation),
                            1.0,
                            True,
                        )
                    )
        if "async records" not in label:
            for operation, measured, bound in (
                ("Put", "puts_per_second", BOTO3_PUT_RATIO_MIN),
                ("Get", "gets_per_second", BOTO3_GET_RATIO_MIN),
            ):
                ratio = median_of(getattr(ledger, measured)) / median_of(getattr(floor, measured))
                found.append(Target(label, f"boto3 {operation} / floor", ratio, bound, True))
    return found


def report_targets(chosen: list[Subject], with_raw: bool) -> None:
    print("Targets (issue 11)")
    for target in targets(chosen, with_raw):
        print(target.line())


def main(arguments: list[str]) -> int:
    if arguments[:1] == ["--serve-floor"]:
        serve_floor(int(arguments[1]), arguments[2])
        return 0
    parser = argparse.ArgumentParser(prog="bench.py http", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--operations", type=int, default=300, help="calls per operation per round (default 300)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 1 round of 20 calls, without moto"
    )
    parser.add_argument("--without-moto", action="store_true", help="skip the moto server")
    parser.add_argument(
        "--raw-seconds",
        type=float,
        default=RAW_SECONDS_DEFAULT,
        help=f"seconds per raw-client cell (default {RAW_SECONDS_DEFAULT:g}); "
        "0 skips the raw clients",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_URL_VARIABLE),
        help="an empty PostgreSQL database to measure too: one server, and two servers on a "
        f"second database made beside it (default: ${POSTGRES_URL_VARIABLE}, if set)",
    )
    parser.add_argument(
        "--stacks",
        action="store_true",
        help="also the constant-answer app on hypercorn and granian (pip install -e '.[bench]')",
    )
    options = parser.parse_args(arguments)
    rounds, operations = (1, 20) if options.quick else (options.rounds, options.operations)
    raw_seconds = 0.3 if options.quick else options.raw_seconds
    if rounds < 1 or operations < 1:
        parser.error("--rounds and --operations must be positive")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as directory, ExitStack() as stack:
        chosen = subjects(
            Path(directory),
            with_moto=not (options.quick or options.without_moto),
            postgres=options.postgres,
            with_stacks=options.stacks,
        )
        for subject in chosen:
            for server in [subject, *subject.companions]:
                stack.enter_context(running(server, Path(directory)))
        for subject in chosen:
            prepare(subject, rounds * operations + WARM_UP_CALLS)
        if raw_seconds > 0:
            run_raw_rounds(chosen, rounds, raw_seconds)
            report_raw(chosen, rounds, raw_seconds)
        run_rounds(chosen, rounds, operations)
        report(chosen, rounds, operations)
        report_targets(chosen, with_raw=raw_seconds > 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
