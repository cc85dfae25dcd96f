"""What a season of ``detect`` output adds up to: a CSV of detections and presence tables.

Read from ``detections.jsonl`` (each recording's latest result), rewritten whole at the end of
every ``whaled detect`` and ``whaled events`` run (:func:`detector.season.tables.write_season`), so
they always agree with it:

- ``detections.csv``: one row per detection, with a header: recording, its path, site,
  channel, label, UTC start/end/peak, seconds from the recording's start, peak score, model,
  thresholds, the analyst's verdict. Spreadsheets and R/pandas read it as is.
- ``presence_hourly.csv``: per site, channel and UTC hour with audio: minutes of audio
  analysed and detections (counted in the hour their start falls in). An hour with audio and no
  detection is a row with 0; an hour without audio has no row.
- ``presence_daily.csv``: the same per UTC day, with the hours that had audio and the hours
  that had a detection (the "presence hours" of monitoring reports).
- ``presence_daily.png``: days across, hours of the day up, colour = detections, grey hatch =
  no audio; each site and channel over its own dates, by day or week when the span is long
  (:mod:`detector.season.chart`).

A site is the folder a recording was found in below the scanned folder (``north/day.wav`` ->
``north``; a recording at the top: the name of its folder). Audio analysed is the time
covered: the recordings' spans less their gaps, each moment once, so recordings of one site
and channel that overlap (a WAV and its FLAC copy) count their shared time once, their shared
calls once, and are named in one warning line. Recordings with no known start cannot be
placed in hours and are counted apart.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from detector.core.progress import counted
from detector.core.stamps import parse_utc
from detector.outputs.sinks import JSONL_NAME

CSV_NAME = "detections.csv"
HOURLY_NAME = "presence_hourly.csv"
DAILY_NAME = "presence_daily.csv"
PNG_NAME = "presence_daily.png"
SECONDS_PER_HOUR = 3600
SECONDS_PER_MINUTE = 60
OVERLAPS_SHOWN = 3  # pairs of overlapping recordings named in the warning
HOURLY_COLUMNS = ("site", "channel", "hour_utc", "audio_minutes", "detections")
DAILY_COLUMNS = ("site", "channel", "date_utc", "audio_minutes", "hours_with_audio",
                 "detections", "hours_with_detections")


@dataclass(frozen=True)
class Result:
    """One recording's latest result in ``detections.jsonl``."""

    doc: dict[str, Any]  # its "recording" line
    detections: tuple[dict[str, Any], ...]
    gaps: tuple[dict[str, Any], ...]

    @property
    def site(self) -> str:
        return site_of(str(self.doc.get("recording") or ""), str(self.doc.get("path") or ""))


@dataclass
class Totals:
    """Everything in an output folder, over every run that wrote it."""

    recordings: int = 0
    complete: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    detections: int = 0
    unstamped: int = 0  # no known start: left out of the presence tables


@dataclass
class Cell:
    audio_seconds: float = 0.0
    detections: int = 0


@dataclass(frozen=True)
class Overlap:
    """Two recordings of one site and channel covering the same time (a WAV and its FLAC
    copy, a re-cut file): counted once in the presence tables."""

    first: str
    second: str
    seconds: float


@dataclass
class Presence:
    """(site, channel) -> UTC hour -> audio and detections."""

    hours: dict[tuple[str, int], dict[datetime, Cell]] = field(default_factory=dict)
    overlaps: list[Overlap] = field(default_factory=list)  # pairs of recordings, once each

    def cell(self, site: str, channel: int, hour: datetime) -> Cell:
        return self.hours.setdefault((site, channel), {}).setdefault(hour, Cell())


