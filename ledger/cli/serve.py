"""`secretledger serve`: the AWS-compatible endpoint, under uvicorn.

Point any AWS SDK or the AWS CLI at it with ``--endpoint-url``; every request
must be signed (SigV4) by a principal of the credentials file. Choices:

* Without ``--credentials`` the file ``secretledger-credentials.toml`` next to the
  SQLite database (in the current directory for ``memory:`` and PostgreSQL) is
  used; if it does not exist it is created, mode 0600, with one fresh principal.
  Its secret access key is printed once, and only when stdout is a terminal
  (rule SD5): redirected to a log (systemd, nohup, ``>``), stdout gets the file's
  path and the access key id, never the secret. The server never starts without
  a principal.
* Loopback (127.0.0.1) by default; any other address gets a warning, as answers
  travel unencrypted over HTTP. Proxy headers (``X-Forwarded-For``) are ignored,
  so the source IP in audit records is the peer's address and cannot be set by a
  client.
* ``--region`` and ``--account-id`` name the ledger's ARNs and audit records,
  whatever region a client's signature is scoped to.
* HTTP: uvicorn's httptools parser on the uvloop event loop (chosen by
  measurement, docs/decisions.md), with a deadline and a size cap for request
  heads.
* Limits: a request head (request line and headers) of at most 64 KiB, complete
  within 10 s of the connection opening or of the previous response, however
  slowly it trickles in (`ledger.serving`); uvicorn's warnings about what clients
  send (invalid requests, upgrades) at most ten of each kind a minute;
  request bodies of at most 1 MiB kept in memory, arriving within 30 s; idle
  keep-alive connections closed after 5 s. Caps count calls in progress, not
  sockets: 8 worker threads for ledger calls, at most 64 calls in progress, at
  most half of them from one source address or claiming one access key
  (`ledger.admission`); beyond that, 503 at once. Open sockets are bounded only
  by 4,096 (`ledger.serving.CONNECTIONS_MAX`, far above what the deadlines let
  idle or slow clients hold; beyond it, an AWS-shaped 503 too) and a listen
  backlog of 1,024.
* SIGTERM or Ctrl-C stops accepting connections and finishes the calls in flight
  (for at most 30 s) before the ledger is closed.
* ``--sole-writer``: the operator promises that no other process writes the
  ledger; commands then trust the cached aggregates (`Secrets.assume_sole_writer`).
* Rotation (docs/rotation.md): ``--rotation-function NAME=package.module:function``
  or ``NAME=exec:COMMAND`` (repeatable) makes the server run the rotations of
  ``arn:aws:lambda:<region>:<account>:function:NAME`` itself, one step at a time in
  a separate process (`ledger.rotation`), and start scheduled rotations when their
  window opens. Without any, RotateSecret stages each rotation for an external
  driver (a test harness playing Lambda), and the server still stages scheduled
  ones. ``--clock-file`` (hidden, for tests) makes the ledger read its time from
  a file, so schedules can be tested without waiting for days.
* Identity policies (``policy`` in a principal's table) and the secrets' resource
  policies are enforced by `SecretsManagerApi` (AZ-1 to AZ-14 in
  docs/authorization.md); a principal without a policy is an administrator.
* Refusals of unauthenticated requests are recorded within DR-1 to DR-4: ten full
  records a minute per source address and reason, the rest counted.
* Calls that change no secret are recorded through a group-committing
  `CallRecorder`: ``--call-records durable`` (the default) answers them once their
  record is committed, ``async`` once it is queued, with the loss bound of
  `ledger.call_records`.
"""

from __future__ import annotations

import getpass
import ipaddress
from datetime import datetime
from pathlib import Path

import click
import uvicorn

from ledger.api import SecretsManagerApi
from ledger.application import utc_now
from ledger.auth import (
    CREDENTIALS_FILE_NAME,
    CredentialsFileError,
    Principal,
    Principals,
    SignatureVerifier,
    new_principal,
    write_credentials_file,
)
from ledger.call_records import BACKLOG_MAX_DEFAULT, CallRecorder
from ledger.cli.common import (
    LedgerSettings,
    account_id_option,
    checkpoints_option,
    database_option,
    default_checkpoints_path,
    keyring_option,
    main,
    open_secrets,
    region_option,
    signing_key_option,
)
from ledger.cli.evidence import CheckpointScheduler, checkpoint_keys
from ledger.evidence import CheckpointStore
from ledger.http import WRITER_THREADS_DEFAULT, Application, Endpoint
from ledger.rotation import (
    ATTEMPTS_MAX_DEFAULT,
    RETRY_DELAY_SECONDS_DEFAULT,
    ROTATIONS_MAX_DEFAULT,
    SCAN_INTERVAL_SECONDS_DEFAULT,
    STEP_TIMEOUT_SECONDS_DEFAULT,
    RotationFunctionError,
    RotationRunner,
    RunnerSettings,
    parse_rotation_function,
)
from ledger.serving import CLIENT_WARNING_BOUND, HeadDeadlineProtocol, logging_config
from ledger.storage import DatabaseKind, database_kind
from projections import start_in_background

