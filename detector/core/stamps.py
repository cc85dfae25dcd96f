"""When a recording started: an ISO 8601 ``--origin``, or a time stamp in its file name.

A file's modification time is never a start: recorders set it when the file closes, so it is
late by the file's length. A name stamp without a zone is taken as UTC (recorders are normally
set to UTC; otherwise give ``--timestamp-pattern`` with ``%z``, or ``--origin``).

Recognised name stamps, first match wins:

- ISO 8601 with a ``T``: ``2009-03-29T12:15:00Z``, ``20090329T121500+0100``, fractions allowed
- ``YYYY-MM-DD_HH-MM-SS`` (``_``, ``T`` or a space between date and time)
- ``YYYYMMDD_HHMMSS`` (``_``, ``-``, ``T`` or nothing between): ``NOPP6_EST_20090329_121500``
- SoundTrap ``NNNN.YYMMDDHHMMSS``: ``5863.180914120000`` is 2018-09-14 12:00:00

``--timestamp-pattern`` takes a ``strptime`` pattern (``%Y %y %m %d %j %H %M %S %f %z``, other
characters literal) searched for in the file name, or in the whole path when it holds a ``/``.
When given, it replaces the built-in stamps.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from detector.core.errors import WhaledError

ZONE = r"(?:Z|[+-]\d{2}:?\d{2})"
NAME_STAMPS: tuple[tuple[re.Pattern[str], str], ...] = (
    # ISO 8601: date and time joined by T, optional fraction and zone
    (re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2}):?(\d{2})(\.\d{1,6})?"
                rf"({ZONE})?(?![\d:])"), "iso"),
    (re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})[_T ](\d{2})-(\d{2})-(\d{2})(?!\d)"), "dashed"),
    (re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})[_T-]?(\d{2})(\d{2})(\d{2})(?!\d)"), "compact"),
    (re.compile(r"(?<!\d)\d+\.(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?!\d)"), "soundtrap"),
)
UNKNOWN_ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)  # stands in for a start nobody knows
PATTERN_DIRECTIVES = {"Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}",
                      "j": r"\d{3}", "H": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}",
                      "f": r"\d{1,6}", "z": ZONE, "%": "%"}


class StampError(WhaledError, ValueError):
    """An origin or timestamp pattern that cannot be used; the message is one line."""


def parse_utc(text: str) -> datetime:
    """The one reading of an ISO 8601 time in whaled: an aware UTC time; an offset is applied,
    none means UTC (never the machine's local time). Raises ValueError for other text."""
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_origin(text: str) -> datetime:
    """A user's ``--origin``: :func:`parse_utc`, or one :class:`StampError` line."""
    try:
        return parse_utc(text)
    except ValueError:
        raise StampError(f"{text!r} is not ISO 8601 (e.g. 2009-03-29T12:15:00Z)") from None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A ``strptime`` pattern as a regular expression that finds it inside a name."""
    parts, i = [], 0
    while i < len(pattern):
        if pattern[i] == "%":
            code = pattern[i + 1:i + 2]
            if code not in PATTERN_DIRECTIVES:
                raise StampError(f"timestamp pattern {pattern!r}: %{code} is not supported "
                                 "(use %Y %y %m %d %j %H %M %S %f %z)")
            parts.append(f"({PATTERN_DIRECTIVES[code]})" if code != "%" else "%")
            i += 2
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    has = set(re.findall(r"%(.)", pattern))
    if not (has & {"Y", "y"} and ({"m", "d"} <= has or "j" in has)):
        raise StampError(f"timestamp pattern {pattern!r} needs a year (%Y or %y) and a day "
                         "(%m and %d, or %j)")
    return re.compile("".join(parts))


def origin_from_pattern(path: Path, pattern: str) -> datetime | None:
    where = path.as_posix() if "/" in pattern else path.name
    match = compile_pattern(pattern).search(where)
    if not match:
        return None
    try:
        when = datetime.strptime(match[0].replace("Z", "+0000"), pattern)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def origin_from_name(path: Path) -> datetime | None:
    """The start stamped in a recording's name, or None."""
    for regex, kind in NAME_STAMPS:
        for match in regex.finditer(path.name):
            when = _stamp_time(match, kind)
            if when is not None:
                return when
    return None


def _stamp_time(match: re.Match[str], kind: str) -> datetime | None:
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if kind == "soundtrap":
        year += 2000
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    if kind == "iso":
        fraction, zone = match[7], match[8]
        if fraction:
            when = when.replace(microsecond=round(float(fraction) * 1e6))
        if zone and zone != "Z":
            when = parse_origin(when.replace(tzinfo=None).isoformat() + zone)
    return when


def recording_origin(path: Path, pattern: str = "") -> datetime | None:
    """``--timestamp-pattern`` when given, else the built-in name stamps; None: no stamp."""
    return origin_from_pattern(path, pattern) if pattern else origin_from_name(path)
