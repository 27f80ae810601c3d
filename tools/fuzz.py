"""Fuzzing of the HTTP face: requests generated from botocore's Secrets Manager model,
valid and mutated, signed, and the rules every answer must keep.

Strategies (hypothesis), built from the service model that botocore's loader ships:

* `requests()`: an operation of the model (served or not) and its members, each
  drawn from its shape (lengths, enums, ranges), names mostly of secrets that exist;
* mutations: a member replaced by a value of another JSON type, a huge or negative
  integer (2^63 and beyond), a long string or list, a document nested up to 3,000
  deep, a lone surrogate, invalid base64 in ``SecretBinary``; bodies that are random
  bytes, truncated JSON, or invalid UTF-8;
* header mutations (real sockets only): CR, LF or NUL inside a header value, a second
  header smuggled after CR LF, a missing or doubled ``X-Amz-Target``, an unsigned
  header of 20 KB (under the head size cap) or of 100 KB (over it).

The rules (`check_answer`): an answer within the timeout; never a 5xx; every answer
AWS-shaped (the JSON 1.1 content type, a request id, a JSON body; for a 4xx
``{"__type", "Message"}``), including the refusals of the HTTP server itself, before
the endpoint sees the request: broken framing (IL-7 of docs/limits.md) and a head
over 64 KiB (IL-8) are each a 400 ``SerializationException`` with its own fixed
message (`HEADER_MUTATIONS` says which mutation must get which); and a refused request
changes no secret (the count of the ledger's non-audit events stays the same).

`python3 tools/fuzz.py --examples N` runs the in-process target for longer than the
tests do (tests/test_fuzz.py; ``SECRETLEDGER_FUZZ_EXAMPLES`` scales them); with
``--atheris`` it runs the same target under atheris's coverage-guided fuzzer
(``pip install atheris``) until interrupted or ``--runs`` inputs.

Example:
  python3 tools/fuzz.py --examples 20000
  python3 tools/fuzz.py --atheris --runs 200000
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import socket
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.model import Shape  # noqa: E402
from eventsourcing.application import ProcessingEvent  # noqa: E402
from eventsourcing.persistence import Recording  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ledger.api import SecretsManagerApi  # noqa: E402
from ledger.application import Secrets  # noqa: E402
from ledger.auth import Principal, Principals, ReceivedRequest, SignatureVerifier  # noqa: E402
from ledger.domain import ApiCall  # noqa: E402
from ledger.http import CONTENT_TYPE, Endpoint  # noqa: E402
from ledger.serving import BROKEN_FRAMING_MESSAGE, HEAD_TOO_LARGE_MESSAGE  # noqa: E402
from ledger.validation import service_model  # noqa: E402

REGION = "eu-west-1"
ACCOUNT_ID = "111122223333"
PRINCIPAL = Principal(
    access_key_id="AKIAFUZZ000000000001",
    secret_access_key="fuzz-secret-access-key-0000000000000000",
    arn=f"arn:aws:iam::{ACCOUNT_ID}:user/fuzz",
)
EXISTING_NAMES = ("fuzz/alpha", "fuzz/beta")
DEEP_PLACEHOLDER = "__fuzz_deep_nesting__"
STRING_LENGTH_DRAWN_MAX = 64
LIST_LENGTH_DRAWN_MAX = 4
HUGE_STRING_LENGTH_MAX = 300_000
HUGE_LIST_LENGTH_MAX = 30_000
NESTING_DEPTH_DRAWN_MAX = 3_000


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


def shape_values(shape: Shape, member_name: str = "") -> st.SearchStrategy[Any]:
    """Values a member of ``shape`` may take by the model (lengths capped for speed)."""
    kind = shape.type_name
    metadata = shape.metadata
    if kind == "structure":
        members = {name: shape_values(member, name) for name, member in shape.members.items()}
        required = {name: members[name] for name in shape.required_members}
        optional = {name: value for name, value in members.items() if name not in required}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "list":
        low = metadata.get("min", 0)
        high = max(low, min(metadata.get("max", LIST_LENGTH_DRAWN_MAX), LIST_LENGTH_DRAWN_MAX))
        return st.lists(shape_values(shape.member), min_size=low, max_size=high)
    if kind == "string":
        return string_values(shape, member_name)
    if kind == "blob":
        return st.binary(min_size=1, max_size=64)
    if kind in ("integer", "long"):
        return st.integers(metadata.get("min", -(2**31)), metadata.get("max", 2**31 - 1))
    if kind == "boolean":
        return st.booleans()
    return st.floats(allow_nan=False, allow_infinity=False)  # timestamps


def string_values(shape: Shape, member_name: str) -> st.SearchStrategy[Any]:
    if shape.enum:
        return st.sampled_from(shape.enum)
    if member_name in ("SecretId", "Name", "MoveToVersionId", "RemoveFromVersionId"):
        return st.sampled_from(EXISTING_NAMES) | st.text(min_size=1, max_size=32)
    if member_name in ("ClientRequestToken", "VersionId"):
        return st.uuids().map(str)
    low = shape.metadata.get("min", 0)
    high = max(
        low, min(shape.metadata.get("max", STRING_LENGTH_DRAWN_MAX), STRING_LENGTH_DRAWN_MAX)
    )
    return st.text(min_size=low, max_size=high)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
HOSTILE_VALUES = st.one_of(
    st.integers(2**63, 2**80),
    st.integers(-(2**80), -(2**63) - 1),
    st.integers(1, HUGE_STRING_LENGTH_MAX).map(lambda length: "x" * length),
    st.integers(1, HUGE_LIST_LENGTH_MAX).map(lambda length: ["v"] * length),
    st.integers(2, NESTING_DEPTH_DRAWN_MAX).map(lambda depth: {DEEP_PLACEHOLDER: depth}),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "%s%n", "../../etc/passwd"]),
    st.just(1e308) | st.just(-0.0),
)


@dataclass(frozen=True)
class FuzzRequest:
    operation: str
    body: bytes
    note: str  # what was mutated, for failure reports


@st.composite
def requests(draw: st.DrawFn, *, mutate: bool = True) -> FuzzRequest:
    """An operation of the model with members from its shapes, perhaps mutated."""
    model = service_model()
    operation = draw(st.sampled_from(sorted(model.operation_names)))
    input_shape = model.operation_model(operation).input_shape
    members: dict[str, Any] = draw(shape_values(input_shape)) if input_shape is not None else {}
    note = "valid"
    if mutate:
        member_names = sorted(input_shape.members) if input_shape is not None else []
        kind = draw(st.sampled_from(["valid", "member", "member", "drop", "body", "binary"]))
        if kind == "member":
            name = draw(st.sampled_from([*member_names, "Unmodelled"]))
            members[name] = draw(JSON_VALUES | HOSTILE_VALUES)
            note = f"member {name}"
        elif kind == "drop" and members:
            members.pop(draw(st.sampled_from(sorted(members))))
            note = "dropped a member"
        elif kind == "binary":
            members["SecretBinary"] = draw(st.sampled_from(["not base64!", "YQ=", "=", "Zm9v\n"]))
            note = "invalid base64"
        elif kind == "body":
            return FuzzRequest(operation, draw(broken_bodies(members)), "broken body")
    return FuzzRequest(operation, encode(members), note)


def broken_bodies(members: Mapping[str, Any]) -> st.SearchStrategy[bytes]:
    text = encode(members)
    return st.one_of(
        st.binary(max_size=512),
        st.integers(0, max(len(text) - 1, 0)).map(lambda cut: text[:cut]),
        st.just(text.replace(b'"', b'"\xff', 1)),
        st.just(b"[" * 100_000),
        st.sampled_from([b"null", b"[]", b'"text"', b"1e999", b"{}" * 3, b'{"a":NaN}']),
    )


def encode(members: Mapping[str, Any]) -> bytes:
    """JSON text; blobs as base64; a deep-nesting placeholder as brackets (json.dumps
    itself would recurse too deep)."""
    deep: list[int] = []

    def default(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        raise TypeError(type(value).__name__)

    def placeholders(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {DEEP_PLACEHOLDER}:
                deep.append(value[DEEP_PLACEHOLDER])
                return f"{DEEP_PLACEHOLDER}{len(deep) - 1}"
            return {key: placeholders(item) for key, item in value.items()}
        if isinstance(value, list):
            return [placeholders(item) for item in value]
        return value

    text = json.dumps(placeholders(dict(members)), default=default)
    for index, depth in enumerate(deep):
        text = text.replace(f'"{DEEP_PLACEHOLDER}{index}"', "[" * depth + "]" * depth)
    return text.encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------------------
# Signing and the rules
# --------------------------------------------------------------------------------------


def signed_headers(url: str, operation: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": f"secretsmanager.{operation}"},
    )
    credentials = Credentials(PRINCIPAL.access_key_id, PRINCIPAL.secret_access_key)
    SigV4Auth(credentials, "secretsmanager", REGION).add_auth(request)
    return dict(request.headers)


def check_answer(
    status: int, headers: Mapping[str, str], body: bytes, *, refused_with: str | None = None
) -> None:
    """Raise AssertionError unless the answer keeps the rules of the module docstring;
    with ``refused_with``, unless it is the HTTP server's refusal with that message."""
    assert status < 500, f"a server error: {status} {body[:300]!r}"
    content_type = headers.get("content-type", "")
    assert content_type == CONTENT_TYPE, f"content type {content_type!r}: {body[:300]!r}"
    assert uuid.UUID(headers.get("x-amzn-requestid", ""))
    document = json.loads(body)
    if status != 200:
        assert 400 <= status < 500, status
        assert set(document) == {"__type", "Message"}, document
        assert isinstance(document["__type"], str) and isinstance(document["Message"], str)
    if refused_with is not None:
        assert (status, document["__type"]) == (400, "SerializationException"), document
        assert document["Message"] == refused_with, document


