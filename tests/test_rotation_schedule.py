"""Rotation schedules (rules RS-1 to RS-6 of docs/rotation.md) and the parsing of
``--rotation-function`` (RF-1): pure functions, checked against worked examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.errors import InvalidParameterException
from ledger.rotation import RotationFunctionError, parse_rotation_function
from ledger.rotation_schedule import parse_rules

WEDNESDAY_NOON = datetime(2025, 3, 19, 12, 0, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("rules", "start", "end"),
    [
        ({"AutomaticallyAfterDays": 1}, utc(2025, 3, 20), utc(2025, 3, 21)),
        ({"AutomaticallyAfterDays": 30, "Duration": "3h"}, utc(2025, 4, 18), utc(2025, 4, 18, 3)),
        ({"ScheduleExpression": "rate(10 days)"}, utc(2025, 3, 29), utc(2025, 3, 30)),
        ({"ScheduleExpression": "rate(6 hours)"}, utc(2025, 3, 19, 18), utc(2025, 3, 19, 19)),
        ({"ScheduleExpression": "rate(4 hours)", "Duration": "2h"},
         utc(2025, 3, 19, 16), utc(2025, 3, 19, 18)),
        ({"ScheduleExpression": "cron(0 4/12 * * ? *)"}, utc(2025, 3, 19, 16),
         utc(2025, 3, 19, 17)),
        ({"ScheduleExpression": "cron(0 16 1,15 * ? *)", "Duration": "2h"},
         utc(2025, 4, 1, 16), utc(2025, 4, 1, 18)),
        ({"ScheduleExpression": "cron(0 8 ? * TUE#3 *)"}, utc(2025, 4, 15, 8), utc(2025, 4, 16)),
        ({"ScheduleExpression": "cron(0 8 ? * SUNL *)"}, utc(2025, 3, 30, 8), utc(2025, 3, 31)),
        ({"ScheduleExpression": "cron(0 0 L * ? *)"}, utc(2025, 3, 31), utc(2025, 4, 1)),
        ({"ScheduleExpression": "cron(0 10 ? JAN-MAR MON-FRI *)"}, utc(2025, 3, 20, 10),
         utc(2025, 3, 21)),
        ({"ScheduleExpression": "cron(0 10 ? 4 2 *)"}, utc(2025, 4, 7, 10), utc(2025, 4, 8)),
    ],
)  # fmt: skip
def test_next_window(rules: dict[str, Any], start: datetime, end: datetime) -> None:
    window = parse_rules(rules).next_window(WEDNESDAY_NOON)
    assert (window.start, window.end) == (start, end)


def test_a_window_starts_strictly_after_the_instant() -> None:
    schedule = parse_rules({"ScheduleExpression": "cron(0 12 * * ? *)"})
    assert schedule.next_window(WEDNESDAY_NOON).start == WEDNESDAY_NOON + timedelta(days=1)


@pytest.mark.parametrize(
    ("expression", "days"),
    [("rate(10 days)", 10), ("cron(0 16 1,15 * ? *)", 14), ("cron(0 4/12 * * ? *)", None),
     ("rate(12 hours)", None), ("cron(0 8 ? * MON *)", 7)],
)  # fmt: skip
def test_days_shown_for_a_schedule_expression(expression: str, days: int | None) -> None:
    shown = parse_rules({"ScheduleExpression": expression}).shown_rules(rotated=True)
    assert shown.get("AutomaticallyAfterDays") == days
    assert parse_rules({"ScheduleExpression": expression}).shown_rules(rotated=False) == {
        "ScheduleExpression": expression
    }


@pytest.mark.parametrize(
    "rules",
    [
        {"ScheduleExpression": "cron(0 8 * * ? * *)"},
        {"ScheduleExpression": "cron(0 24 * * ? *)"},
        {"ScheduleExpression": "cron(0 8 32 * ? *)"},
        {"ScheduleExpression": "cron(0 8 ? * 8 *)"},
        {"ScheduleExpression": "cron(0 8 ? * MON#6 *)"},
        {"ScheduleExpression": "cron(0 8-4 * * ? *)"},
        {"ScheduleExpression": "cron(0 8/0 * * ? *)"},
        {"ScheduleExpression": "cron(0 8 ? FOO * *)"},
        {"ScheduleExpression": "cron(0 0 30 2 ? *)"},
        {"ScheduleExpression": "rate(0 days)"},
        {"ScheduleExpression": "rate(1001 days)"},
        {"AutomaticallyAfterDays": 1, "Duration": "0h"},
        {"AutomaticallyAfterDays": 1, "Duration": "25h"},
        {"ScheduleExpression": "rate(4 hours)", "Duration": "5h"},
    ],
)
def test_bad_rules(rules: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterException):
        parse_rules(rules)


def test_rotation_function_specifications() -> None:
    python = parse_rotation_function("rotate-db=my_package.rotation:lambda_handler")
    assert (python.name, python.python_target) == (
        "rotate-db",
        "my_package.rotation:lambda_handler",
    )
    command = parse_rotation_function("shell=exec:/usr/bin/env node rotate.js --verbose")
    assert command.command == ("/usr/bin/env", "node", "rotate.js", "--verbose")
    assert command.argv("arn", 1.0) == list(command.command)
    for bad in ("no-equals", "bad name=m:f", "x=module", "x=a.b:c:d", "x=exec:", "x=1mod:f",
                "x=exec:'unclosed"):  # fmt: skip
        with pytest.raises(RotationFunctionError):
            parse_rotation_function(bad)
