"""What ``whaled review`` shows: the detections of an output folder, their audio and verdicts.

Detections come from ``detections.jsonl`` (``listen`` and ``detect`` both write it). In a
``detect`` output each recording's detections are written just before its ``"recording"``
line, in the same write, so they are tied to that recording's path; ``listen`` detections are
tied to their stream by its name and origin. A detection's number is its place among the
detection lines of the file, so it stays put while a running ``listen`` appends more.

Audio for a detection, first found wins: its evidence clip (``OUT_DIR/evidence``, matched by
peak UTC and channel), else the recording itself (the path ``detect`` recorded, else a file
of that name under ``--audio``), cut on demand. Verdicts live in
``OUT_DIR/review/<recording stem>.reviewed.selections.txt`` (format: :mod:`detector.labels`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from detector.labels import SUFFIX, ReviewedLabel, read_reviewed
from detector.sinks import JSONL_NAME, UPCALL_HIGH_HZ, UPCALL_LOW_HZ
from detector.sources import AUDIO_SUFFIXES

log = logging.getLogger("whaled.review")
REVIEW_DIR = "review"  # below OUT_DIR: one reviewed table per recording
EVIDENCE_DIR = "evidence"
MILLISECONDS_PER_SECOND = 1000  # verdicts match detections to the millisecond


class ReviewInputError(Exception):
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
    peak_seconds: float
    score: float
    start_utc: str
    end_utc: str
    model: str
    audio: AudioRef | None

    @property
    def key(self) -> tuple[int, int, int]:
        return _key(self.channel, self.start_seconds, self.end_seconds)

    def reviewed_label(self, annotation: str, reviewer: str, note: str) -> ReviewedLabel:
        return ReviewedLabel(self.start_seconds, self.end_seconds, annotation,
                             reviewer=reviewer, note=note, channel=self.channel,
                             low_hz=UPCALL_LOW_HZ, high_hz=UPCALL_HIGH_HZ,
                             begin_utc=self.start_utc, score=self.score)


def _key(channel: int, begin_seconds: float, end_seconds: float) -> tuple[int, int, int]:
    return (channel, round(begin_seconds * MILLISECONDS_PER_SECOND),
            round(end_seconds * MILLISECONDS_PER_SECOND))


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stream_stem(source: str, origin: datetime) -> str:
    """A listen stream's name as its Raven table has it: ``<source>_<origin stamp>``."""
    if source.startswith("file:"):
        return Path(source[len("file:"):]).stem
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in source)
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


def load_items(out_dir: Path, audio_paths: Sequence[Path] = ()) -> list[Item]:
    """Every detection of ``out_dir``; raises ReviewInputError when there are none."""
    jsonl = out_dir / JSONL_NAME
    if not out_dir.is_dir():
        raise ReviewInputError(f"{out_dir} is not a folder")
    if not jsonl.is_file():
        raise ReviewInputError(f"{out_dir} has no {JSONL_NAME}: not a listen or detect output")
    by_name = audio_index(audio_paths)
    clips = evidence_index(out_dir)
    items: list[Item] = []
    waiting: list[tuple[int, dict[str, object]]] = []  # detections before their recording line
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
                path = Path(str(record.get("path", "")))
                items += [_item(n, d, path, by_name, clips) for n, d in waiting]
                waiting = []
    items += [_item(n, d, None, by_name, clips) for n, d in waiting]  # listen: by stream
    if not items:
        raise ReviewInputError(f"{jsonl} holds no detections")
    return items


def _item(number: int, d: dict[str, object], recording: Path | None,
          by_name: dict[str, Path], clips: dict[tuple[str, int], tuple[Path, str]]) -> Item:
    source, channel = str(d["source"]), int(str(d["channel"]))
    start_seconds = float(str(d["start_seconds"]))
    start_utc = parse_utc(str(d["start_utc"]))
    origin = start_utc - timedelta(seconds=start_seconds)
    name = recording.name if recording else source.removeprefix("file:")
    stem = recording.stem if recording else stream_stem(source, origin)
    audio: AudioRef | None = None
    clip = clips.get((str(d["peak_utc"]), channel))
    if clip is not None:
        clip_first = start_seconds - (start_utc - parse_utc(clip[1])).total_seconds()
        audio = AudioRef(clip[0], clip_first, 0)
    elif recording is not None and recording.is_file():
        audio = AudioRef(recording, 0.0, channel - 1)
    elif name in by_name:
        audio = AudioRef(by_name[name], 0.0, channel - 1)
    return Item(number, stem, source, channel, str(d.get("label", "")), start_seconds,
                float(str(d["end_seconds"])),
                (parse_utc(str(d["peak_utc"])) - origin).total_seconds(),
                float(str(d["peak_score"])), str(d["start_utc"]), str(d["end_utc"]),
                str(d.get("model", "")), audio)


def reviewed_path(out_dir: Path, recording: str) -> Path:
    return out_dir / REVIEW_DIR / f"{recording}{SUFFIX}"


def read_verdicts(out_dir: Path, items: Sequence[Item]) -> dict[int, ReviewedLabel]:
    """Detection number -> its latest verdict, from the reviewed tables on disk.

    Raises :class:`~detector.labels.LabelsError` for a table that cannot be read.
    """
    verdicts: dict[int, ReviewedLabel] = {}
    by_recording: dict[str, dict[tuple[int, int, int], list[int]]] = {}
    for item in items:
        by_recording.setdefault(item.recording, {}).setdefault(item.key, []).append(item.number)
    for recording, by_key in by_recording.items():
        path = reviewed_path(out_dir, recording)
        if not path.is_file():
            continue
        for label in read_reviewed(path):  # superseded rows already resolved
            for number in by_key.get(_key(label.channel, *label.interval), []):
                verdicts[number] = label
    return verdicts
