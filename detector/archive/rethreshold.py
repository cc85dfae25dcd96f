"""``whaled events``: detections redone from saved scores at another threshold, no rescan.

Each ``*.scores.npz`` (written by ``whaled detect --save-scores``) goes through the same event
tracker as the scan (:func:`detector.archive.saved_scores.redo`), and the result is written exactly
as
``whaled detect`` writes one (:class:`~detector.archive.outputs.ArchiveOutput`): the same
``detections.jsonl`` lines, Raven tables and recording lines, stamped with the settings a
``detect --on-threshold X`` would have. So the output is the one a rescan at that threshold
writes, and a later ``whaled detect --on-threshold X --out`` over it finds it complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from detector.archive.outputs import ArchiveOutput, RecordingResult, settings_fingerprint
from detector.archive.saved_scores import SavedScores, read_scores, redo, thresholds_from
from detector.core.config import Settings
from detector.season.tables import write_season
from detector.stream.events import Detection

log = logging.getLogger("whaled.events")


@dataclass(frozen=True)
class EventsSummary:
    recordings: int
    audio_seconds: float
    detections: int
    detections_before: int  # what the scans found at their own thresholds


def fingerprint_for(saved: SavedScores, on: float, off: float | None) -> str:
    """The settings fingerprint of the scan, with the thresholds as ``detect`` flags give."""
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
