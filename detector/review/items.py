"""What ``whaled review`` shows: the detections of an output folder, their audio and verdicts.

Detections come from ``detections.jsonl`` (``listen`` and ``detect`` both write it). In a
``detect`` output each recording's detections are written just before its ``"recording"``
line, in the same write, so they are tied to that recording's path; ``listen`` detections are
tied to their stream by its name and origin. A detection's number is its place among the
detection lines of the file, so it stays put while a running ``listen`` appends more.

Audio for a detection, first found wins: its evidence clip (``OUT_DIR/evidence``, matched by
peak UTC and channel), else the recording itself (the path ``detect`` recorded, else a file
of that name under ``--audio``), cut on demand. Verdicts live in
``OUT_DIR/review/<recording stem>.reviewed.selections.txt`` (format:
:mod:`detector.annotations.reviewed`):
a row on a detection's span, or one that corrects its box, is that detection's verdict; any
other row is a call the reviewer added.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from detector.annotations.reviewed import SUFFIX, ReviewedLabel, read_reviewed
from detector.core.band import UPCALL_HIGH_HZ, UPCALL_LOW_HZ
from detector.core.errors import WhaledError
from detector.core.stamps import parse_utc
from detector.outputs.sinks import JSONL_NAME, utc_text
from detector.sources.formats import AUDIO_SUFFIXES

log = logging.getLogger("whaled.review")
REVIEW_DIR = "review"  # below OUT_DIR: one reviewed table per recording
EVIDENCE_DIR = "evidence"
MILLISECONDS_PER_SECOND = 1000  # verdicts match detections to the millisecond


class ReviewInputError(WhaledError):
    """The folder cannot be reviewed: missing, or without detections."""


@dataclass(frozen=True)
class AudioRef:
    """Where a detection's audio is: a file, and the recording second its first frame is at."""

    path: Path
    first_seconds: float  # recording seconds at the file's first frame (a clip's start)
    column: int  # 0-based column of the file holding the detection's channel


@dataclass(frozen=True)
class Item:
    """One detection under review."""

    number: int  # k-th detection line of detections.jsonl, from 0
    recording: str  # recording stem: names the reviewed table
    source: str
    channel: int  # 1-based
    label: str
    start_seconds: float  # from the recording's start
    end_seconds: float
    score: float
    start_utc: str  # "" when the recording's start is unknown
    end_utc: str
    model: str
    audio: AudioRef | None

    @property
    def key(self) -> tuple[int, int, int]:
        return self.key_of(self.channel, self.start_seconds, self.end_seconds)

    @staticmethod
    def key_of(channel: int, begin_seconds: float, end_seconds: float) -> tuple[int, int, int]:
        """A selection's identity, to the millisecond as the reviewed tables compare it."""
        return (channel, round(begin_seconds * MILLISECONDS_PER_SECOND),
                round(end_seconds * MILLISECONDS_PER_SECOND))

    def reviewed_label(self, annotation: str, reviewer: str, note: str) -> ReviewedLabel:
        return ReviewedLabel(self.start_seconds, self.end_seconds, annotation,
                             reviewer=reviewer, note=note, channel=self.channel,
                             low_hz=UPCALL_LOW_HZ, high_hz=UPCALL_HIGH_HZ,
                             begin_utc=self.start_utc, score=self.score)

    def utc_at(self, seconds: float) -> str:
        """UTC of ``seconds`` into this detection's recording; "" when its start is unknown."""
        if not self.start_utc:
            return ""
        return utc_text(parse_utc(self.start_utc) + timedelta(seconds=seconds
                                                              - self.start_seconds))


def stream_stem(source: str, start_utc: str, start_seconds: float) -> str:
    """A listen stream's name as its Raven table has it: ``<source>_<origin stamp>``."""
    if source.startswith("file:"):
        return Path(source.removeprefix("file:")).stem
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in source) or "stream"
    if not start_utc:
        return safe
    origin = parse_utc(start_utc) - timedelta(seconds=start_seconds)
    return f"{safe}_{origin:%Y%m%d_%H%M%S}"


