"""Where labelled audio lies: the four layouts users keep data in, found by looking.

1. Kaggle whale detection challenge: ``train.csv`` (clip name, label) beside ``train/*.aiff``.
2. ICML 2013 whale challenge: clips named ``*_1.aif`` (call) and ``*_0.aif`` (noise).
3. One folder per label (``upcall/``, ``noise/``, ...): the positive folder is configurable.
4. Long recordings with Raven selection tables beside them (``X.wav`` + ``X*.selections.txt``).

Only names and tables are read here; the audio is read by :mod:`detector.annotations.datasets`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from detector.core.errors import WhaledError
from detector.core.intervals import Interval
from detector.outputs import raven
from detector.sources.formats import AUDIO_SUFFIXES


class DatasetError(WhaledError):
    """Data that cannot be used; the message is one line for the operator."""


class Layout(StrEnum):
    KAGGLE = "kaggle"
    ICML = "icml"
    FOLDERS = "folders"
    RAVEN = "raven"
    NOISE = "noise"  # long recordings without annotations, used as negatives only


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


def audio_in(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the audio files in (and under) the folders named."""
    return [f for p in paths for f in (audio_files(p) if p.is_dir() else [p])]


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


# ---- long recordings with Raven tables (layout 4) ----

def read_selections(path: Path, positive: str, channel: int = 1
                    ) -> tuple[list[Interval], list[Interval]]:
    """(positive calls, other annotated sounds) on ``channel`` of a Raven table, as (begin,
    end) seconds (:func:`read_channel_selections`)."""
    return read_channel_selections(path, positive).get(channel, ([], []))


def read_channel_selections(path: Path, positive: str
                            ) -> dict[int, tuple[list[Interval], list[Interval]]]:
    """Channel -> (positive calls, other annotated sounds) as (begin, end) seconds, from a
    Raven table's 1-based ``Channel`` column (a table without one annotates channel 1)."""
    try:
        rows = raven.read_table(path)
    except raven.RavenError as error:
        raise DatasetError(str(error)) from None
    found: dict[int, tuple[list[Interval], list[Interval]]] = {}
    for line, row in rows:
        try:
            interval = raven.span_of(row)
            channel = raven.channel_of(row)
        except ValueError as error:
            raise DatasetError(f"{path}: line {line}: {error}") from None
        calls, others = found.setdefault(channel, ([], []))
        note = (row.get("Annotation") or "").strip().lower()
        (calls if not note or note == positive.lower() else others).append(interval)
    return {c: (sorted(calls), sorted(others)) for c, (calls, others) in sorted(found.items())}


def annotated_channels(tables: Iterable[Path], positive: str) -> tuple[int, ...]:
    """The channels the tables annotate, in order; (1,) when they annotate none."""
    channels = {c for table in tables for c in read_channel_selections(table, positive)}
    return tuple(sorted(channels)) or (1,)


def is_expert_table_of(table: Path, recording: Path) -> bool:
    """``X*.selections.txt`` beside ``X.wav`` (not ``X1.wav``'s, not a reviewed table)."""
    from detector.annotations.reviewed import is_reviewed_table

    stem = recording.stem
    return (table.parent == recording.parent and table.name.startswith(stem)
            and table.name.endswith(".selections.txt") and not is_reviewed_table(table)
            and not table.name[len(stem):][:1].isalnum())


def expert_tables(recording: Path) -> list[Path]:
    """The expert Raven tables of one recording."""
    return sorted(t for t in recording.parent.glob("*.selections.txt")
                  if is_expert_table_of(t, recording))


def recordings_with_tables(data_dir: Path) -> list[tuple[Path, list[Path]]]:
    """Every recording under ``data_dir`` with its expert tables, or with only reviewed labels
    beside it (``X.reviewed.selections.txt``: an analyst's review of a new deployment; its
    tables are then none, and the verdicts are its annotations); the others are left out."""
    from detector.annotations.reviewed import table_name

    tables = sorted(data_dir.rglob("*.selections.txt"))
    pairs = []
    for audio in audio_files(data_dir):
        mine = [t for t in tables if is_expert_table_of(t, audio)]
        if mine or audio.parent / table_name(audio) in tables:
            pairs.append((audio, mine))
    if not pairs:
        raise DatasetError(f"{data_dir}: Raven tables found, but no audio file X.wav beside a "
                           "table named X*.selections.txt")
    return pairs