PORT_DEFAULT = 8080
LISTEN_BACKLOG = 1024
KEEP_ALIVE_SECONDS = 5
GRACEFUL_SHUTDOWN_SECONDS = 30
CHECKPOINT_EVERY_EVENTS_DEFAULT = 1_000
# Changes on PostgreSQL wait mostly for the database; with four writer threads,
# changes to different secrets overlap those waits (ledger.http).
POSTGRES_WRITER_THREADS = 4
CHECKPOINT_EVERY_SECONDS_DEFAULT = 60.0


@main.command("serve")
@database_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=PORT_DEFAULT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--credentials",
    "credentials_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file of principals (access_key_id, secret_access_key, arn; for temporary "
    "credentials also session_token, expiration; optionally policy, an IAM identity policy "
    "in JSON). A principal without a policy is an administrator. Default: "
    f"{CREDENTIALS_FILE_NAME} next to the database, created with one fresh principal (an "
    "administrator) if missing (its secret access key is shown only on a terminal).",
)
@region_option()
@account_id_option()
@keyring_option()
@click.option(
    "--call-records",
    type=click.Choice(["durable", "async"]),
    default="durable",
    show_default=True,
    help="When a call that changes no secret (a read, a failure, a refusal) is answered: "
    "durable, once its audit record is committed; async, once the record is queued "
    f"(committed within milliseconds; a crash loses at most {BACKLOG_MAX_DEFAULT}).",
)
@click.option(
    "--projections/--no-projections",
    "follow_projections",
    default=True,
    show_default=True,
    help="Keep the label-history and audit projections up to date in this process.",
)
@click.option(
    "--sole-writer",
    is_flag=True,
    help="Promise that no other process writes this ledger while the server runs: "
    "commands then skip the query for events newer than the cached secret (faster "
    "puts and reads). Another writer is still caught at insert and the command "
    "retried, but reads may miss its changes until then.",
)
@signing_key_option()
@checkpoints_option()
@click.option(
    "--checkpoint-every-events",
    default=CHECKPOINT_EVERY_EVENTS_DEFAULT,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sign a checkpoint once this many events were appended since the last one.",
)
@click.option(
    "--checkpoint-every-seconds",
    default=CHECKPOINT_EVERY_SECONDS_DEFAULT,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Sign a checkpoint this often when anything was appended (and one at shutdown).",
)
@click.option(
    "--rotation-function",
    "rotation_functions",
    multiple=True,
    metavar="NAME=TARGET",
    help="A local rotation function, named by arn:aws:lambda:REGION:ACCOUNT:function:NAME: "
    "NAME=package.module:function (a Python handler(event, context)) or NAME=exec:COMMAND "
    "(any program; the event as JSON on stdin, exit status 0 for success). Repeatable.",
)
@click.option(
    "--rotation-step-timeout",
    "step_timeout_seconds",
    type=click.FloatRange(min=0.1, max=900),
    default=STEP_TIMEOUT_SECONDS_DEFAULT,
    show_default=True,
    help="Seconds each rotation step may run.",
)
@click.option(
    "--rotations-max",
    type=click.IntRange(1, 64),
    default=ROTATIONS_MAX_DEFAULT,
    show_default=True,
    help="Rotations running at once.",
)
@click.option(
    "--rotation-attempts",
    "attempts_max",
    type=click.IntRange(1, 100),
    default=ATTEMPTS_MAX_DEFAULT,
    show_default=True,
    help="Attempts of one rotation (same token) before it is left for an operator.",
)
@click.option(
    "--rotation-retry-delay",
    "retry_delay_seconds",
    type=click.FloatRange(min=0),
    default=RETRY_DELAY_SECONDS_DEFAULT,
    show_default=True,
    help="Seconds between a failed attempt and the next.",
)
@click.option(
    "--rotation-scan-interval",
    "scan_interval_seconds",
    type=click.FloatRange(min=0.05),
    default=SCAN_INTERVAL_SECONDS_DEFAULT,
    show_default=True,
    help="Seconds between looks for rotations due (and retries).",
)
@click.option(
    "--clock-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    hidden=True,
    help="For tests: the ledger's time is read from this file (RFC 3339) at each use.",
)
def serve(
    database: str,
    host: str,
    port: int,
    credentials_path: Path | None,
    region: str,
    account_id: str,
    keyring_path: Path | None,
    call_records: str,
    follow_projections: bool,
    sole_writer: bool,
    signing_key_path: Path | None,
    checkpoints_path: Path | None,
    checkpoint_every_events: int,
    checkpoint_every_seconds: float,
    rotation_functions: tuple[str, ...],
    step_timeout_seconds: float,
    rotations_max: int,
    attempts_max: int,
    retry_delay_seconds: float,
    scan_interval_seconds: float,
    clock_file: Path | None,
) -> None:
    """Serve the AWS Secrets Manager API (JSON 1.1, SigV4) over the ledger.

    By default the projections (label map, label history, audit) follow the log in
    a background thread of the server, so `labels`, `history` and `audit` answer
    from up-to-date rows; `--no-projections` leaves that to `secretledger follow`.
    Another thread signs a checkpoint every --checkpoint-every-events events or
    --checkpoint-every-seconds seconds, and one at shutdown (see `checkpoint`).

    Who may do what: a principal's `policy` (IAM JSON) in the credentials file and
    the secrets' resource policies, evaluated as AWS does within one account
    (explicit Deny wins, else an Allow from either grants, else
    AccessDeniedException). A principal WITHOUT a policy is an ADMINISTRATOR: it
    may do everything no resource policy denies it.

    \b
    Example:
      secretledger serve --db ./secretledger.db --port 8080 \\
          --rotation-function rotate-db=myrotation.handler:lambda_handler
      aws --endpoint-url http://127.0.0.1:8080 secretsmanager list-secrets
    """
    if not (account_id.isdigit() and len(account_id) == 12):
        raise click.BadParameter("must be 12 digits", param_hint="--account-id")
    if not is_loopback(host):
        click.echo(
            f"secret-ledger: warning: listening on {host}: requests are signed, but answers "
            "(secret values included) travel unencrypted over HTTP; put a TLS-terminating "
            "proxy in front, on the same host.",
            err=True,
        )
    try:
        functions = [parse_rotation_function(text) for text in rotation_functions]
    except RotationFunctionError as error:
        raise click.BadParameter(str(error), param_hint="--rotation-function") from None
    if len({function.name for function in functions}) != len(functions):
        raise click.BadParameter("a NAME appears twice", param_hint="--rotation-function")
    url = f"http://{host}:{port}"
    principals = load_or_create_principals(credentials_path, database, account_id, region, url)
    clock = FileClock(clock_file) if clock_file is not None else utc_now
    secrets = open_secrets(LedgerSettings(database, keyring_path, region, account_id), clock)
    if sole_writer:
        secrets.assume_sole_writer()
    try:
        checkpoints = checkpoint_scheduler(
            secrets.recorder,  # type: ignore[arg-type]
            database,
            signing_key_path,
            checkpoints_path,
            every_events=checkpoint_every_events,
            every_seconds=checkpoint_every_seconds,
        )
    except BaseException:
        secrets.close()
        raise
    projections = (
        start_in_background(
            database,
            application=secrets if database_kind(database) is DatabaseKind.MEMORY else None,
        )
        if follow_projections
        else None
    )
    runner = RotationRunner(
        secrets,
        principals,
        functions,
        RunnerSettings(
            endpoint_url=f"http://{callback_host(host)}:{port}",
            step_timeout_seconds=step_timeout_seconds,
            rotations_max=rotations_max,
            attempts_max=attempts_max,
            retry_delay_seconds=retry_delay_seconds,
            scan_interval_seconds=scan_interval_seconds,
        ),
    )

    checkpoints.start()

    def close_ledger() -> None:
        CLIENT_WARNING_BOUND.flush()  # the count of client warnings not logged yet
        runner.stop()
        checkpoints.stop()
        if projections is not None:
            projections.stop()
        secrets.close()

    recorder = CallRecorder(secrets.save_call_records, asynchronous=call_records == "async")
    is_postgres = database_kind(database) is DatabaseKind.POSTGRES
    endpoint = Endpoint(
        SecretsManagerApi(
            secrets,
            save_record=recorder.record,
            runner_of=runner.runner_of,
            on_rotation_staged=runner.wake,
        ),
        SignatureVerifier(principals),
        recorder=recorder,
        reads_on_event_loop=sole_writer or not is_postgres,
        reads_off_the_loop=frozenset({"ListSecrets"}) if is_postgres else frozenset(),
        writer_threads=POSTGRES_WRITER_THREADS if is_postgres else WRITER_THREADS_DEFAULT,
        on_close=close_ledger,
    )
    server = uvicorn.Server(server_config(endpoint, host, port))
    runner.start(server_stopping=lambda: server.should_exit)
    try:
        server.run()
    finally:
        endpoint.close()  # after a failed start; a clean shutdown has closed it already