def site_of(recording: str, path: str = "") -> str:
    """The folder below the scanned one (``north/day.wav`` -> ``north``); for a recording at
    the top, the name of the folder it is in (``/data/dclde2013/x.wav`` -> ``dclde2013``)."""
    folder = PurePosixPath(recording).parent.as_posix()
    if folder != ".":
        return folder
    return Path(path).parent.name or "."


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, one per line; a torn line (a crash mid-write)
    is skipped and a missing file is empty."""
    try:
        with path.open() as handle:
            for line in handle:
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(doc, dict):
                    yield doc
    except FileNotFoundError:
        return


def read_results(out_dir: Path) -> list[Result]:
    """The latest result of each recording, in the order they were written."""
    latest: dict[str, Result] = {}
    detections: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    for doc in json_lines(out_dir / JSONL_NAME):
        kind = doc.get("type")
        if kind == "detection":
            detections.append(doc)
        elif kind == "gap":
            gaps.append(doc)
        elif kind == "recording" and "path" in doc:
            latest.pop(str(doc["path"]), None)  # keep the order of the latest
            latest[str(doc["path"])] = Result(doc, tuple(detections), tuple(gaps))
            detections, gaps = [], []
    return list(latest.values())


def totals(results: Iterable[Result]) -> Totals:
    t = Totals()
    for r in results:
        t.recordings += 1
        t.complete += r.doc.get("status") == "complete"
        t.failed += r.doc.get("status") == "failed"
        t.audio_seconds += float(r.doc.get("audio_seconds") or 0.0)
        t.detections += len(r.detections)
        t.unstamped += not r.doc.get("origin_utc")
    return t


def covered(result: Result) -> list[tuple[float, float]]:
    """Seconds from the recording's start that were analysed: its span less its gaps."""
    spans = sorted((float(g["start_seconds"]), float(g["end_seconds"])) for g in result.gaps
                   if g.get("start_seconds") is not None)
    end = float(result.doc.get("audio_seconds") or 0.0) + sum(b - a for a, b in spans)
    pieces, at = [], 0.0
    for start, stop in spans:
        if start > at:
            pieces.append((at, min(start, end)))
        at = max(at, stop)
    if end > at:
        pieces.append((at, end))
    return [(a, b) for a, b in pieces if b > a]


