"""Rotation schedules: ``RotationRules`` parsed and checked, and the next rotation window.

Rules RS-1 to RS-6 of docs/rotation.md. A schedule is one of

* ``AutomaticallyAfterDays: N`` or ``ScheduleExpression: rate(N day[s])``: day-based;
* ``rate(N hour[s])``, N >= 4: hour-based;
* ``cron(0 Hours Day-of-month Month Day-of-week *)``: AWS's six-field form, always
  UTC; hour-based when its hours field names more than one hour, else day-based;

with an optional ``Duration`` (``Nh``), the length of the rotation window. Every time
here is UTC; the functions are pure, so the domain can use them.
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from ledger.errors import InvalidParameterException

ONE_HOUR: Final = timedelta(hours=1)
ONE_DAY: Final = timedelta(days=1)
RATE_HOURS_MIN: Final = 4
DAYS_MAX: Final = 1000
CRON_SEARCH_DAYS_MAX: Final = 366 * 5
INTERVAL_SAMPLES: Final = 64
CRON_CHECK_FROM: Final = datetime(2001, 1, 1, tzinfo=UTC)
RATE_PATTERN: Final = re.compile(r"rate\(\s*([0-9]{1,7})\s+(hour|hours|day|days)\s*\)")
CRON_PATTERN: Final = re.compile(r"cron\((.*)\)")
DURATION_PATTERN: Final = re.compile(r"([0-9]+)h")
MONTH_NAMES: Final = {
    name.upper(): number for number, name in enumerate(calendar.month_abbr) if name
}
DAY_NAMES: Final = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def invalid(message: str) -> InvalidParameterException:
    return InvalidParameterException(message)


@dataclass(frozen=True)
class Window:
    """A rotation window: the rotation happens at any time in [start, end)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class CronDays:
    """The day fields of a cron expression: which days of a month are chosen."""

    months: frozenset[int]
    days_of_month: frozenset[int] | None  # None: "?" (the day of week decides)
    last_day_of_month: bool
    days_of_week: frozenset[int] | None  # 1 = Sunday ... 7 = Saturday; None: "?"
    nth_weekday: tuple[int, int] | None  # (weekday, n): TUE#3
    last_weekday: int | None  # SUNL, 1L

    def chooses(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        if self.days_of_month is not None or self.last_day_of_month:
            last = calendar.monthrange(day.year, day.month)[1]
            return (self.last_day_of_month and day.day == last) or (
                self.days_of_month is not None and day.day in self.days_of_month
            )
        weekday = aws_weekday(day)
        if self.nth_weekday is not None:
            wanted, n = self.nth_weekday
            return weekday == wanted and (day.day - 1) // 7 + 1 == n
        if self.last_weekday is not None:
            last = calendar.monthrange(day.year, day.month)[1]
            return weekday == self.last_weekday and day.day + 7 > last
        assert self.days_of_week is not None, "one of the day fields decides"
        return weekday in self.days_of_week


def aws_weekday(day: date) -> int:
    """1 = Sunday ... 7 = Saturday, as cron's day-of-week field counts."""
    return (day.weekday() + 1) % 7 + 1


@dataclass(frozen=True)
class Schedule:
    """A parsed ``RotationRules`` (RS-1): ``rules`` is the structure as the caller gave it."""

    rules: Mapping[str, Any]
    interval: timedelta | None  # AutomaticallyAfterDays / rate(): the step between windows
    hours: tuple[int, ...]  # cron: the hours a window may start at, ascending
    days: CronDays | None  # cron: the days
    duration: timedelta | None

    @property
    def hour_based(self) -> bool:
        if self.interval is not None:
            return self.interval < ONE_DAY
        return len(self.hours) > 1

    def window_starting(self, start: datetime) -> Window:
        """RS-4: the window's end: ``Duration`` after its start; without one, an hour
        later for hour-based schedules, the end of the UTC day for day-based ones; never
        past the end of that UTC day."""
        day_end = datetime.combine(start.date(), time(0), UTC) + ONE_DAY
        if self.duration is not None:
            end = start + self.duration
        elif self.hour_based:
            end = start + ONE_HOUR
        else:
            end = day_end
        return Window(start, min(end, day_end))

    def next_window(self, after: datetime) -> Window:
        """RS-3: the first window after ``after`` (a rotation's completion, or the time
        rotation was configured without rotating at once)."""
        assert after.tzinfo is not None, "schedules work on UTC instants"
        after = after.astimezone(UTC)
        if self.interval is not None and self.interval >= ONE_DAY:
            midnight = datetime.combine(after.date(), time(0), UTC)
            return self.window_starting(midnight + self.interval)
        if self.interval is not None:
            hour = after.replace(minute=0, second=0, microsecond=0)
            return self.window_starting(hour + self.interval)
        return self.window_starting(self._next_cron_start(after))

    def _next_cron_start(self, after: datetime) -> datetime:
        assert self.days is not None and self.hours, "a cron schedule"
        day = after.date()
        for _ in range(CRON_SEARCH_DAYS_MAX):
            if self.days.chooses(day):
                for hour in self.hours:
                    start = datetime.combine(day, time(hour), UTC)
                    if start > after:
                        return start
            day += ONE_DAY
        raise invalid("The rotation schedule expression never matches a date.")

    def shown_rules(self, rotated: bool) -> dict[str, Any]:
        """RS-6: ``RotationRules`` as DescribeSecret shows them: as given; after a
        successful rotation a ``ScheduleExpression`` of whole days also shows the
        ``AutomaticallyAfterDays`` it amounts to."""
        shown = dict(self.rules)
        if not rotated or "ScheduleExpression" not in shown:
            return shown
        days = self.days_between_windows()
        if days is not None:
            shown["AutomaticallyAfterDays"] = days
        return shown

    def days_between_windows(self) -> int | None:
        """The shortest gap between window starts, in whole days (None below one day)."""
        if self.interval is not None:
            return self.interval.days or None
        starts = []
        moment = CRON_CHECK_FROM
        for _ in range(INTERVAL_SAMPLES):
            moment = self._next_cron_start(moment)
            starts.append(moment)
        gap = min(later - earlier for earlier, later in itertools.pairwise(starts))
        return gap.days or None


def parse_rules(rules: Mapping[str, Any]) -> Schedule:
    """RS-1, RS-2: a ``RotationRules`` structure (model constraints already checked),
    or InvalidParameterException saying what is wrong."""
    days = rules.get("AutomaticallyAfterDays")
    expression = rules.get("ScheduleExpression")
    duration = parse_duration(rules.get("Duration"))
    if days is not None and expression is not None:
        raise invalid(
            "You can't specify both AutomaticallyAfterDays and ScheduleExpression in RotationRules."
        )
    if days is None and expression is None:
        raise invalid("RotationRules must have AutomaticallyAfterDays or ScheduleExpression.")
    if days is not None:
        if not 1 <= days <= DAYS_MAX:
            raise invalid(f"RotationRules.AutomaticallyAfterDays must be within 1-{DAYS_MAX}.")
        schedule = Schedule(rules, timedelta(days=days), (), None, duration)
    else:
        schedule = parse_expression(rules, str(expression).strip(), duration)
        if schedule.days is not None:
            schedule.next_window(CRON_CHECK_FROM)  # RS-2: it names at least one date
    check_window(schedule)
    return schedule


def parse_duration(text: Any) -> timedelta | None:
    if text is None:
        return None
    match = DURATION_PATTERN.fullmatch(str(text))
    if match is None or not 1 <= int(match.group(1)) <= 24:
        raise invalid("RotationRules.Duration must be a whole number of hours from 1h to 24h.")
    return timedelta(hours=int(match.group(1)))


def parse_expression(
    rules: Mapping[str, Any], expression: str, duration: timedelta | None
) -> Schedule:
    rate = RATE_PATTERN.fullmatch(expression)
    if rate is not None:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise invalid("The value of a rate() expression must be a positive whole number.")
        if unit.startswith("hour"):
            if value < RATE_HOURS_MIN:
                raise invalid("A rotation schedule can't be shorter than rate(4 hours).")
            return Schedule(rules, timedelta(hours=value), (), None, duration)
        if value > DAYS_MAX:
            raise invalid(f"A rate() schedule can't be longer than {DAYS_MAX} days.")
        return Schedule(rules, timedelta(days=value), (), None, duration)
    cron = CRON_PATTERN.fullmatch(expression)
    if cron is None:
        raise invalid(
            "ScheduleExpression must be rate(N hours), rate(N days) or "
            "cron(Minutes Hours Day-of-month Month Day-of-week Year)."
        )
    hours, days = parse_cron(cron.group(1).split())
    return Schedule(rules, None, hours, days, duration)


def parse_cron(fields: list[str]) -> tuple[tuple[int, ...], CronDays]:
    """RS-2: AWS's cron: six fields, minutes 0, year ``*``, exactly one day field ``?``."""
    if len(fields) != 6:
        raise invalid(
            "A cron() expression has six fields: Minutes Hours Day-of-month Month Day-of-week Year."
        )
    minutes, hours, day_of_month, month, day_of_week, year = fields
    if minutes != "0":
        raise invalid("The Minutes field of a rotation cron() expression must be 0.")
    if year != "*":
        raise invalid("The Year field of a rotation cron() expression must be *.")
    if (day_of_month == "?") == (day_of_week == "?"):
        raise invalid("Exactly one of Day-of-month and Day-of-week must be ? in cron().")
    hour_values = tuple(sorted(parse_field(hours, 0, 23, {}, "Hours")))
    months = frozenset(parse_field(month, 1, 12, MONTH_NAMES, "Month"))
    if day_of_week == "?":
        last = day_of_month == "L"
        dom = None if last else frozenset(parse_field(day_of_month, 1, 31, {}, "Day-of-month"))
        return hour_values, CronDays(months, dom, last, None, None, None)
    return hour_values, parse_day_of_week(day_of_week, months)


def parse_day_of_week(text: str, months: frozenset[int]) -> CronDays:
    field = text.upper()
    if "#" in field:
        weekday_text, _, n_text = field.partition("#")
        weekday = parse_value(weekday_text, 1, 7, DAY_NAMES, "Day-of-week")
        if not n_text.isdigit() or not 1 <= int(n_text) <= 5:
            raise invalid("The n of Day-of-week#n in cron() must be from 1 to 5.")
        return CronDays(months, None, False, None, (weekday, int(n_text)), None)
    if field.endswith("L") and len(field) > 1:
        weekday = parse_value(field[:-1], 1, 7, DAY_NAMES, "Day-of-week")
        return CronDays(months, None, False, None, None, weekday)
    weekdays = frozenset(parse_field(field, 1, 7, DAY_NAMES, "Day-of-week"))
    return CronDays(months, None, False, weekdays, None, None)


def parse_field(text: str, low: int, high: int, names: Mapping[str, int], what: str) -> set[int]:
    """A cron field of ``,``-separated parts, each ``*``, ``a``, ``a-b``, with an
    optional ``/step`` (``4/12`` starts at 4)."""
    values: set[int] = set()
    for part in text.upper().split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise invalid(f"The {what} field of cron() has an invalid increment.")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first = parse_value(first_text, low, high, names, what)
            last = parse_value(last_text, low, high, names, what)
        else:
            first = parse_value(base, low, high, names, what)
            last = high if slash else first
        if first > last:
            raise invalid(f"The {what} field of cron() has a range that runs backwards.")
        values.update(range(first, last + 1, step))
    return values


def parse_value(text: str, low: int, high: int, names: Mapping[str, int], what: str) -> int:
    value = names.get(text) if text in names else (int(text) if text.isdigit() else None)
    if value is None or not low <= value <= high:
        raise invalid(f"The {what} field of cron() must be within {low}-{high}.")
    return value


def check_window(schedule: Schedule) -> None:
    """RS-5: a window must not run into the next UTC day or into the next window."""
    if schedule.duration is None:
        return
    if schedule.interval is not None:
        if schedule.interval < ONE_DAY and schedule.duration > schedule.interval:
            raise invalid("RotationRules.Duration is longer than the interval between windows.")
        if schedule.interval >= ONE_DAY and schedule.duration > ONE_DAY:
            raise invalid("The rotation window can't extend into the next UTC day.")
        return
    if max(schedule.hours) * ONE_HOUR + schedule.duration > ONE_DAY:
        raise invalid("The rotation window can't extend into the next UTC day.")
    gaps = [later - earlier for earlier, later in itertools.pairwise(schedule.hours)]
    if gaps and min(gaps) * ONE_HOUR < schedule.duration:
        raise invalid("The rotation window can't extend into the next rotation window.")