def checkpoint_scheduler(
    store: CheckpointStore,
    database: str,
    signing_key_path: Path | None,
    checkpoints_path: Path | None,
    *,
    every_events: int,
    every_seconds: float,
) -> CheckpointScheduler:
    """The background checkpoint writer (W5); refuses a log older than the chain (W8)."""
    if store.event_hash_count() == 0 and store.select_notifications(None, 1):
        raise click.ClickException(
            "this ledger's events predate the hash chain: run `secretledger checkpoint "
            "--adopt-unchained` once before serving it (afterwards it cannot adopt them)"
        )
    keys = checkpoint_keys(
        database, signing_key_path, has_checkpoints=store.select_latest_checkpoint() is not None
    )
    path = default_checkpoints_path(database, checkpoints_path)
    return CheckpointScheduler(
        store, keys, path, every_events=every_events, every_seconds=every_seconds
    )


class FileClock:
    """The ledger's time read from a file (RFC 3339) at each use: for tests of
    schedules (``--clock-file``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> datetime:
        text = self.path.read_text(encoding="utf-8").strip()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert moment.tzinfo is not None, "the clock file holds a UTC instant"
        return moment


def callback_host(host: str) -> str:
    """Where rotation functions reach this server: loopback for a wildcard address."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def server_config(application: Application, host: str, port: int) -> uvicorn.Config:
    """uvicorn's settings for the endpoint (also used by the benchmark's floor server)."""
    return uvicorn.Config(
        application,
        host=host,
        port=port,
        http=HeadDeadlineProtocol,
        ws="none",
        loop="uvloop",
        lifespan="on",
        log_config=logging_config(),
        proxy_headers=False,
        server_header=False,
        access_log=False,
        limit_concurrency=None,  # HeadDeadlineProtocol applies the cap, AWS-shaped
        backlog=LISTEN_BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def default_credentials_path(database: str) -> Path:
    if database_kind(database) is not DatabaseKind.SQLITE:
        return Path(CREDENTIALS_FILE_NAME)
    return Path(database).parent / CREDENTIALS_FILE_NAME


def load_or_create_principals(
    credentials_path: Path | None, database: str, account_id: str, region: str, url: str
) -> Principals:
    """The principals of --credentials; without it, of the default file (created with
    one fresh principal, printed once, if it does not exist yet)."""
    path = credentials_path or default_credentials_path(database)
    if credentials_path is None and not path.exists():
        principal = new_principal(f"arn:aws:iam::{account_id}:user/{getpass.getuser()}")
        try:
            write_credentials_file(path, [principal])
        except OSError as error:
            raise click.ClickException(
                f"cannot create the credentials file {path}: {error.strerror}"
            ) from None
        print_usage(path, principal, region, url)
    try:
        principals = Principals.load(path)
    except CredentialsFileError as error:
        raise click.ClickException(f"credentials file: {error}") from None
    click.echo(f"secret-ledger: {len(principals.configured)} principal(s) from {path}")
    return principals


def print_usage(path: Path, principal: Principal, region: str, url: str) -> None:
    """Shown once, when the file is created; the secret access key only to a terminal
    (SD5), since anything else may be a log file others can read."""
    if not click.get_text_stream("stdout").isatty():
        click.echo(
            f"secret-ledger: created {path} (mode 0600) with one principal, {principal.arn}, "
            f"access key id {principal.access_key_id}; its secret access key is in that "
            "file (not shown: stdout is not a terminal)."
        )
        return
    click.echo(
        f"secret-ledger: created {path} (mode 0600) with one principal, {principal.arn}.\n"
        "Use it from a shell (the secret access key is shown only this once):\n"
        f"  export AWS_ACCESS_KEY_ID={principal.access_key_id}\n"
        f"  export AWS_SECRET_ACCESS_KEY={principal.secret_access_key}\n"
        f"  export AWS_DEFAULT_REGION={region}\n"
        f"  aws --endpoint-url {url} secretsmanager list-secrets"
    )
