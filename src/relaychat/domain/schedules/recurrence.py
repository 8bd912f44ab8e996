"""When a schedule runs: an `at` time, an RFC 5545 RRULE or a cron expression, in an IANA
timezone, computed with python-dateutil, croniter and zoneinfo.

Every rule speaks in wall-clock time of the schedule's timezone: "08:00 daily" is 08:00 in
winter and in summer. On the days the clocks change (documented in the README):

- a time that does not exist (02:30 on a spring-forward day in New York, where 02:00 jumps
  to 03:00) runs once, as far after the change as it was meant to be: at 03:30 local, the
  UTC instant the old offset gives it (PEP 495 `fold=0`). It is never skipped.
- a time that happens twice (01:30 on a fall-back day, once in summer time and once in
  winter time) runs once, the first time (summer time, `fold=0`). It never runs twice.

An hourly rule therefore runs 23 times on a spring-forward day (02:00 and 03:00 are the
same instant, run once) and 24 times on a fall-back day (the repeated hour once).

An RRULE has no DTSTART of its own: it starts when the schedule is made (to the minute),
and a rule that names hours but no minutes (`BYHOUR=8`) means minute 0 and second 0, not
the minute the schedule happened to be made. COUNT is refused: `max_runs` counts runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter
from dateutil.rrule import YEARLY, rrule, rrulestr

from relaychat.errors import ErrorCode, Unprocessable
from relaychat.statuses import RecurrenceKind

# Longest timezone name kept (`America/Argentina/ComodRivadavia` is 32).
MAX_TIMEZONE_LENGTH = 64
MAX_RULE_LENGTH = 1000
# A rule whose next occurrence is further off than this is refused as never occurring.
HORIZON = timedelta(days=366 * 10)
# More than any clock change moves a wall clock (most are one hour, none above two).
_MAX_CLOCK_JUMP = timedelta(hours=3)
_RRULE_PREFIX = re.compile(r"^\s*RRULE:", re.IGNORECASE)


class InvalidTimezone(Unprocessable):
    code = ErrorCode.INVALID_TIMEZONE
    title = "Unknown timezone"


class InvalidRecurrence(Unprocessable):
    code = ErrorCode.INVALID_RECURRENCE
    title = "The schedule's time rule is not valid"


def zone(name: str) -> ZoneInfo:
    """The IANA timezone called `name`; InvalidTimezone (422) if there is none."""
    if not name or len(name) > MAX_TIMEZONE_LENGTH or name.startswith(("/", ".")):
        raise InvalidTimezone(f"{name!r} is not an IANA timezone", field="timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimezone(
            f"{name!r} is not an IANA timezone (such as `Europe/Paris` or `UTC`)",
            field="timezone",
        ) from None


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a naive wall-clock time: the first of a repeated time, and a
    time the clocks skipped as far after the change as it was meant to be (module docs)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def wall_time(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock time of a UTC instant in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None)


@dataclass(frozen=True)
class Recurrence:
    """A parsed, checked time rule; `after` gives its occurrences as UTC instants."""

    kind: RecurrenceKind
    rule: str
    tz: ZoneInfo
    # DTSTART of an rrule, as a UTC instant (an occurrence, or when the schedule was made).
    anchor: datetime

    @classmethod
    def parse(
        cls,
        kind: RecurrenceKind,
        rule: str,
        timezone: str,
        anchor: datetime,
        *,
        probe: bool = True,
    ) -> Recurrence:
        """Check `rule` and build the recurrence; InvalidRecurrence (422) if it is not valid.
        `probe=False` skips the search for a first occurrence (a rule stored after it)."""
        tz = zone(timezone)
        rule = rule.strip()
        if not rule or len(rule) > MAX_RULE_LENGTH:
            raise InvalidRecurrence(
                f"the {kind} rule must be 1 to {MAX_RULE_LENGTH} characters", field=str(kind)
            )
        recurrence = cls(kind, rule, tz, anchor.astimezone(UTC))
        if kind == RecurrenceKind.AT:
            recurrence.at_instant()
        elif kind == RecurrenceKind.CRON:
            recurrence._cron_check()
        elif probe:
            recurrence._probe_rrule(recurrence._rrule())
        return recurrence

    # -- the three kinds ------------------------------------------------------------------

    def at_instant(self) -> datetime:
        """The one instant of an `at` rule: a local ISO time, or one with its offset."""
        try:
            moment = datetime.fromisoformat(self.rule)
        except ValueError:
            raise InvalidRecurrence(
                f"`at` must be an ISO 8601 time such as 2026-12-24T18:00, not {self.rule!r}",
                field="at",
            ) from None
        if moment.tzinfo is None:
            return localize(moment.replace(microsecond=0), self.tz)
        return moment.astimezone(UTC)

    def _cron_check(self) -> None:
        fields = self.rule.split()
        # croniter also takes a sixth (seconds) field and aliases; five fields is cron.
        if len(fields) != 5 or not croniter.is_valid(self.rule):
            raise InvalidRecurrence(
                f"`cron` must be five fields (minute hour day month weekday), not {self.rule!r}",
                field="cron",
            )

    def _rrule(self, dtstart: datetime | None = None) -> rrule:
        text = _RRULE_PREFIX.sub("", self.rule)
        parts = {
            key.strip().upper(): value
            for key, _, value in (p.partition("=") for p in text.split(";") if p.strip())
        }
        if "COUNT" in parts:
            raise InvalidRecurrence(
                "COUNT is not taken in the rrule: use the schedule's `max_runs`", field="rrule"
            )
        if "DTSTART" in text.upper():
            raise InvalidRecurrence(
                "the rrule starts when the schedule is made; leave DTSTART out", field="rrule"
            )
        until = parts.get("UNTIL", "").strip()
        if until.upper().endswith("Z"):
            # UNTIL in UTC, as RFC 5545 wants it: the rule yields naive wall times, so it
            # is compared as the wall time it is in the schedule's timezone.
            try:
                instant = datetime.strptime(until.upper(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                raise InvalidRecurrence(
                    f"UNTIL must read like 20261231T235959Z, not {until!r}", field="rrule"
                ) from None
            local = wall_time(instant, self.tz).strftime("%Y%m%dT%H%M%S")
            text = ";".join(
                f"UNTIL={local}" if p.strip().upper().startswith("UNTIL=") else p
                for p in text.split(";")
            )
        # A rule naming hours (or minutes) means them exactly, not the creation time's
        # minute and second, which would be the RFC's defaults from DTSTART.
        if "BYHOUR" in parts and "BYMINUTE" not in parts:
            text += ";BYMINUTE=0"
        if ("BYHOUR" in parts or "BYMINUTE" in parts) and "BYSECOND" not in parts:
            text += ";BYSECOND=0"
        start = dtstart if dtstart is not None else wall_time(self.anchor, self.tz)
        try:
            parsed = rrulestr(text, dtstart=start.replace(second=0, microsecond=0))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidRecurrence(
                f"`rrule` is not an RFC 5545 recurrence rule: {exc}", field="rrule"
            ) from None
        if not isinstance(parsed, rrule):
            raise InvalidRecurrence("`rrule` must be a single RRULE", field="rrule")
        return parsed

    def _probe_rrule(self, parsed: rrule) -> None:
        """Refuse a rule whose days never come (`BYMONTH=2;BYMONTHDAY=30`): dateutil would
        search such a rule up to year 9999, seconds of work, on every question. Its days,
        asked yearly, are found (or not) quickly."""
        start = wall_time(self.anchor, self.tz)
        yearly = parsed.replace(
            freq=YEARLY, interval=1, byhour=None, byminute=None, bysecond=None, until=None
        )
        first = yearly.after(start - timedelta(days=1))
        if first is None or first - start > HORIZON:
            raise InvalidRecurrence(
                "the rrule names days that never come (within ten years)", field="rrule"
            )

    # -- occurrences ----------------------------------------------------------------------

    def _walls_after(self, wall: datetime) -> Iterator[datetime]:
        """Naive wall times of the rule strictly after `wall`, in order, without end."""
        if self.kind == RecurrenceKind.CRON:
            cron = croniter(self.rule, wall)
            while True:
                try:
                    yield cron.get_next(datetime)
                except (CroniterBadDateError, CroniterBadCronError, CroniterError):
                    return
        yield from self._rrule().xafter(wall)

    def after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after the UTC instant `moment`; None if no more."""
        if self.kind == RecurrenceKind.AT:
            instant = self.at_instant()
            return instant if instant > moment else None
        # Wall times in a spring-forward gap fall after the wall times just past the gap
        # (02:30 is 03:30, later than 03:10), so start as far back as a clock ever jumps
        # and take the first instant after `moment`; this also finds the first of two
        # repeated hours, which a wall time read back from an instant cannot tell apart.
        start = wall_time(moment, self.tz) - _MAX_CLOCK_JUMP
        for wall in self._walls_after(start):
            instant = localize(wall, self.tz)
            if instant > moment:
                return instant
            if wall - start > HORIZON:
                break
        return None

    def upcoming(
        self, moment: datetime, count: int, until: datetime | None = None
    ) -> list[datetime]:
        """Up to `count` occurrences after `moment` (and not after `until`), in UTC."""
        found: list[datetime] = []
        current = moment
        while len(found) < count:
            nxt = self.after(current)
            if nxt is None or (until is not None and nxt > until):
                break
            found.append(nxt)
            current = nxt
        return found

    def anchor_for(self, occurrence: datetime) -> datetime:
        """The anchor to keep after `occurrence` ran: the occurrence itself, which keeps the
        rule's phase and spares dateutil walking from the creation date every time, unless
        its wall time does not read back (a time the clocks skipped)."""
        if self.kind != RecurrenceKind.RRULE:
            return self.anchor
        wall = wall_time(occurrence, self.tz)
        if self._rrule().after(wall - timedelta(seconds=1)) != wall:
            return self.anchor
        return occurrence
