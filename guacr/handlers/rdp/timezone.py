"""The client time zone of the Extended Info Packet (guacd's ``timezone``).

guacd puts the IANA name (the parameter, else the client's handshake ``timezone``) in
``TZ`` and FreeRDP's WinPR turns it into a TS_TIME_ZONE_INFORMATION (MS-RDPBCGR
2.2.1.11.1.1.1): the Windows zone's standard bias, its standard and daylight names,
and this year's daylight-saving rule as "n-th weekday of month" dates. guacr builds the
same structure from the system's zone database (``zoneinfo``) and CLDR's IANA-to-Windows
table (``tzlocal.windows_tz``). Like WinPR, a zone without a Windows name is sent as
"Client Local Time" with its current offset and no rule. The names are the Windows zone
id and the id with "Standard" replaced by "Daylight", as in WinPR's table, except for
the few zones it names otherwise (:data:`NAMES`).
"""

from __future__ import annotations

import calendar
import struct
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal import get_localzone_name
from tzlocal.windows_tz import tz_win

FALLBACK_NAME = "Client Local Time"
# Windows zones whose standard name is not their id (WinPR's table): id -> (standard
# name, daylight name) stem.
NAMES: dict[str, str] = {
    "Turks And Caicos Standard Time": "Turks and Caicos",
    "Cape Verde Standard Time": "Cabo Verde",
    "West Bank Standard Time": "West Bank Gaza",
    "Israel Standard Time": "Jerusalem",
    "Kaliningrad Standard Time": "Russia TZ 1",
    "Russian Standard Time": "Russia TZ 2",
    "Russia Time Zone 3": "Russia TZ 3",
    "Ekaterinburg Standard Time": "Russia TZ 4",
    "North Asia Standard Time": "Russia TZ 6",
    "N. Central Asia Standard Time": "Novosibirsk",
    "North Asia East Standard Time": "Russia TZ 7",
    "Singapore Standard Time": "Malay Peninsula",
    "Yakutsk Standard Time": "Russia TZ 8",
    "Vladivostok Standard Time": "Russia TZ 9",
    "Russia Time Zone 10": "Russia TZ 10",
    "Russia Time Zone 11": "Russia TZ 11",
}
UTC_NAME = "Coordinated Universal Time"


def windows_names(windows_id: str) -> tuple[str, str]:
    """(StandardName, DaylightName) of a Windows zone as WinPR sends them."""
    if windows_id == "UTC":
        return UTC_NAME, UTC_NAME
    stem = NAMES.get(windows_id)
    if stem is not None:
        return f"{stem} Standard Time", f"{stem} Daylight Time"
    return windows_id, windows_id.replace("Standard", "Daylight")


SIZE = 172  # Bias, StandardName, StandardDate, StandardBias, DaylightName, DaylightDate, Bias


def zone(name: str | None) -> tzinfo | None:
    """The zone for an IANA name (None if unknown)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_zone_name() -> str:
    """The system's IANA zone (guacd's process time zone when nothing else is given)."""
    try:
        return get_localzone_name() or "UTC"
    except Exception:  # tzlocal raises its own errors for odd configurations
        return "UTC"


def _name(text: str) -> bytes:
    """A 64-byte name field: UTF-16, at most 31 characters and a NUL."""
    return text.encode("utf-16-le")[:62].ljust(64, b"\0")


def _minutes(delta: timedelta | None) -> int:
    return int((delta or timedelta()).total_seconds() // 60)


def _system_time(local: datetime) -> bytes:
    """TS_SYSTEMTIME of a recurring transition: wYear 0, the month, the weekday
    (0 = Sunday) and its occurrence in the month (5 = the last), the local time."""
    days = calendar.monthrange(local.year, local.month)[1]
    week = 5 if local.day + 7 > days else (local.day - 1) // 7 + 1
    weekday = (local.weekday() + 1) % 7
    return struct.pack("<8H", 0, local.month, weekday, week, local.hour, local.minute, 0, 0)


def _transitions(tz: tzinfo, year: int) -> list[tuple[datetime, timedelta, timedelta]]:
    """(instant in UTC, offset before, offset after) of each offset change in ``year``."""
    found = []
    start = datetime(year, 1, 1, tzinfo=UTC)
    step = timedelta(days=1)
    before = start.astimezone(tz).utcoffset()
    t = start
    while t.year == year:
        after = (t + step).astimezone(tz).utcoffset()
        if after != before:
            lo, hi = t, t + step  # the change lies in (lo, hi]: narrow it to the minute
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == before:
                    lo = mid
                else:
                    hi = mid
            assert before is not None and after is not None
            found.append((hi, before, after))
            before = after
        t += step
    return found


def time_zone_information(name: str, now: datetime | None = None) -> bytes:
    """TS_TIME_ZONE_INFORMATION for IANA zone ``name`` as WinPR builds it."""
    now = now or datetime.now(UTC)
    tz = zone(name)
    windows = tz_win.get(name) if tz is not None else None
    if tz is None or windows is None:
        offset = now.astimezone(tz).utcoffset() if tz is not None else timedelta()
        return (
            struct.pack("<i", -_minutes(offset))
            + _name(FALLBACK_NAME) + bytes(16) + struct.pack("<i", 0)
            + _name(FALLBACK_NAME) + bytes(16) + struct.pack("<i", 0)
        )  # fmt: skip
    changes = _transitions(tz, now.year)
    standard_date = daylight_date = bytes(16)
    daylight_bias = 0
    standard = now.astimezone(tz).utcoffset() or timedelta()
    for instant, before, after in changes:
        if after > before:  # into daylight time: the local (standard) time it happens
            daylight_date = _system_time((instant + before).replace(tzinfo=None))
            standard, daylight_bias = before, -_minutes(after - before)
        else:  # back to standard time: the local (daylight) time it happens
            standard_date = _system_time((instant + before).replace(tzinfo=None))
            standard = after
    if not changes:
        standard = now.astimezone(tz).utcoffset() or timedelta()
    standard_name, daylight_name = windows_names(windows)
    return (
        struct.pack("<i", -_minutes(standard))
        + _name(standard_name) + standard_date + struct.pack("<i", 0)
        + _name(daylight_name) + daylight_date + struct.pack("<i", daylight_bias)
    )  # fmt: skip
