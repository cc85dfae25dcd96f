"""``whaled events``: detections redone from saved scores at another threshold, no rescan.

Each ``*.scores.npz`` (written by ``whaled detect --save-scores``) goes through the same event
tracker as the scan (:func:`detector.saved_scores.redo`), and the result is written exactly as
``whaled detect`` writes one (:class:`~detector.archive_output.ArchiveOutput`): the same
``detections.jsonl`` lines, Raven tables and recording lines, stamped with the settings a
``detect --on-threshold X`` would have. So the output is the one a rescan at that threshold
writes, and a later ``whaled detect --on-threshold X --out`` over it finds it complete.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from detector.archive_output import ArchiveOutput, DetectError, RecordingResult
from detector.config import Settings
from detector.events import Detection
from detector.presence import write_season
from detector.saved_scores import (
    SavedScores,
    ScoresError,
    find_scores,
    read_scores,
    redo,
    thresholds_from,
)

log = logging.getLogger("whaled.events")


@dataclass(frozen=True)
class EventsSummary:
    recordings: int
    audio_seconds: float
    detections: int
    detections_before: int  # what the scans found at their own thresholds


def fingerprint_for(saved: SavedScores, on: float, off: float | None) -> str:
    """The settings fingerprint of the scan, with the thresholds as ``detect`` flags give."""
    from detector.archive import settings_fingerprint

    doc = {**saved.settings, "on_threshold": on, "off_threshold": -1.0 if off is None else off}
    doc["channels"] = tuple(doc.get("channels", ()))
    return settings_fingerprint(replace(Settings(), **doc))


def rethreshold(files: list[Path], on: float, off: float | None,
                out_dir: Path) -> EventsSummary:
    """Every scores file through the tracker at ``on``/``off`` into ``out_dir``."""
    saved_all = [read_scores(path) for path in files]  # all checked before anything is written
    output = ArchiveOutput(out_dir, "", "")
    detections = before = 0
    audio_seconds = 0.0
    try:
        output.check_tables([(Path(s.path), s.recording) for s in saved_all])
        for saved in saved_all:
            records = redo(saved, thresholds_from(saved, on, off))
            output.model_hash = saved.model_hash
            output.fingerprint = fingerprint_for(saved, on, off)
            output.write(RecordingResult(
                saved.path, records, saved.source, saved.origin_utc, saved.origin_from,
                saved.channels, saved.audio_seconds, error=saved.error, key=saved.recording))
            detections += sum(isinstance(r, Detection) for r in records)
            before += sum(isinstance(r, Detection) for r in redo(saved, saved.thresholds))
            audio_seconds += saved.audio_seconds
    finally:
        output.close()
    write_season(out_dir)
    return EventsSummary(len(saved_all), audio_seconds, detections, before)


def run_events_command(paths: list[Path], on: float | None, off: float | None,
                       out_dir: Path | None) -> int:
    """0 when written; 2 with one line when nothing could start."""
    try:
        if out_dir is None:
            raise ScoresError("--out is required: the folder for the redone detections")
        if on is None:
            raise ScoresError("--on-threshold is required: the score that opens a detection")
        if not 0.0 <= on <= 1.0:
            raise ScoresError(f"--on-threshold {on:g} is not between 0 and 1")
        if off is not None and not 0.0 <= off <= on:
            raise ScoresError(f"--off-threshold {off:g} is not between 0 and --on-threshold "
                              f"{on:g}")
        summary = rethreshold(find_scores(paths), on, off, out_dir)
    except (ScoresError, DetectError, OSError) as error:
        print(f"whaled: error: {error}", file=sys.stderr)
        return 2
    print(f"events: {summary.recordings} recordings, {summary.audio_seconds / 3600:.3f} h of "
          f"audio, {summary.detections} detections at on-threshold {on:g} "
          f"({summary.detections_before} at the scans' own thresholds), written to {out_dir}",
          file=sys.stderr)
    return 0
