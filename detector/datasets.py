"""Labelled audio for training and evaluation, from the four layouts users keep data in.

1. Kaggle whale detection challenge: ``train.csv`` (clip name, label) beside ``train/*.aiff``.
2. ICML 2013 whale challenge: clips named ``*_1.aif`` (call) and ``*_0.aif`` (noise).
3. One folder per label (``upcall/``, ``noise/``, ...): the positive folder is configurable.
4. Long recordings with Raven selection tables beside them (``X.wav`` + ``X*.selections.txt``).

Everything is read with soundfile, mixed down to its first channel and resampled to the
model's rate. Unreadable files are skipped and listed, never fatal, until nothing is left.

The validation split never shuffles clips of one recording: long recordings are split by time
(the last part of each recording), clips by their name order (the challenge clips are named in
time order). A recording can also be cut at ``holdout_after_seconds``: audio after it is never
read into the data set, so it stays a test span that training never saw.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

from detector.errors import WhaledError
from detector.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES

AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".mp3")
POSITIVE_CONTEXT_SECONDS = 2.0  # audio kept either side of a call's centre for random shifts
CROP_MARGIN_SECONDS = 0.5  # extra audio around negative windows for random crops
NEGATIVE_HOP_SECONDS = 1.0  # between negative windows cut from long recordings
GUARD_SECONDS = 1.0  # unannotated time this close to a call is not used as a negative
SKIPPED_NAMES_SHOWN = 5


class DatasetError(WhaledError):
    """Data that cannot be used; the message is one line for the operator."""


class Layout(StrEnum):
    KAGGLE = "kaggle"
    ICML = "icml"
    FOLDERS = "folders"
    RAVEN = "raven"
    NOISE = "noise"  # long recordings without annotations, used as negatives only


@dataclass(frozen=True)
class Example:
    """Audio at the model's rate, at least one window long, with its label and origin."""

    audio: np.ndarray  # float32 samples at SAMPLE_RATE_HZ
    label: int  # 1: the positive label, 0: anything else
    source: str  # the file it came from
    start_seconds: float  # of audio[0] within the source
    call_samples: tuple[int, int] | None = None  # the annotated call within audio, if known


@dataclass(frozen=True)
class LoadOptions:
    positive_label: str = "upcall"
    validation_fraction: float = 0.2  # last part of each recording (or of the clips by name)
    holdout_after_seconds: float | None = None  # long recordings: never read past this time
    reviewed_dirs: tuple[Path, ...] = ()  # more places for X.reviewed.selections.txt tables


@dataclass(frozen=True)
class Dataset:
    layout: str
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    skipped: tuple[str, ...]  # "name (reason)" for each unreadable file
    split: str  # how train and validation were separated, in words

    def summary(self) -> dict[str, object]:
        def count(examples: Sequence[Example], label: int) -> int:
            return sum(1 for e in examples if e.label == label)

        return {
            "layout": self.layout,
            "train_pos": count(self.train, 1), "train_neg": count(self.train, 0),
            "validation_pos": count(self.validation, 1),
            "validation_neg": count(self.validation, 0),
            "skipped": len(self.skipped), "skipped_first": list(self.skipped[:SKIPPED_NAMES_SHOWN]),
            "split": self.split,
        }


class AudioError(WhaledError):
    pass


