"""Per-window scores kept by ``whaled detect --save-scores``, and detections redone from them.

One file per recording, ``OUT/scores/<recording path>.scores.npz`` (``north/day.wav`` ->
``scores/north/day.scores.npz``), plain numpy (read with ``np.load``, no pickle):

- ``scores``: float32 ``(windows, channels, labels)``, exactly what the event tracker saw;
- ``centre_seconds``: float64 ``(windows,)``, each window's centre in seconds from the
  recording's start (its start is ``window_seconds / 2`` earlier);
- ``gap_after``: int64 ``(gaps,)``, how many windows came before each gap;
- ``meta``: a JSON string: recording, path, origin, channels, labels, model hash, the
  thresholds used and the model's defaults, the tracker settings, the gaps, audio seconds.

Scores are float32, not float16: float16 steps 0.0005 near a threshold of 0.7, so windows that
close to a threshold would flip and redone detections would not equal a rescan. float32 costs
4 bytes per window and channel: 58 kB per channel-hour at the default 0.25 s hop, 0.4 % of the
2 kHz 16-bit audio.

:func:`redo` feeds the saved windows through the same :class:`~detector.stream.events.EventTracker`
in the same order as the pipeline (closing events at each gap), so ``whaled events`` at a
threshold gives the detections a rescan at that threshold gives, line for line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from detector.core.errors import WhaledError
from detector.core.stamps import parse_utc
from detector.outputs.sinks import GapRecord, HoldsNothing, Record
from detector.stream.events import Detection, EventTracker, Thresholds, TrackerSettings, hysteresis

if TYPE_CHECKING:
    from detector.stream.pipeline import Pipeline

SCORES_DIR = "scores"
SCORES_SUFFIX = ".scores.npz"
FORMAT_VERSION = 1


class ScoresError(WhaledError):
    """A scores file that cannot be used; one line for the operator."""


@dataclass(frozen=True)
class SavedScores:
    """One recording's windows and everything needed to track events from them again."""

    centre_seconds: np.ndarray  # (windows,) float64, since the recording's start
    scores: np.ndarray  # (windows, channels, labels) float32
    gap_after: np.ndarray  # (gaps,) int64: windows before each gap
    gaps: tuple[GapRecord, ...]
    recording: str  # path below the scanned folder
    path: str  # absolute path of the recording when it was scanned
    source: str
    origin_utc: datetime  # of sample 0 (1970 when origin_from is "none")
    origin_from: str
    channels: tuple[int, ...]
    labels: tuple[str, ...]
    model_hash: str
    thresholds: Thresholds  # used by the scan
    model_thresholds: Thresholds  # the model's defaults
    hop_seconds: float  # between window centres, at the model's rate
    window_seconds: float
    min_duration_seconds: float
    merge_gap_seconds: float
    max_duration_seconds: float
    audio_seconds: float
    error: str
    settings: dict[str, Any]  # the scan's settings that change detections (fingerprint keys)

    def tracker_settings(self, thresholds: Thresholds) -> TrackerSettings:
        return TrackerSettings(thresholds, self.hop_seconds, self.min_duration_seconds,
                               self.merge_gap_seconds, self.max_duration_seconds)


class ScoreRecorder(HoldsNothing):
    """A pipeline score tap and sink: every window's scores, and where the gaps fell."""

    name = "scores"

    def __init__(self) -> None:
        self._centres: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self.windows = 0
        self.gaps: list[tuple[int, GapRecord]] = []

    def tap(self, centres: np.ndarray, scores: np.ndarray) -> None:
        self._centres.append(np.array(centres, np.float64))
        self._scores.append(np.array(scores, np.float32))
        self.windows += len(centres)

    def write(self, record: Record) -> None:
        if isinstance(record, GapRecord):  # the pipeline scores and closes events before it
            self.gaps.append((self.windows, record))

    def arrays(self, channels: int, labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centres = (np.concatenate(self._centres) if self._centres
                   else np.zeros(0, np.float64))
        scores = (np.concatenate(self._scores) if self._scores
                  else np.zeros((0, channels, labels), np.float32))
        return centres, scores, np.array([n for n, _ in self.gaps], np.int64)

    def saved(self, pipeline: Pipeline, settings_doc: dict[str, Any],
              audio_seconds: float) -> SavedScores:
        """What this recorder saw; ``recording``, ``path`` and ``error`` are the caller's."""
        info, meta, s = pipeline.source.info, pipeline.loaded.metadata, pipeline.settings
        centres, scores, gap_after = self.arrays(len(info.channels), len(meta.labels))
        return SavedScores(
            centres, scores, gap_after, tuple(g for _, g in self.gaps), "", "", info.name,
            pipeline.utc_at(0), info.origin_from, tuple(info.channels), tuple(meta.labels),
            pipeline.loaded.content_hash, pipeline.thresholds, meta.thresholds,
            pipeline.hop_samples / meta.sample_rate_hz,
            meta.window_samples / meta.sample_rate_hz, s.min_duration_seconds,
            s.merge_gap_seconds, s.max_duration_seconds, audio_seconds, "", settings_doc)


def scores_name(recording: str) -> str:
    """``north/day.wav`` -> ``scores/north/day.scores.npz``."""
    return (PurePosixPath(SCORES_DIR) / PurePosixPath(recording).with_suffix(SCORES_SUFFIX)
            ).as_posix()


def _gap_doc(gap: GapRecord) -> dict[str, Any]:
    return {"start_utc": gap.start_utc.isoformat(), "end_utc": gap.end_utc.isoformat(),
            "seconds": gap.seconds, "reason": gap.reason, "source": gap.source}


def write_scores(path: Path, saved: SavedScores) -> None:
    """Written as ``*.tmp``, synced, then renamed: a reader never sees half a file."""
    meta = {
        "format_version": FORMAT_VERSION, "recording": saved.recording, "path": saved.path,
        "source": saved.source, "origin_utc": saved.origin_utc.isoformat(),
        "origin_from": saved.origin_from, "channels": list(saved.channels),
        "labels": list(saved.labels), "model": saved.model_hash,
        "on_threshold": saved.thresholds.on, "off_threshold": saved.thresholds.off,
        "model_on_threshold": saved.model_thresholds.on,
        "model_off_threshold": saved.model_thresholds.off,
        "hop_seconds": saved.hop_seconds, "window_seconds": saved.window_seconds,
        "min_duration_seconds": saved.min_duration_seconds,
        "merge_gap_seconds": saved.merge_gap_seconds,
        "max_duration_seconds": saved.max_duration_seconds,
        "audio_seconds": saved.audio_seconds, "error": saved.error,
        "gaps": [_gap_doc(g) for g in saved.gaps], "settings": saved.settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".tmp")
    with staged.open("wb") as handle:
        np.savez_compressed(handle, scores=saved.scores, centre_seconds=saved.centre_seconds,
                            gap_after=saved.gap_after, meta=np.array(json.dumps(meta)))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staged, path)


