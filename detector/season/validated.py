"""Validated presence: the analyst's verdicts carried into the season's tables.

A verdict is the latest row for a detection in ``OUT/review/<recording>.reviewed.selections.txt``
(written by ``whaled review``; format :mod:`detector.annotations.reviewed`), matched as ``whaled
review``
matches it (:mod:`detector.review.items`): the recording's path below the scanned folder
without its suffix, the channel, and begin and end to the millisecond. A detection with no
row is ``unreviewed``.

- ``presence_validated_hourly.csv``: per site, channel and UTC hour with audio: audio
  minutes, detections, how many have a verdict and that fraction, and how many were
  confirmed (``upcall``), rejected (``not-upcall``) or left ``unsure``. Only ``confirmed``
  is analyst-confirmed presence; ``reviewed_fraction`` says how much of the hour's
  detections that rests on (empty when the hour had none).
- ``presence_validated_daily.csv``: the same per UTC day, with the hours with a detection,
  the hours with a confirmed one, and the hours still to review (a detection, none
  confirmed, some unreviewed): the hours that could still turn into presence.

Counting is :mod:`detector.season.presence`'s: a detection in the hour its start falls in, and a
call heard in two overlapping recordings of one site and channel counted once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from detector.annotations.reviewed import NOT_UPCALL, UNSURE, UPCALL, LabelsError, read_reviewed
from detector.core.stamps import parse_utc
from detector.review.items import Item, reviewed_path
from detector.season.presence import (
    SECONDS_PER_MINUTE,
    Cell,
    Presence,
    Result,
    Span,
    count_detections,
)

log = logging.getLogger("whaled.presence")
UNREVIEWED = "unreviewed"
VALIDATED_HOURLY_NAME = "presence_validated_hourly.csv"
VALIDATED_DAILY_NAME = "presence_validated_daily.csv"
FRACTION_DECIMALS = 3
VALIDATED_HOURLY_COLUMNS = ("site", "channel", "hour_utc", "audio_minutes", "detections",
                            "reviewed", "reviewed_fraction", "confirmed", "rejected", "unsure")
VALIDATED_DAILY_COLUMNS = ("site", "channel", "date_utc", "audio_minutes", "hours_with_audio",
                           "detections", "reviewed", "reviewed_fraction", "confirmed",
                           "rejected", "unsure", "hours_with_detections",
                           "hours_with_confirmed", "hours_to_review")

VerdictKey = tuple[str, int, int, int]  # recording (no suffix), channel, begin ms, end ms


def recording_name(doc: dict[str, Any]) -> str:
    """The name ``whaled review`` files a recording's verdicts under: ``north/day`` for
    ``north/day.wav`` (its path below the scanned folder), else the file's stem."""
    key = str(doc.get("recording") or "")
    if key:
        return str(PurePosixPath(key).with_suffix(""))
    return Path(str(doc.get("path") or "")).stem


@dataclass(frozen=True)
class Verdicts:
    """The current verdict on each reviewed detection of an output folder."""

    by_key: dict[VerdictKey, str] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()  # tables that could not be read: one line each

    def of(self, result: Result, detection: dict[str, Any]) -> str:
        """``upcall``, ``not-upcall``, ``unsure`` or ``unreviewed``."""
        try:
            key = Item.key_of(int(detection["channel"]), float(detection["start_seconds"]),
                              float(detection["end_seconds"]))
        except (KeyError, TypeError, ValueError):
            return UNREVIEWED
        return self.by_key.get((recording_name(result.doc), *key), UNREVIEWED)

    def counts(self, results: Iterable[Result]) -> dict[str, int]:
        """Detections per verdict (``unreviewed`` included)."""
        found = dict.fromkeys((UPCALL, NOT_UPCALL, UNSURE, UNREVIEWED), 0)
        for r in results:
            for d in r.detections:
                found[self.of(r, d)] += 1
        return found


def read_verdicts(out_dir: Path, results: Sequence[Result]) -> Verdicts:
    """The verdicts in ``OUT/review`` on the recordings of ``results``; a table that cannot
    be read is logged and left out (its detections stay unreviewed)."""
    by_key: dict[VerdictKey, str] = {}
    unreadable: list[str] = []
    for name in dict.fromkeys(recording_name(r.doc) for r in results):
        path = reviewed_path(out_dir, name)
        if not path.is_file():
            continue
        try:
            labels = read_reviewed(path)  # a later row for the same selection wins
        except LabelsError as error:
            log.warning("verdicts not read: %s", error)
            unreadable.append(str(error))
            continue
        for label in labels:
            by_key[(name, *Item.key_of(label.channel, *label.interval))] = label.annotation
    return Verdicts(by_key, tuple(unreadable))