def resample(audio: np.ndarray, rate_hz: int, target_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    if rate_hz == target_hz:
        return audio.astype(np.float32, copy=False)
    common = gcd(int(rate_hz), int(target_hz))
    out = signal.resample_poly(audio, target_hz // common, int(rate_hz) // common)
    return np.asarray(out, dtype=np.float32)


def read_audio(path: Path) -> np.ndarray:
    """First channel of ``path`` at the model's rate; :class:`AudioError` when unreadable."""
    try:
        data, rate_hz = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError, TypeError) as error:
        raise AudioError(str(error).splitlines()[0] if str(error) else repr(error)) from None
    if data.shape[0] == 0:
        raise AudioError("no samples")
    audio = resample(data[:, 0], int(rate_hz))
    if not np.all(np.isfinite(audio)):
        raise AudioError("non-finite samples")
    return audio


def fit_window(audio: np.ndarray) -> np.ndarray:
    """Clips shorter than a window are padded by reflection (no silent edge)."""
    if len(audio) >= WINDOW_SAMPLES:
        return audio
    return np.pad(audio, (0, WINDOW_SAMPLES - len(audio)), mode="wrap").astype(np.float32)


def natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def detect_layout(data_dir: Path) -> Layout:
    if not data_dir.is_dir():
        raise DatasetError(f"data directory not found: {data_dir}")
    if (data_dir / "train.csv").is_file():
        return Layout.KAGGLE
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    if any(p.name.endswith(".selections.txt") for p in files):
        return Layout.RAVEN
    if any(re.search(r"_[01]\.aiff?$", p.name) for p in files):
        return Layout.ICML
    if any(p.is_dir() and any(audio_files(p)) for p in data_dir.iterdir()):
        return Layout.FOLDERS
    raise DatasetError(
        f"{data_dir}: no known data layout; expected train.csv beside train/*.aiff (Kaggle), "
        "clips named *_1.aif / *_0.aif (ICML 2013), one folder of audio per label, "
        "or recordings with Raven tables beside them (X.wav + X*.selections.txt)")


def audio_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                   and p.is_file()), key=lambda p: natural_key(str(p)))


def load_dataset(data_dir: Path, options: LoadOptions = LoadOptions(),
                 noise: Iterable[Path] = ()) -> Dataset:
    """Read ``data_dir`` (layout detected) and any noise-only recordings, split for validation."""
    data_dir = Path(data_dir)
    layout = detect_layout(data_dir)
    if layout is Layout.RAVEN:
        train, val, skipped, split = load_recordings(recordings_with_tables(data_dir), options)
    else:
        clips, skipped = load_clips(labelled_clips(data_dir, layout, options.positive_label))
        train, val, split = split_clips(clips, options.validation_fraction)
    noise_files = [f for p in noise for f in (audio_files(p) if p.is_dir() else [p])]
    if noise_files:
        extra: list[tuple[Path, list[Path]]] = [(f, []) for f in noise_files]
        n_train, n_val, n_skipped, n_split = load_recordings(extra, options, noise_only=True)
        train, val, skipped = train + n_train, val + n_val, skipped + n_skipped
        split += f"; noise recordings: {n_split}"
    dataset = Dataset(str(layout), tuple(train), tuple(val), tuple(skipped), split)
    check_usable(dataset, data_dir)
    return dataset


def check_usable(dataset: Dataset, data_dir: Path) -> None:
    labels = {e.label for e in dataset.train}
    if not dataset.train or labels != {0, 1}:
        what = "no usable examples" if not dataset.train else \
            f"only {'positive' if labels == {1} else 'negative'} examples"
        skipped = f"; {len(dataset.skipped)} file(s) skipped, first: " \
            f"{', '.join(dataset.skipped[:SKIPPED_NAMES_SHOWN])}" if dataset.skipped else ""
        raise DatasetError(f"{data_dir}: {what} for training{skipped}")


# ---- clips (layouts 1-3) ----

def labelled_clips(data_dir: Path, layout: Layout, positive: str) -> list[tuple[Path, int]]:
    if layout is Layout.KAGGLE:
        return kaggle_clips(data_dir)
    if layout is Layout.ICML:
        return [(p, int(p.stem[-1])) for p in audio_files(data_dir)
                if re.search(r"_[01]$", p.stem)]
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and audio_files(p))
    names = [f.name for f in folders]
    if positive not in names:
        raise DatasetError(f"{data_dir}: no folder named {positive!r} for the positive label "
                           f"(folders: {', '.join(names)}; choose one with --positive)")
    return [(p, int(folder.name == positive)) for folder in folders for p in audio_files(folder)]