def hour_of(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


Span = tuple[datetime, datetime, str]  # UTC start, end, the recording's key


def union(spans: list[Span]) -> tuple[list[tuple[datetime, datetime]], dict[
        tuple[str, str], float]]:
    """The time the spans cover, each moment once; seconds shared per pair of recordings."""
    merged: list[tuple[datetime, datetime]] = []
    shared: dict[tuple[str, str], float] = defaultdict(float)
    reach: dict[str, datetime] = {}  # of the merged run being built: each recording's end
    for start, end, key in sorted(spans):
        if merged and start <= merged[-1][1]:
            for other, other_end in reach.items():
                if other != key and other_end > start:
                    pair = (min(other, key), max(other, key))
                    shared[pair] += (min(end, other_end) - start).total_seconds()
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
            reach = {}
        reach[key] = max(reach.get(key, end), end)
    return merged, dict(shared)


def add_audio(table: Presence, site: str, channel: int, start: datetime, end: datetime) -> None:
    at = start
    while at < end:
        next_hour = hour_of(at) + timedelta(hours=1)
        table.cell(site, channel, hour_of(at)).audio_seconds += \
            (min(end, next_hour) - at).total_seconds()
        at = next_hour


def count_detections(table: Presence, site: str, channel: int, found: list[Span]) -> None:
    """Each detection in the hour its start falls in; one that overlaps a detection counted
    from another recording of the same site and channel is that call again, not a second."""
    active: list[Span] = []  # counted detections that may still overlap later ones
    for start, end, key in sorted(found):
        active = [a for a in active if a[1] >= start]
        if any(k != key for _, _, k in active):
            continue
        active.append((start, end, key))
        table.cell(site, channel, hour_of(start)).detections += 1


def presence(results: Iterable[Result]) -> Presence:
    """Audio counted as the time covered: recordings of one site and channel that overlap
    (a WAV and its FLAC copy) add their shared time once, and are listed in ``overlaps``."""
    table = Presence()
    audio: dict[tuple[str, int], list[Span]] = defaultdict(list)
    found: dict[tuple[str, int], list[Span]] = defaultdict(list)
    for r in results:
        origin_text = r.doc.get("origin_utc")
        if not origin_text:
            continue
        origin = parse_utc(str(origin_text))
        key = str(r.doc.get("recording") or r.doc.get("path") or "")
        for first, last in covered(r):
            for channel in (int(c) for c in r.doc.get("channels") or []):
                audio[(r.site, channel)].append((origin + timedelta(seconds=first),
                                                 origin + timedelta(seconds=last), key))
        for d in r.detections:
            if d.get("start_utc"):
                begin = parse_utc(str(d["start_utc"]))
                finish = parse_utc(str(d.get("end_utc") or d["start_utc"]))
                found[(r.site, int(d["channel"]))].append((begin, max(begin, finish), key))
    shared: dict[tuple[str, str], float] = {}
    for (site, channel), spans in sorted(audio.items()):
        merged, pairs = union(spans)
        for start, end in merged:
            add_audio(table, site, channel, start, end)
        for pair, seconds in pairs.items():
            shared[pair] = max(shared.get(pair, 0.0), seconds)
    for (site, channel), spans in sorted(found.items()):
        count_detections(table, site, channel, spans)
    table.overlaps = [Overlap(a, b, s) for (a, b), s in sorted(shared.items())]
    return table


def overlap_line(overlaps: list[Overlap]) -> str:
    """One line naming the recordings that overlap (the first ``OVERLAPS_SHOWN`` pairs)."""
    shown = ", ".join(f"{o.first} and {o.second} ({o.seconds:.0f} s)"
                      for o in overlaps[:OVERLAPS_SHOWN])
    more = f" and {len(overlaps) - OVERLAPS_SHOWN} more" * (len(overlaps) > OVERLAPS_SHOWN)
    return (f"{counted(len(overlaps), 'pair')} of recordings of the same site and channel "
            f"overlap in time, counted once in the presence tables: {shown}{more}")


def hourly_rows(table: Presence) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for (site, channel), hours in sorted(table.hours.items()):
        for hour, cell in sorted(hours.items()):
            rows.append((site, channel, hour.strftime("%Y-%m-%dT%H:00Z"),
                         round(cell.audio_seconds / SECONDS_PER_MINUTE, 3), cell.detections))
    return rows


def daily_cells(hours: dict[datetime, Cell]) -> dict[date, list[Cell]]:
    days: dict[date, list[Cell]] = defaultdict(list)
    for hour, cell in hours.items():
        days[hour.date()].append(cell)
    return days


def daily_rows(table: Presence) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for (site, channel), hours in sorted(table.hours.items()):
        for day, cells in sorted(daily_cells(hours).items()):
            rows.append((site, channel, day.isoformat(),
                         round(sum(c.audio_seconds for c in cells) / SECONDS_PER_MINUTE, 3),
                         sum(c.audio_seconds > 0 for c in cells),
                         sum(c.detections for c in cells),
                         sum(c.detections > 0 for c in cells)))
    return rows


def write_csv(path: Path, columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """Staged then renamed: a reader sees the old table or the new one, never half."""
    staged = path.with_name(path.name + ".tmp")
    with staged.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    os.replace(staged, path)


def totals_lines(t: Totals | None, scanned: int) -> list[str]:
    """The output folder over every run, when earlier runs wrote part of it."""
    if t is None or t.recordings <= scanned:
        return []
    from detector.core.progress import counted

    return [f"in all runs: {counted(t.recordings, 'recording')} ({t.complete} complete, "
            f"{t.failed} failed), {t.audio_seconds / SECONDS_PER_HOUR:.3f} h of audio, "
            f"{counted(t.detections, 'detection')}"]