class CountingSecrets(Secrets):
    """A ledger that counts the events of secrets and names it saves (not audit
    records), so that a refused request can be shown to have changed no state."""

    state_event_count = 0

    def _store_events(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        recordings = super()._store_events(processing_event)
        self.state_event_count += sum(
            1 for event in processing_event.events if not isinstance(event, ApiCall.Event)
        )
        return recordings


# --------------------------------------------------------------------------------------
# Real sockets: a running `secretledger serve`
# --------------------------------------------------------------------------------------

# Header mutations, applied after signing, and the message of the HTTP server's own
# refusal the request must get, before the endpoint sees it (None: the endpoint answers).
HEADER_MUTATIONS: dict[str, str | None] = {
    "none": None,
    "smuggled header after CR LF": None,
    "second X-Amz-Target": None,
    "no X-Amz-Target": None,
    "bare LF in a value": BROKEN_FRAMING_MESSAGE,
    "bare CR in a value": BROKEN_FRAMING_MESSAGE,
    "NUL in a value": BROKEN_FRAMING_MESSAGE,
    "20 KB header": None,  # under the head size cap: parsed, and not signed
    "100 KB header": HEAD_TOO_LARGE_MESSAGE,
}
SOCKET_TIMEOUT_SECONDS = 15.0
RESPONSE_SIZE_BYTES_MAX = 4 * 1024 * 1024


def raw_request(port: int, request: FuzzRequest, mutation: str) -> bytes:
    """The HTTP/1.1 request bytes, signed, then mutated; the connection closes after."""
    headers = signed_headers(f"http://127.0.0.1:{port}/", request.operation, request.body)
    lines = [f"{name}: {value}" for name, value in headers.items()]
    target = f"X-Amz-Target: {headers['X-Amz-Target']}"
    if mutation == "smuggled header after CR LF":
        lines = [line + "\r\nX-Smuggled: 1" if line == target else line for line in lines]
    elif mutation == "second X-Amz-Target":
        lines.append("X-Amz-Target: secretsmanager.DeleteSecret")
    elif mutation == "no X-Amz-Target":
        lines.remove(target)
    elif mutation == "bare LF in a value":
        lines.append("X-Note: a\nb")
    elif mutation == "bare CR in a value":
        lines.append("X-Note: a\rb")
    elif mutation == "NUL in a value":
        lines.append("X-Note: a\x00b")
    elif mutation == "20 KB header":
        lines.append("X-Note: " + "n" * 20_000)
    elif mutation == "100 KB header":
        lines.append("X-Note: " + "n" * 100_000)
    head = "\r\n".join(
        [
            "POST / HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            *lines,
            f"Content-Length: {len(request.body)}",
            "Connection: close",
            "",
            "",
        ]
    )
    return head.encode("latin-1") + request.body


def send_raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send, read until the server closes (within the timeout), parse the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        sock.settimeout(SOCKET_TIMEOUT_SECONDS)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the server may answer and close before reading it all
        received = bytearray()
        with contextlib.suppress(ConnectionResetError):
            while len(received) < RESPONSE_SIZE_BYTES_MAX:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), f"no HTTP answer: {bytes(received[:200])!r}"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