def kaggle_clips(data_dir: Path) -> list[tuple[Path, int]]:
    clips = []
    with (data_dir / "train.csv").open(newline="") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or not row[1].strip().isdigit():
                continue  # the header, or a blank line
            clips.append((data_dir / "train" / row[0].strip(), int(row[1])))
    if not clips:
        raise DatasetError(f"{data_dir / 'train.csv'}: no rows of clip name, label (0 or 1)")
    return clips


def load_clips(clips: list[tuple[Path, int]]) -> tuple[list[Example], list[str]]:
    examples, skipped = [], []
    for path, label in clips:
        try:
            audio = fit_window(read_audio(path))
        except AudioError as error:
            skipped.append(f"{path.name} ({error})")
            continue
        call = evidence_call(path)
        if label == 1 and call is not None:  # a reviewed detection: the window around the call
            around = [e for e in cut_recording(audio, str(path), [call], [call],
                                               (0.0, len(audio) / SAMPLE_RATE_HZ), True)
                      if e.label == 1]  # the padding may hold another call: no negatives
            whole = Example(audio, label, str(path), 0.0,
                            (round(call[0] * SAMPLE_RATE_HZ), round(call[1] * SAMPLE_RATE_HZ)))
            examples += around or [whole]
            continue
        examples.append(Example(audio, label, str(path), 0.0))
    return examples, skipped


def evidence_call(clip: Path) -> Interval | None:
    """Where the detection lies within an evidence clip, in seconds from the clip's start,
    from the ``.json`` that ``whaled listen`` writes beside it; None for other clips.

    A clip is the detection with padding either side (12.5 s for a 2.5-s call), so without
    this any 2-s window of it would be taken as the call.
    """
    sidecar = clip.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text())
        clip_start = _utc(meta["clip_start_utc"])
        start = (_utc(meta["start_utc"]) - clip_start).total_seconds()
        end = (_utc(meta["end_utc"]) - clip_start).total_seconds()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not evidence metadata: the clip is used whole
    return (max(start, 0.0), end) if end > start else None


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def split_clips(clips: list[Example], validation_fraction: float
                ) -> tuple[list[Example], list[Example], str]:
    """The last ``validation_fraction`` of each label's clips in name (time) order."""
    train: list[Example] = []
    val: list[Example] = []
    for label in sorted({e.label for e in clips}):
        ordered = sorted((e for e in clips if e.label == label),
                         key=lambda e: natural_key(e.source))
        cut = len(ordered) - round(len(ordered) * validation_fraction)
        train, val = train + ordered[:cut], val + ordered[cut:]
    split = (f"clips in name (time) order, per label: the first {len(train)} train, "
             f"the last {len(val)} validation")
    return train, val, split


# ---- long recordings with Raven tables (layout 4) ----

Interval = tuple[float, float]