def detection_spans(results: Iterable[Result], keep: Callable[[Result, dict[str, Any]], bool]
                    ) -> dict[tuple[str, int], list[Span]]:
    """(site, channel) -> the UTC spans of the detections ``keep`` accepts."""
    found: dict[tuple[str, int], list[Span]] = defaultdict(list)
    for r in results:
        key = str(r.doc.get("recording") or r.doc.get("path") or "")
        if not r.doc.get("origin_utc"):
            continue
        for d in r.detections:
            if d.get("start_utc") and keep(r, d):
                begin = parse_utc(str(d["start_utc"]))
                finish = parse_utc(str(d.get("end_utc") or d["start_utc"]))
                found[(r.site, int(d["channel"]))].append((begin, max(begin, finish), key))
    return found


@dataclass(frozen=True)
class Validated:
    """The presence table, and per verdict a table of the detections with that verdict."""

    table: Presence  # audio and every detection
    by_verdict: dict[str, Presence]  # upcall, not-upcall, unsure, and "reviewed" (any)

    def count(self, verdict: str, key: tuple[str, int], hour: datetime) -> int:
        cell = self.by_verdict[verdict].hours.get(key, {}).get(hour)
        return cell.detections if cell else 0

    def confirmed(self) -> Presence:
        return self.by_verdict[UPCALL]


REVIEWED = "reviewed"  # any verdict


def validated_presence(results: Sequence[Result], table: Presence,
                       verdicts: Verdicts) -> Validated:
    """Counts per hour of the detections of each verdict, beside ``table`` (from
    :func:`detector.season.presence.presence` over the same results)."""
    wanted: dict[str, Callable[[str], bool]] = {
        UPCALL: lambda v: v == UPCALL, NOT_UPCALL: lambda v: v == NOT_UPCALL,
        UNSURE: lambda v: v == UNSURE, REVIEWED: lambda v: v != UNREVIEWED}
    by_verdict: dict[str, Presence] = {}
    for name, accept in wanted.items():
        def keep(r: Result, d: dict[str, Any], accept: Callable[[str], bool] = accept) -> bool:
            return accept(verdicts.of(r, d))

        counted = Presence()
        spans = detection_spans(results, keep)
        for (site, channel), found in sorted(spans.items()):
            count_detections(counted, site, channel, found)
        by_verdict[name] = counted
    return Validated(table, by_verdict)


def fraction(part: int, whole: int) -> object:
    return round(min(part, whole) / whole, FRACTION_DECIMALS) if whole else ""


def validated_hourly_rows(v: Validated) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for key, hours in sorted(v.table.hours.items()):
        for hour, cell in sorted(hours.items()):
            reviewed = v.count(REVIEWED, key, hour)
            rows.append((*key, hour.strftime("%Y-%m-%dT%H:00Z"),
                         round(cell.audio_seconds / SECONDS_PER_MINUTE, 3), cell.detections,
                         reviewed, fraction(reviewed, cell.detections),
                         v.count(UPCALL, key, hour), v.count(NOT_UPCALL, key, hour),
                         v.count(UNSURE, key, hour)))
    return rows


def validated_daily_rows(v: Validated) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for key, hours in sorted(v.table.hours.items()):
        by_day: dict[Any, list[tuple[datetime, Cell]]] = defaultdict(list)
        for hour, cell in hours.items():
            by_day[hour.date()].append((hour, cell))
        for day, cells in sorted(by_day.items()):
            totals = {name: sum(v.count(name, key, h) for h, _ in cells)
                      for name in (REVIEWED, UPCALL, NOT_UPCALL, UNSURE)}
            detections = sum(c.detections for _, c in cells)
            to_review = sum(c.detections > v.count(REVIEWED, key, h)
                            and not v.count(UPCALL, key, h) for h, c in cells)
            rows.append((*key, day.isoformat(),
                         round(sum(c.audio_seconds for _, c in cells) / SECONDS_PER_MINUTE, 3),
                         sum(c.audio_seconds > 0 for _, c in cells), detections,
                         totals[REVIEWED], fraction(totals[REVIEWED], detections),
                         totals[UPCALL], totals[NOT_UPCALL], totals[UNSURE],
                         sum(c.detections > 0 for _, c in cells),
                         sum(v.count(UPCALL, key, h) > 0 for h, _ in cells), to_review))
    return rows
