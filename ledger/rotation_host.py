"""Runs one step of a Python rotation function, as Lambda would: ``python -m
ledger.rotation_host --function-arn ARN --timeout-seconds N package.module:function``
with the step's event as JSON on stdin (rule RF-2 of docs/rotation.md).

The handler is called as ``handler(event, context)`` with a Lambda-like context;
exit status 0 when it returns, 1 when it raises (its traceback goes to stderr, which
the runner counts and never logs), 2 when the handler cannot be loaded.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MILLISECONDS_PER_SECOND = 1000
MEMORY_LIMIT_MB = 128
EXIT_HANDLER_RAISED = 1
EXIT_HANDLER_NOT_LOADED = 2


@dataclass
class LambdaContext:
    """The members of Lambda's Python context object that rotation functions use."""

    function_name: str
    invoked_function_arn: str
    deadline_monotonic: float
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = MEMORY_LIMIT_MB
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        remaining = self.deadline_monotonic - time.monotonic()
        return max(0, int(remaining * MILLISECONDS_PER_SECOND))


def load_handler(target: str) -> Callable[[Any, Any], Any]:
    """``package.module:function`` -> the function."""
    module_name, separator, function_name = target.partition(":")
    if not separator or not module_name or not function_name:
        raise ValueError(f"not package.module:function: {target!r}")
    handler = getattr(importlib.import_module(module_name), function_name)
    if not callable(handler):
        raise TypeError(f"{target} is not callable")
    return handler  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ledger.rotation_host")
    parser.add_argument("--function-arn", required=True)
    parser.add_argument("--timeout-seconds", type=float, required=True)
    parser.add_argument("target", help="package.module:function")
    arguments = parser.parse_args(argv)
    deadline = time.monotonic() + arguments.timeout_seconds
    try:
        handler = load_handler(arguments.target)
    except Exception:
        traceback.print_exc()
        return EXIT_HANDLER_NOT_LOADED
    event = json.load(sys.stdin)
    context = LambdaContext(
        function_name=arguments.function_arn.rsplit(":", 1)[-1],
        invoked_function_arn=arguments.function_arn,
        deadline_monotonic=deadline,
    )
    try:
        handler(event, context)
    except Exception:
        traceback.print_exc()
        return EXIT_HANDLER_RAISED
    return 0


if __name__ == "__main__":
    sys.exit(main())