def read_selections(path: Path, positive: str) -> tuple[list[Interval], list[Interval]]:
    """(positive calls, other annotated sounds) as (begin, end) seconds from a Raven table."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if rows and ("Begin Time (s)" not in rows[0] or "End Time (s)" not in rows[0]):
        raise DatasetError(f"{path}: not a Raven selection table (no Begin/End Time (s) columns)")
    calls: list[Interval] = []
    others: list[Interval] = []
    for row in rows:
        interval = (float(row["Begin Time (s)"]), float(row["End Time (s)"]))
        note = (row.get("Annotation") or "").strip().lower()
        (calls if not note or note == positive.lower() else others).append(interval)
    return sorted(calls), sorted(others)


def recordings_with_tables(data_dir: Path) -> list[tuple[Path, list[Path]]]:
    from detector.labels import is_reviewed_table

    tables = sorted(t for t in data_dir.rglob("*.selections.txt") if not is_reviewed_table(t))
    pairs = []
    for audio in audio_files(data_dir):
        mine = [t for t in tables if t.parent == audio.parent and t.name.startswith(audio.stem)
                and not t.name[len(audio.stem):][:1].isalnum()]
        if mine:
            pairs.append((audio, mine))
    if not pairs:
        raise DatasetError(f"{data_dir}: Raven tables found, but no audio file X.wav beside a "
                           "table named X*.selections.txt")
    return pairs


def load_recordings(recordings: list[tuple[Path, list[Path]]], options: LoadOptions,
                    noise_only: bool = False
                    ) -> tuple[list[Example], list[Example], list[str], str]:
    train: list[Example] = []
    val: list[Example] = []
    spans = []
    readable, skipped = read_recordings(recordings, options)
    for rec in readable:
        cut_seconds = rec.end_seconds * (1 - options.validation_fraction)
        train += cut(rec, (0.0, cut_seconds), True)
        val += cut(rec, (cut_seconds, rec.end_seconds), False)
        spans.append(f"{Path(rec.source).name} train 0-{cut_seconds:.0f} s, validation "
                     f"{cut_seconds:.0f}-{rec.end_seconds:.0f} s")
    kind = "by time, never shuffled" if not noise_only else "by time"
    return (train, val, skipped,
            f"recordings split {kind}: " + "; ".join(spans) + reviewed_summary(readable))


def reviewed_summary(recordings: Sequence[Recording]) -> str:
    counts = [r.reviewed for r in recordings if any(r.reviewed)]
    if not counts:
        return ""
    up, negative, unsure = (sum(c[i] for c in counts) for i in range(3))
    return (f"; reviewed labels on {len(counts)} recording(s): {up} upcall, {negative} "
            f"not-upcall, {unsure} unsure")


@dataclass(frozen=True)
class Recording:
    """One long recording at the model's rate with its annotations, cut at the holdout."""

    audio: np.ndarray
    source: str
    calls: tuple[Interval, ...]  # positive annotations
    busy: tuple[Interval, ...]  # every annotation (no negatives are taken near one)
    end_seconds: float  # usable audio ends here: the file's end or ``holdout_after_seconds``
    negatives: tuple[Interval, ...] = ()  # reviewed not-upcall: a negative window centred on each
    unsure: tuple[Interval, ...] = ()  # reviewed unsure: in ``busy``, never a positive
    reviewed: tuple[int, int, int] = (0, 0, 0)  # verdicts applied: upcall, not-upcall, unsure


def read_recordings(recordings: list[tuple[Path, list[Path]]], options: LoadOptions
                    ) -> tuple[list[Recording], list[str]]:
    """The readable recordings and "name (reason)" for the rest. Annotations come from their
    tables with the reviewed labels (:mod:`detector.labels`) beside the recording and in
    ``options.reviewed_dirs`` applied."""
    from detector import labels

    readable: list[Recording] = []
    skipped: list[str] = []
    for path, tables in recordings:
        try:
            audio = read_audio(path)
        except AudioError as error:
            skipped.append(f"{path.name} ({error})")
            continue
        calls: list[Interval] = []
        others: list[Interval] = []
        for table in tables:
            c, o = read_selections(table, options.positive_label)
            calls, others = calls + c, others + o
        try:
            verdicts = labels.reviewed_for(path, options.reviewed_dirs)
        except labels.LabelsError as error:
            raise DatasetError(str(error)) from None
        marks = labels.apply_reviewed(calls, others, verdicts)
        end_seconds = len(audio) / SAMPLE_RATE_HZ
        if options.holdout_after_seconds is not None:
            end_seconds = min(end_seconds, options.holdout_after_seconds)
        counts = tuple(sum(v.annotation == kind for v in verdicts) for kind in labels.VERDICTS)
        readable.append(Recording(audio, str(path), marks.calls, marks.busy, end_seconds,
                                  marks.negatives, marks.unsure, (counts[0], counts[1],
                                                                  counts[2])))
    return readable, skipped


def load_fold_recordings(data_dir: Path, options: LoadOptions, noise: Iterable[Path] = ()
                         ) -> tuple[list[Recording], list[str]]:
    """Long recordings with Raven tables, then noise-only recordings, for time-blocked folds."""
    data_dir = Path(data_dir)
    if detect_layout(data_dir) is not Layout.RAVEN:
        raise DatasetError(f"{data_dir}: time-blocked folds need long recordings with Raven "
                           "tables (X.wav + X*.selections.txt)")
    noise_files = [f for p in noise for f in (audio_files(p) if p.is_dir() else [p])]
    readable, skipped = read_recordings(
        recordings_with_tables(data_dir) + [(f, []) for f in noise_files], options)
    if not any(r.calls for r in readable):
        raise DatasetError(f"{data_dir}: no readable recording with annotated calls")
    return readable, skipped