# --------------------------------------------------------------------------------------
# In-process target: the endpoint's whole request path, without sockets
# --------------------------------------------------------------------------------------


class InProcessTarget:
    """A memory ledger with two secrets behind an `Endpoint`, called directly."""

    URL = "http://127.0.0.1:9/"

    def __init__(self) -> None:
        self.secrets = CountingSecrets("memory:", region=REGION, account_id=ACCOUNT_ID)
        api = SecretsManagerApi(self.secrets)
        for name in EXISTING_NAMES:
            api.call(
                "CreateSecret",
                {"Name": name, "ClientRequestToken": str(uuid.uuid4()), "SecretString": "v"},
            )
        self.endpoint = Endpoint(api, SignatureVerifier(Principals.of([PRINCIPAL])))

    def send(self, request: FuzzRequest) -> tuple[int, dict[str, str], bytes]:
        headers = signed_headers(self.URL, request.operation, request.body)
        received = ReceivedRequest(
            method="POST",
            path="/",
            query_string="",
            headers=[("host", "127.0.0.1:9"), *((k.lower(), v) for k, v in headers.items())],
            body=request.body,
        )
        answer = self.endpoint.respond(self.endpoint.api, received, "127.0.0.1", str(uuid.uuid4()))
        answer_headers = {name.decode(): value.decode() for name, value in answer.headers()}
        return answer.status, answer_headers, answer.body

    def check(self, request: FuzzRequest) -> None:
        before = self.secrets.state_event_count
        status, headers, body = self.send(request)
        check_answer(status, headers, body)
        if status != 200:
            changed = self.secrets.state_event_count != before
            assert not changed, f"a refused request changed state: {request.note}"

    def close(self) -> None:
        self.endpoint.close()
        self.secrets.close()