def audio_index(paths: Iterable[Path]) -> dict[str, Path]:
    """File name -> path for every recording named by or found under ``--audio``."""
    found: dict[str, Path] = {}
    for given in paths:
        if given.is_dir():
            for path in sorted(given.rglob("*")):
                if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
                    found.setdefault(path.name, path)
        elif given.is_file():
            found.setdefault(given.name, given)
    return found


def evidence_index(out_dir: Path) -> dict[tuple[str, int], tuple[Path, str]]:
    """(peak UTC, channel) -> (clip WAV, clip start UTC) for the evidence clips kept."""
    found: dict[tuple[str, int], tuple[Path, str]] = {}
    for meta_path in sorted((out_dir / EVIDENCE_DIR).rglob("*.json")):
        wav = meta_path.with_suffix(".wav")
        try:
            meta = json.loads(meta_path.read_text())
            key = (str(meta["peak_utc"]), int(meta["channel"]))
            clip_start = str(meta["clip_start_utc"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if wav.is_file():
            found[key] = (wav, clip_start)
    return found


@dataclass(frozen=True)
class AudioLookup:
    """Where audio may be: ``--audio`` paths (and the files under them), evidence clips."""

    given: tuple[Path, ...]
    by_name: dict[str, Path]
    clips: dict[tuple[str, int], tuple[Path, str]]

    @classmethod
    def of(cls, out_dir: Path, audio_paths: Sequence[Path]) -> AudioLookup:
        return cls(tuple(audio_paths), audio_index(audio_paths), evidence_index(out_dir))

    def recording(self, key: str, recorded: Path | None) -> Path | None:
        """The path ``detect`` recorded, else ``--audio DIR/<key>``, else a file so named."""
        if recorded is not None and recorded.is_file():
            return recorded
        for folder in self.given:
            if key and (folder / key).is_file():
                return folder / key
        name = PurePosixPath(key).name if key else (recorded.name if recorded else "")
        return self.by_name.get(name)


def load_items(out_dir: Path, audio_paths: Sequence[Path] = ()) -> list[Item]:
    """Every detection of ``out_dir``; raises ReviewInputError when there are none.

    A recording scanned again by ``detect`` (before its earlier lines are moved out) shows
    once, with its latest result.
    """
    jsonl = out_dir / JSONL_NAME
    if not out_dir.is_dir():
        raise ReviewInputError(f"{out_dir} is not a folder")
    if not jsonl.is_file():
        raise ReviewInputError(f"{out_dir} has no {JSONL_NAME}: not a listen or detect output")
    lookup = AudioLookup.of(out_dir, audio_paths)
    results: dict[str, list[Item]] = {}  # recording path -> its latest result's detections
    waiting: list[tuple[int, dict[str, Any]]] = []  # detections before their recording line
    number = 0
    with jsonl.open() as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line of a crashed writer
            if not isinstance(record, dict):
                continue
            if record.get("type") == "detection":
                waiting.append((number, record))
                number += 1
            elif record.get("type") == "recording":
                path = str(record.get("path") or "")
                results.pop(path, None)
                results[path] = [_item(n, d, record, lookup) for n, d in waiting]
                waiting = []
    items = [item for group in results.values() for item in group]
    items += [_item(n, d, None, lookup) for n, d in waiting]  # listen: tied to its stream
    if not items:
        raise ReviewInputError(f"{jsonl} holds no detections")
    return sorted(items, key=lambda item: item.number)


def _item(number: int, d: dict[str, Any], recording_line: dict[str, Any] | None,
          lookup: AudioLookup) -> Item:
    source, channel = str(d.get("source") or ""), int(d["channel"])
    start_seconds, end_seconds = float(d["start_seconds"]), float(d["end_seconds"])
    start_utc, peak_utc = str(d.get("start_utc") or ""), str(d.get("peak_utc") or "")
    line = recording_line or {}
    key = str(d.get("recording") or line.get("recording") or "")
    recorded = Path(str(line["path"])) if line.get("path") else None
    if key:  # detect: the path below the scanned folder, without its suffix
        recording = str(PurePosixPath(key).with_suffix(""))
    elif recorded is not None:
        recording = recorded.stem
    else:
        recording = stream_stem(source, start_utc, start_seconds)
        key = source.removeprefix("file:") if source.startswith("file:") else ""
    audio: AudioRef | None = None
    clip = lookup.clips.get((peak_utc, channel)) if peak_utc else None
    found = lookup.recording(key, recorded) if (key or recorded) else None
    if clip is not None and start_utc:
        seconds_before = (parse_utc(start_utc) - parse_utc(clip[1])).total_seconds()
        audio = AudioRef(clip[0], start_seconds - seconds_before, 0)
    elif found is not None:
        audio = AudioRef(found, 0.0, channel - 1)
    return Item(number, recording, source, channel, str(d.get("label") or ""), start_seconds,
                end_seconds, float(d["peak_score"]), start_utc,
                str(d.get("end_utc") or ""), str(d.get("model") or ""), audio)


def reviewed_path(out_dir: Path, recording: str) -> Path:
    """``OUT_DIR/review/<recording>.reviewed.selections.txt``; a recording found in a
    subfolder (``north/day``) keeps it, so same-named recordings keep their own tables."""
    return out_dir / REVIEW_DIR / f"{recording}{SUFFIX}"


class StaleDetections(Exception):
    """A verdict for a detection the folder no longer lists under that number."""


def box_json(label: ReviewedLabel) -> dict[str, object]:
    return {"channel": label.channel, "begin_s": label.begin_seconds, "end_s": label.end_seconds,
            "low_hz": label.low_hz, "high_hz": label.high_hz, "annotation": label.annotation,
            "note": label.note, "reviewer": label.reviewer}


def read_verdicts(out_dir: Path, items: Sequence[Item]) -> dict[int, ReviewedLabel]:
    """Detection number -> its latest verdict (:func:`read_reviews`)."""
    return read_reviews(out_dir, items)[0]


def read_reviews(out_dir: Path, items: Sequence[Item]
                 ) -> tuple[dict[int, ReviewedLabel], list[tuple[str, ReviewedLabel]]]:
    """Detection number -> its latest verdict (a corrected box included), and (recording,
    row) for every other row in force: the calls the reviewer added, from the reviewed tables
    on disk. Raises :class:`~detector.annotations.reviewed.LabelsError` for a table that cannot be
    read.
    """
    verdicts: dict[int, ReviewedLabel] = {}
    added: list[tuple[str, ReviewedLabel]] = []
    by_recording: dict[str, dict[tuple[int, int, int], list[int]]] = {}
    for item in items:
        by_recording.setdefault(item.recording, {}).setdefault(item.key, []).append(item.number)
    for recording, by_key in by_recording.items():
        path = reviewed_path(out_dir, recording)
        if not path.is_file():
            continue
        for label in read_reviewed(path):  # superseded and corrected rows already resolved
            span = label.replaces or label.interval
            numbers = by_key.get(Item.key_of(label.channel, *label.interval)) or by_key.get(
                Item.key_of(label.channel, *span), [])
            for number in numbers:
                verdicts[number] = label
            if not numbers:
                added.append((recording, label))
    return verdicts, added


def evidence_verdicts(evidence_dir: Path) -> dict[Path, tuple[ReviewedLabel, float]]:
    """Evidence clip (resolved path) -> (its detection's latest verdict, the recording second
    at the clip's first sample), for the clips of ``OUT_DIR/evidence`` that ``whaled review``
    gave a verdict in ``OUT_DIR/review``; empty for any other folder."""
    out_dir = evidence_dir.parent
    if not ((out_dir / JSONL_NAME).is_file() and (out_dir / REVIEW_DIR).is_dir()):
        return {}
    try:
        items = load_items(out_dir)
    except ReviewInputError:
        return {}
    verdicts = read_verdicts(out_dir, items)
    inside = evidence_dir.resolve()
    return {i.audio.path.resolve(): (verdicts[i.number], i.audio.first_seconds)
            for i in items if i.number in verdicts and i.audio is not None
            and inside in i.audio.path.resolve().parents}