def fold_blocks(end_seconds: float, folds: int) -> list[Interval]:
    """``folds`` contiguous, equal blocks of time from 0 to ``end_seconds``."""
    edges = np.linspace(0.0, end_seconds, folds + 1)
    return [(float(lo), float(hi)) for lo, hi in itertools.pairwise(edges)]


def fold_dataset(recordings: Sequence[Recording], folds: int, fold: int | None) -> Dataset:
    """Training examples from every recording outside its block ``fold`` (of ``folds``
    contiguous blocks); that block's windows are the validation examples. ``fold=None``:
    train on all of each recording, no validation."""
    train: list[Example] = []
    val: list[Example] = []
    for rec in recordings:
        if fold is None:
            train += cut(rec, (0.0, rec.end_seconds), True)
            continue
        lo, hi = fold_blocks(rec.end_seconds, folds)[fold]
        for span in ((0.0, lo), (hi, rec.end_seconds)):
            if span[1] > span[0]:
                train += cut(rec, span, True)
        val += cut(rec, (lo, hi), False)
    split = ("all of each recording up to the holdout" if fold is None else
             f"time-blocked fold {fold + 1} of {folds}: block {fold + 1} of each recording "
             "held out, the other blocks trained on") + reviewed_summary(recordings)
    return Dataset(str(Layout.RAVEN), tuple(train), tuple(val), (), split)


def overlaps(lo: float, hi: float, intervals: Sequence[Interval], guard: float) -> bool:
    return any(lo < end + guard and start - guard < hi for start, end in intervals)


def cut(rec: Recording, span: Interval, for_training: bool) -> list[Example]:
    """:func:`cut_recording` of a recording, its reviewed negatives included."""
    return cut_recording(rec.audio, rec.source, rec.calls, rec.busy, span, for_training,
                         rec.negatives)


def cut_recording(audio: np.ndarray, source: str, calls: Sequence[Interval],
                  busy: Sequence[Interval], span: Interval, for_training: bool,
                  negatives: Sequence[Interval] = ()) -> list[Example]:
    """Positives around each call inside ``span``; negatives from quiet time (guard band), and
    one centred on each confirmed negative (a reviewed not-upcall) clear of every call.

    Training examples keep extra audio for random shifts and crops; validation examples are
    exactly one window (centred on the call for positives).
    """
    rate = SAMPLE_RATE_HZ
    window_seconds = WINDOW_SAMPLES / rate
    context = POSITIVE_CONTEXT_SECONDS if for_training else window_seconds / 2
    lo_span, hi_span = span
    examples = []
    half = max(context, window_seconds / 2)
    for start, end in calls:
        lo = min(max(lo_span, (start + end) / 2 - half), hi_span - 2 * half)
        if lo < lo_span or start < lo or end > lo + 2 * half:
            continue  # the call crosses the span's edge
        a = round(lo * rate)
        call = (int((start - lo) * rate), int((end - lo) * rate))
        examples.append(Example(audio[a:a + int(2 * half * rate)], 1, source, lo, call))
    margin = CROP_MARGIN_SECONDS if for_training else 0.0
    length = window_seconds + margin
    t = lo_span
    while t + length <= hi_span:
        if not overlaps(t, t + length, busy, GUARD_SECONDS):
            a = int(t * rate)
            examples.append(Example(audio[a:a + int(length * rate)], 0, source, t))
        t += NEGATIVE_HOP_SECONDS
    for start, end in negatives:
        lo = (start + end) / 2 - length / 2
        if lo_span <= lo and lo + length <= hi_span and not overlaps(lo, lo + length, busy, 0.0):
            a = int(lo * rate)
            examples.append(Example(audio[a:a + int(length * rate)], 0, source, lo))
    return examples
