"""One Raven selection table for the whole season, so Raven opens it as a file sequence.

``season.list.txt`` lists the recordings (absolute paths, one a line: a Raven list file, opened
as a file sequence), by site, then start time, then name; ``season.selections.txt`` holds
every detection of them, with the columns Raven gives selections in a file sequence:

- ``Begin Time (s)``/``End Time (s)``: seconds from the start of the *sequence*, i.e. the
  durations of the recordings before this one in the list plus the seconds into its own file
  (durations from ``detections.jsonl``: audio read plus its gaps, to the millisecond);
- ``Begin Path``: the recording's absolute path; ``File Offset (s)``: seconds from the start
  of that file (the detection's ``start_seconds``); ``Begin File``: its file name;
- ``Begin Date`` (``YYYY/MM/DD``) and ``Begin Clock Time`` (``HH:MM:SS.sss``), UTC, empty when
  the recording's start is unknown;

then the per-recording tables' own columns (annotation = the label, score, UTC times, model)
and the analyst's ``Verdict`` (:mod:`detector.season.validated`), site and recording.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from detector.core.band import UPCALL_HIGH_HZ, UPCALL_LOW_HZ
from detector.core.stamps import parse_utc
from detector.outputs import raven
from detector.outputs.raven import VIEW, tsv_line
from detector.season.presence import Result
from detector.season.validated import Verdicts

SEASON_TABLE_NAME = "season.selections.txt"
SEASON_LIST_NAME = "season.list.txt"
COLUMNS = (*raven.COLUMNS, "Begin Path", "File Offset (s)", "Begin File", "Begin Date",
           "Begin Clock Time", "Annotation", "Score", "Verdict", "Begin UTC", "End UTC",
           "Peak UTC", "Model", "Site", "Recording")


def file_seconds(result: Result) -> float:
    """The recording's length: the audio read plus the gaps in it."""
    gaps = sum(float(g.get("end_seconds", 0.0)) - float(g.get("start_seconds", 0.0))
               for g in result.gaps if g.get("start_seconds") is not None)
    return float(result.doc.get("audio_seconds") or 0.0) + gaps


def sequence(results: Sequence[Result]) -> list[Result]:
    """The recordings in sequence order: site, start (unknown starts last), name."""
    return sorted(results, key=lambda r: (r.site, not r.doc.get("origin_utc"),
                                          str(r.doc.get("origin_utc") or ""),
                                          str(r.doc.get("recording") or r.doc.get("path"))))


def clock(text: str) -> tuple[str, str]:
    """``Begin Date`` and ``Begin Clock Time`` of an ISO UTC time; empty when unknown."""
    if not text:
        return "", ""
    when = parse_utc(text)
    return when.strftime("%Y/%m/%d"), when.strftime("%H:%M:%S.%f")[:-3]


def season_rows(results: Sequence[Result], verdicts: Verdicts) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    offset = 0.0  # seconds of the sequence before the recording
    for r in sequence(results):
        path = str(r.doc.get("path") or "")
        found = sorted(r.detections, key=lambda d: (float(d["start_seconds"]), d["channel"]))
        for d in found:
            start, end = float(d["start_seconds"]), float(d["end_seconds"])
            rows.append((len(rows) + 1, VIEW, d["channel"], f"{offset + start:.3f}",
                         f"{offset + end:.3f}", UPCALL_LOW_HZ, UPCALL_HIGH_HZ, path,
                         f"{start:.3f}", Path(path).name,
                         *clock(str(d.get("start_utc") or "")), d.get("label") or "",
                         f"{float(d['peak_score']):.4f}", verdicts.of(r, d),
                         d.get("start_utc") or "", d.get("end_utc") or "",
                         d.get("peak_utc") or "", d.get("model") or "", r.site,
                         r.doc.get("recording") or ""))
        offset += file_seconds(r)
    return rows


def write_season_raven(out_dir: Path, results: Sequence[Result], verdicts: Verdicts) -> None:
    """The table and the list file, each staged then renamed."""
    listed = "".join(f"{r.doc.get('path')}\n" for r in sequence(results))
    table = tsv_line(COLUMNS) + "".join(tsv_line(row) for row in season_rows(results, verdicts))
    for name, text in ((SEASON_LIST_NAME, listed), (SEASON_TABLE_NAME, table)):
        staged = out_dir / (name + ".tmp")
        staged.write_text(text)
        os.replace(staged, out_dir / name)