def read_scores(path: Path) -> SavedScores:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            scores = np.asarray(data["scores"], np.float32)
            centres = np.asarray(data["centre_seconds"], np.float64)
            gap_after = np.asarray(data["gap_after"], np.int64)
        if meta.get("format_version") != FORMAT_VERSION:
            raise ScoresError(f"{path}: scores format {meta.get('format_version')!r}, this "
                              f"whaled reads {FORMAT_VERSION}")
        gaps = tuple(GapRecord(parse_utc(g["start_utc"]),
                               parse_utc(g["end_utc"]), float(g["seconds"]),
                               str(g["reason"]), str(g["source"])) for g in meta["gaps"])
        saved = SavedScores(
            centres, scores, gap_after, gaps, str(meta["recording"]), str(meta["path"]),
            str(meta["source"]), parse_utc(meta["origin_utc"]),
            str(meta["origin_from"]), tuple(int(c) for c in meta["channels"]),
            tuple(str(label) for label in meta["labels"]), str(meta["model"]),
            Thresholds(float(meta["on_threshold"]), float(meta["off_threshold"])),
            Thresholds(float(meta["model_on_threshold"]), float(meta["model_off_threshold"])),
            float(meta["hop_seconds"]), float(meta["window_seconds"]),
            float(meta["min_duration_seconds"]), float(meta["merge_gap_seconds"]),
            float(meta["max_duration_seconds"]), float(meta["audio_seconds"]),
            str(meta["error"]), dict(meta["settings"]))
    except ScoresError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        raise ScoresError(f"{path}: not a whaled scores file ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if scores.ndim != 3 or len(scores) != len(centres) or scores.shape[1] != len(
            saved.channels) or scores.shape[2] != len(saved.labels) or len(gap_after) != len(
            gaps):
        raise ScoresError(f"{path}: arrays disagree with its metadata (scores "
                          f"{scores.shape}, {len(centres)} centres, {len(gaps)} gaps)")
    return saved


def thresholds_from(saved: SavedScores, on: float, off: float | None) -> Thresholds:
    """As ``detect --on-threshold ON [--off-threshold OFF]`` resolves them for this model
    (:func:`detector.stream.events.hysteresis`, the one rule)."""
    return hysteresis(on, saved.model_thresholds, off)


def redo(saved: SavedScores, thresholds: Thresholds) -> list[Record]:
    """Detections and gaps in the order the pipeline emitted them, at ``thresholds``."""
    settings = saved.tracker_settings(thresholds)
    trackers = [[EventTracker(settings, channel, label) for label in saved.labels]
                for channel in saved.channels]
    records: list[Record] = []

    def emit(events: list[Any]) -> None:
        records.extend(Detection.from_event(e, saved.origin_utc, saved.model_hash, thresholds,
                                            saved.source) for e in events)

    def flush() -> None:
        for row in trackers:
            for tracker in row:
                emit(tracker.flush())

    gaps = iter(zip(saved.gap_after.tolist(), saved.gaps, strict=True))
    next_gap = next(gaps, None)
    for i in range(len(saved.centre_seconds) + 1):
        while next_gap is not None and next_gap[0] == i:
            flush()
            records.append(next_gap[1])
            next_gap = next(gaps, None)
        if i == len(saved.centre_seconds):
            break
        centre = float(saved.centre_seconds[i])
        for col, row in enumerate(trackers):
            for j, tracker in enumerate(row):
                emit(tracker.update(centre, float(saved.scores[i, col, j])))
    flush()
    return records


def find_scores(paths: list[Path]) -> list[Path]:
    """Scores files named, or found under folders; ScoresError when there are none."""
    found: list[Path] = []
    for given in paths:
        if given.is_dir():
            found += sorted(given.rglob("*" + SCORES_SUFFIX))
        elif given.is_file():
            found.append(given)
        else:
            raise ScoresError(f"{given}: not found")
    if not found:
        raise ScoresError(f"no *{SCORES_SUFFIX} files in {', '.join(map(str, paths))} "
                          "(write them with whaled detect --save-scores)")
    return found