# --------------------------------------------------------------------------------------
# Longer runs
# --------------------------------------------------------------------------------------


def run_examples(count: int) -> int:
    from hypothesis import HealthCheck, given, settings

    target = InProcessTarget()
    try:

        @settings(
            max_examples=count,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(requests())
        def fuzz(request: FuzzRequest) -> None:
            target.check(request)

        fuzz()
    finally:
        target.close()
    print(f"{count} examples: every answer kept the rules")
    return 0


def run_atheris(runs: int | None) -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install atheris)", file=sys.stderr)
        return 1
    atheris.instrument_all()
    target = InProcessTarget()
    operations = sorted(service_model().operation_names)

    def one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        operation = operations[provider.ConsumeIntInRange(0, len(operations) - 1)]
        target.check(FuzzRequest(operation, provider.ConsumeBytes(len(data)), "atheris"))

    arguments = [sys.argv[0]] + ([f"-runs={runs}"] if runs is not None else [])
    atheris.Setup(arguments, one_input)
    atheris.Fuzz()
    return 0


def main(arguments: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/fuzz.py", description="Fuzz the request path.")
    parser.add_argument("--examples", type=int, default=5_000, help="hypothesis examples")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, with atheris")
    parser.add_argument("--runs", type=int, help="atheris: stop after this many inputs")
    parsed = parser.parse_args(arguments)
    if parsed.atheris:
        return run_atheris(parsed.runs)
    return run_examples(parsed.examples)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
