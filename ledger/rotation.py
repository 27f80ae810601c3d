"""The rotation runner: local rotation functions, run step by step as Lambda would.

`serve --rotation-function NAME=package.module:function` (a Python handler, run by
`ledger.rotation_host`) or ``NAME=exec:COMMAND`` (any program; the event as JSON on
stdin) makes ``arn:aws:lambda:<region>:<account>:function:NAME`` a function the
server runs itself (rules RF-1 to RF-9 of docs/rotation.md):

* each of createSecret, setSecret, testSecret and finishSecret runs in its own
  process, one after the other, each within ``step_timeout_seconds``; the process
  gets ``AWS_ENDPOINT_URL`` (this server), the region, and the temporary
  credentials of a rotation principal minted for the attempt and revoked after it,
  so boto3 (or any SDK) inside works unchanged and its calls are recorded as that
  principal's;
* exit status 0 is success; anything else, a timeout or too much output is a failed
  step: the attempt is recorded as failed (``RotationFailed``) and AWSPENDING stays;
  the runner tries again with the same token after ``retry_delay_seconds``, at most
  ``attempts_max`` attempts in all (RF-5);
* after finishSecret, success needs the token to hold AWSCURRENT (RO-6);
* what the function prints is counted, never kept or logged (it may print secret
  values): at most ``output_bytes_max`` bytes, then the step fails (RF-7);
* at most ``rotations_max`` rotations run at once; a scan of the ledger every
  ``scan_interval_seconds`` (and at once after a RotateSecret) starts rotations whose
  window has opened and retries failed ones (RO-8, RF-6).

Rotations of functions the runner does not know wait for an external driver (RO-5).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Final
from uuid import UUID

from ledger.application import Secrets, function_not_invocable
from ledger.arn import LAMBDA_FUNCTION_NAME_PATTERN, lambda_function_arn, lambda_function_name
from ledger.auth import (
    TEMPORARY_LIFETIME_SECONDS_MAX,
    Principal,
    Principals,
    TemporaryPrincipalsFull,
    new_temporary_principal,
)
from ledger.domain import ROTATION_STEPS, RUNNER_EXTERNAL, RUNNER_SERVICE, Secret

logger = logging.getLogger(__name__)

EXEC_PREFIX: Final = "exec:"
ROTATION_ROLE_NAME: Final = "secretledger-rotation"
STEP_TIMEOUT_SECONDS_DEFAULT: Final = 30.0
ROTATIONS_MAX_DEFAULT: Final = 4
ATTEMPTS_MAX_DEFAULT: Final = 3
RETRY_DELAY_SECONDS_DEFAULT: Final = 60.0
SCAN_INTERVAL_SECONDS_DEFAULT: Final = 60.0
STOP_SECONDS_MAX: Final = 10.0
STOP_CHECK_SECONDS: Final = 0.1  # how often a step's wait looks whether the server stops
OUTPUT_BYTES_MAX_DEFAULT: Final = 1024 * 1024
LEASE_MARGIN_SECONDS: Final = 30.0
READ_CHUNK_BYTES: Final = 64 * 1024
KILL_WAIT_SECONDS: Final = 5.0
PYTHON_TARGET_PARTS: Final = 2


class RotationFunctionError(ValueError):
    """A ``--rotation-function`` value that does not parse."""


@dataclass(frozen=True)
class RotationFunction:
    """A local rotation function: a Python handler or a command (RF-1)."""

    name: str
    python_target: str | None
    command: tuple[str, ...]

    def argv(self, function_arn: str, timeout_seconds: float) -> list[str]:
        if self.python_target is None:
            return list(self.command)
        return [
            sys.executable,
            "-m",
            "ledger.rotation_host",
            "--function-arn",
            function_arn,
            "--timeout-seconds",
            str(timeout_seconds),
            self.python_target,
        ]


def parse_rotation_function(text: str) -> RotationFunction:
    """``NAME=package.module:function`` or ``NAME=exec:COMMAND`` (RF-1)."""
    name, separator, target = text.partition("=")
    if not separator or not LAMBDA_FUNCTION_NAME_PATTERN.fullmatch(name):
        raise RotationFunctionError(
            "expected NAME=package.module:function or NAME=exec:COMMAND, NAME being 1-64 "
            "letters, digits, - or _"
        )
    if target.startswith(EXEC_PREFIX):
        try:
            command = tuple(shlex.split(target[len(EXEC_PREFIX) :]))
        except ValueError as error:
            raise RotationFunctionError(f"{name}: the command does not parse: {error}") from None
        if not command:
            raise RotationFunctionError(f"{name}: exec: needs a command")
        return RotationFunction(name, None, command)
    parts = target.split(":")
    if len(parts) != PYTHON_TARGET_PARTS or not all(
        part and all(piece.isidentifier() for piece in part.split(".")) for part in parts
    ):
        raise RotationFunctionError(f"{name}: expected package.module:function, got {target!r}")
    return RotationFunction(name, target, ())


@dataclass(frozen=True)
class RunnerSettings:
    """Where the functions call back to, and the runner's bounds (RF-5 to RF-7)."""

    endpoint_url: str
    step_timeout_seconds: float = STEP_TIMEOUT_SECONDS_DEFAULT
    rotations_max: int = ROTATIONS_MAX_DEFAULT
    attempts_max: int = ATTEMPTS_MAX_DEFAULT
    retry_delay_seconds: float = RETRY_DELAY_SECONDS_DEFAULT
    scan_interval_seconds: float = SCAN_INTERVAL_SECONDS_DEFAULT
    output_bytes_max: int = OUTPUT_BYTES_MAX_DEFAULT

    def __post_init__(self) -> None:
        assert self.step_timeout_seconds > 0, "steps get some time"
        assert self.rotations_max > 0 and self.attempts_max > 0, "at least one"
        assert self.retry_delay_seconds >= 0 and self.scan_interval_seconds > 0
        assert self.output_bytes_max > 0, "a function may print something"

    @property
    def lease_seconds(self) -> float:
        """How long an attempt another runner started (and did not end) is left alone."""
        return len(ROTATION_STEPS) * self.step_timeout_seconds + LEASE_MARGIN_SECONDS

    @property
    def credential_lifetime_seconds(self) -> int:
        lifetime = int(self.lease_seconds) + 1
        return min(lifetime, TEMPORARY_LIFETIME_SECONDS_MAX)


@dataclass(frozen=True)
class StepOutcome:
    """How a step ended: ``failure`` is None on success, else why (never the output);
    ``interrupted``: killed because the runner stopped, which is not the function's
    failure (RF-9)."""

    failure: str | None
    output_bytes: int
    interrupted: bool = False


class RotationRunner:
    """Runs the rotations of the secrets whose function it knows (module docstring)."""

    def __init__(
        self,
        secrets: Secrets,
        principals: Principals,
        functions: Sequence[RotationFunction],
        settings: RunnerSettings,
        *,
        credentials_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``credentials_clock``: real time, which the signature verifier also uses
        (the ledger's clock, ``secrets.now``, decides schedules and may be a test's)."""
        names = [function.name for function in functions]
        assert len(set(names)) == len(names), "one function per name"
        self.secrets = secrets
        self.principals = principals
        self.functions: Mapping[str, RotationFunction] = {f.name: f for f in functions}
        self.settings = settings
        self.credentials_clock = credentials_clock
        self.running: set[UUID] = set()
        self.rotations: set[threading.Thread] = set()  # one daemon thread per rotation
        self.lock = threading.Lock()
        self.wake_up = threading.Event()
        self.stopping = threading.Event()
        self.server_stopping: Callable[[], bool] = lambda: False
        self.thread = threading.Thread(target=self._loop, name="ledger-rotation-scan", daemon=True)

    # Who runs which function (RO-5)

    def runner_of(self, lambda_arn: str) -> str:
        """RotateSecret's check R5: a function this runner knows runs here; without any
        configured function every rotation waits for an external driver; a function
        this runner does not know cannot be invoked."""
        runner = self.runner_kind(lambda_arn)
        if runner is None:
            raise function_not_invocable(lambda_arn)
        return runner

    def runner_kind(self, lambda_arn: str) -> str | None:
        """RO-5: RUNNER_SERVICE, RUNNER_EXTERNAL, or None for an unknown function."""
        if not self.functions:
            return RUNNER_EXTERNAL
        return None if self.function_of(lambda_arn) is None else RUNNER_SERVICE

    def function_of(self, lambda_arn: str) -> RotationFunction | None:
        name = lambda_function_name(lambda_arn, self.secrets.region, self.secrets.account_id)
        return None if name is None else self.functions.get(name)

    # The scan loop

    def start(self, server_stopping: Callable[[], bool] = lambda: False) -> None:
        """Start scanning. ``server_stopping`` tells whether the server has begun to
        shut down (uvicorn's ``should_exit``, set by SIGTERM before it stops
        listening): from then on, rotations end as if `stop` had been called (RF-9)."""
        self.server_stopping = server_stopping
        self.thread.start()

    def is_stopping(self) -> bool:
        return self.stopping.is_set() or self.server_stopping()

    def wake(self) -> None:
        self.wake_up.set()

    def stop(self) -> None:
        """Stop scanning and end the rotations in flight (RF-9): no further step
        starts, and a step running is killed within ``STOP_CHECK_SECONDS`` (the server
        it calls back is going away) without being recorded as failed, so the attempt
        is retried once its lease ends. The scan and the rotations are waited for at
        most ``STOP_SECONDS_MAX`` in all: a thread caught waiting for a database that
        stopped answering (each call retries for minutes) is left behind (a daemon)
        rather than hold the shutdown."""
        deadline = time.monotonic() + STOP_SECONDS_MAX
        self.stopping.set()
        self.wake_up.set()
        if self.thread.is_alive():
            self.thread.join(max(0.0, deadline - time.monotonic()))
        with self.lock:  # after the scan: it starts no rotation once stopping is set
            rotations = list(self.rotations)
        for rotation in rotations:
            rotation.join(max(0.0, deadline - time.monotonic()))
        left = [thread.name for thread in (self.thread, *rotations) if thread.is_alive()]
        if left:
            logger.warning(
                "%s still running after %g s (waiting for the database?); not waited for",
                ", ".join(left),
                STOP_SECONDS_MAX,
            )

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.scan()
            except Exception as failure:  # keep scanning; log the type, not the message
                logger.error("rotation scan failed: %s", type(failure).__name__)
            self.wake_up.wait(self.settings.scan_interval_seconds)
            self.wake_up.clear()

    def scan(self) -> int:
        """Start every rotation that is due (RO-8) or to be retried (RF-5), up to the
        free slots; the number started."""
        started = 0
        now = self.secrets.now()
        for secret in self.secrets.iterate_secrets():
            if self.is_stopping():
                break
            work = self.work_for(secret, now)
            if work is not None and self._claim(secret.id):
                self._start_rotation(secret.id, work)
                started += 1
        return started

    def work_for(self, secret: Secret, now: datetime) -> str | None:
        """ "start" (stage a scheduled rotation, then run it), "attempt" (run the
        rotation in progress), or None."""
        rotation = secret.rotation
        if rotation is None or not rotation["enabled"] or secret.deletion_date is not None:
            return None
        runner = self.runner_kind(rotation["lambda_arn"])
        if runner is None:
            return None
        if secret.is_rotation_due(now):
            return "start"
        if runner != RUNNER_SERVICE or rotation["runner"] != RUNNER_SERVICE:
            return None
        if secret.rotation_in_progress() is None:
            return None
        if rotation["attempts"] >= self.settings.attempts_max:
            return None  # stuck: an operator, a manual put or CancelRotateSecret ends it
        started, failed = rotation["attempt_started_date"], rotation["attempt_failed_date"]
        if started is None:
            return "attempt"
        if failed is not None and failed >= started:
            retry_at = failed + timedelta(seconds=self.settings.retry_delay_seconds)
            return "attempt" if now >= retry_at else None
        lease_end = started + timedelta(seconds=self.settings.lease_seconds)
        return "attempt" if now >= lease_end else None

    def _claim(self, secret_id: UUID) -> bool:
        with self.lock:
            if self.is_stopping():
                return False
            if secret_id in self.running or len(self.running) >= self.settings.rotations_max:
                return False
            self.running.add(secret_id)
            return True

    def _start_rotation(self, secret_id: UUID, work: str) -> None:
        thread = threading.Thread(
            target=self._rotate, args=(secret_id, work), name="ledger-rotation", daemon=True
        )
        with self.lock:
            self.rotations.add(thread)
        thread.start()

    def _rotate(self, secret_id: UUID, work: str) -> None:
        try:
            if work == "start":
                secret = self.secrets.live_secret(secret_id)
                if secret is None or secret.rotation is None:
                    return  # deleted since the scan
                runner = self.runner_kind(secret.rotation["lambda_arn"])
                assert runner is not None, "work only for functions that can run"
                self.secrets.start_due_rotation(secret_id, str(uuid.uuid4()), runner)
                if runner == RUNNER_EXTERNAL:
                    return  # staged for the external driver (RO-5)
            self.run_attempt(secret_id)
        except Exception as failure:
            logger.error("rotation of %s failed: %s", secret_id, type(failure).__name__)
        finally:
            with self.lock:
                self.running.discard(secret_id)
                self.rotations.discard(threading.current_thread())

    # One attempt (RF-3 to RF-5)

    def run_attempt(self, secret_id: UUID) -> bool | None:
        """Run the four steps of the rotation in progress; whether it succeeded (None
        when there was nothing to run, or it stopped because it was cancelled)."""
        secret = self.secrets.live_secret(secret_id)
        if secret is None or secret.rotation is None:
            return None
        function = self.function_of(secret.rotation["lambda_arn"])
        version_id = secret.rotation_in_progress()
        if function is None or version_id is None:
            return None
        context = self.secrets.rotation_context(secret.arn, "RotateSecret")
        attempt = self.secrets.begin_rotation_attempt(secret_id, context)
        if attempt is None:
            return None
        function_arn = lambda_function_arn(
            self.secrets.region, self.secrets.account_id, function.name
        )
        principal = new_temporary_principal(
            f"arn:aws:sts::{self.secrets.account_id}:assumed-role/{ROTATION_ROLE_NAME}/"
            f"{function.name}",
            self.settings.credential_lifetime_seconds,
            self.credentials_clock,
        )
        try:
            self.principals.add_temporary(principal, self.credentials_clock())
        except TemporaryPrincipalsFull:
            message = (
                f"Error when executing lambda {function_arn} during {ROTATION_STEPS[0]} step "
                "(no temporary credentials available)"
            )
            self.secrets.fail_rotation_attempt(
                secret_id, version_id, attempt, ROTATION_STEPS[0], message, context
            )
            return False
        try:
            for step in ROTATION_STEPS:
                if self.is_stopping():
                    return None  # RF-9: retried once the attempt's lease ends
                current = self.secrets.live_secret(secret_id)
                if current is None or not self.secrets.rotation_wanted(current):
                    return None  # cancelled, abandoned or deleted meanwhile
                outcome = self.run_step(
                    function, function_arn, step, secret.arn, version_id, principal
                )
                if outcome.interrupted or (outcome.failure is not None and self.is_stopping()):
                    # RF-9: killed, or failed once the server it calls back was going away
                    logger.warning(
                        "rotation of %s, attempt %d, %s: stopped with the server, "
                        "retried once its lease ends",
                        secret.arn,
                        attempt,
                        step,
                    )
                    return None
                if outcome.failure is not None:
                    logger.warning(
                        "rotation of %s, attempt %d, %s failed: %s, %d bytes of output "
                        "(not shown: it may hold secret values)",
                        secret.arn,
                        attempt,
                        step,
                        outcome.failure,
                        outcome.output_bytes,
                    )
                    message = (
                        f"Error when executing lambda {function_arn} during {step} step "
                        f"({outcome.failure})"
                    )
                    self.secrets.fail_rotation_attempt(
                        secret_id, version_id, attempt, step, message, context
                    )
                    return False
            return self.secrets.finish_rotation(secret_id, version_id, attempt, context)
        finally:
            self.principals.revoke(principal.access_key_id)

    def run_step(
        self,
        function: RotationFunction,
        function_arn: str,
        step: str,
        secret_arn: str,
        version_id: str,
        principal: Principal,
    ) -> StepOutcome:
        """One step in its own process (RF-3), bounded in time and output (RF-6, RF-7)."""
        event = {
            "Step": step,
            "SecretId": secret_arn,
            "ClientRequestToken": version_id,
            "RotationToken": str(uuid.uuid4()),
        }
        timeout_seconds = self.settings.step_timeout_seconds
        try:
            process = subprocess.Popen(
                function.argv(function_arn, timeout_seconds),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.environment(function, principal),
                start_new_session=True,
            )
        except OSError as error:
            return StepOutcome(f"could not start: {error.strerror}", 0)
        counter = OutputCounter(process, self.settings.output_bytes_max)
        counter.start()
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(event).encode("utf-8"))
            process.stdin.close()
        except OSError:
            pass  # the function exited without reading its event; its status tells
        status = self._wait_for(process, timeout_seconds)
        if status is None:
            kill_group(process)
            counter.join()
            if self.is_stopping():
                return StepOutcome(None, counter.total, interrupted=True)
            return StepOutcome(f"timed out after {timeout_seconds:g} seconds", counter.total)
        counter.join(KILL_WAIT_SECONDS)
        if counter.is_alive():  # something the step started still holds its output
            kill_group(process)
            counter.join()
        if counter.exceeded:
            return StepOutcome(
                f"more than {self.settings.output_bytes_max} bytes of output", counter.total
            )
        if status != 0:
            return StepOutcome(f"exit status {status}", counter.total)
        return StepOutcome(None, counter.total)

    def _wait_for(self, process: subprocess.Popen[bytes], timeout_seconds: float) -> int | None:
        """The step's exit status; None if it is still running after ``timeout_seconds``
        or when the runner stops, whichever comes first."""
        deadline = time.monotonic() + timeout_seconds
        while not self.is_stopping():
            remaining_seconds = deadline - time.monotonic()
            if remaining_seconds <= 0:
                return None
            with contextlib.suppress(subprocess.TimeoutExpired):
                return process.wait(timeout=min(remaining_seconds, STOP_CHECK_SECONDS))
        return None

    def environment(self, function: RotationFunction, principal: Principal) -> dict[str, str]:
        """The server's environment without any AWS_* setting (a profile would override
        the credentials), plus the endpoint, region and the principal's credentials."""
        assert principal.session_token is not None, "a temporary principal"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return inherited | {
            "AWS_ENDPOINT_URL": self.settings.endpoint_url,
            "AWS_REGION": self.secrets.region,
            "AWS_DEFAULT_REGION": self.secrets.region,
            "AWS_ACCESS_KEY_ID": principal.access_key_id,
            "AWS_SECRET_ACCESS_KEY": principal.secret_access_key,
            "AWS_SESSION_TOKEN": principal.session_token,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
        }


class OutputCounter(threading.Thread):
    """Reads a process's output to its end, counting bytes and keeping none; kills
    the process group once more than ``limit_bytes`` arrived (RF-7)."""

    def __init__(self, process: subprocess.Popen[bytes], limit_bytes: int) -> None:
        super().__init__(name="ledger-rotation-output", daemon=True)
        assert process.stdout is not None
        self.process = process
        self.stream: IO[bytes] = process.stdout
        self.limit_bytes = limit_bytes
        self.total = 0
        self.exceeded = False

    def run(self) -> None:
        while True:
            chunk = self.stream.read1(READ_CHUNK_BYTES)  # type: ignore[attr-defined]
            if not chunk:
                break
            self.total += len(chunk)
            if self.total > self.limit_bytes and not self.exceeded:
                self.exceeded = True
                kill_group(self.process)
        self.stream.close()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the step's process and whatever it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=KILL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        logger.error("rotation step process %d did not die", process.pid)
