"""Labelled audio read for training and evaluation, from the layouts of
:mod:`detector.annotations.layouts`.

Everything is read with soundfile, one channel (the first, or for a long recording each
channel its Raven tables annotate, from their ``Channel`` column) resampled to the model's
rate by :class:`detector.stream.resample.Resampler`, the filter the pipeline serves the model
with. Unreadable files are skipped and listed, never fatal, until nothing is left.
A recording can be cut at ``holdout_after_seconds``: audio after it is never read into the
data set, so it stays a test span that training never saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from detector.annotations.layouts import (
    DatasetError,
    Layout,
    annotated_channels,
    audio_in,
    detect_layout,
    labelled_clips,
    read_selections,
    recordings_with_tables,
)
from detector.annotations.reviewed import UNSURE, UPCALL, VERDICTS, ReviewedLabel
from detector.annotations.reviewed_match import ReviewedMatch, match_reviewed
from detector.core.errors import WhaledError
from detector.core.intervals import Interval
from detector.core.stamps import parse_utc
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.stream.resample import SIGNAL_CHUNK_FRAMES, Resampler
from detector.train.examples import (
    CROP_MARGIN_SECONDS,
    SKIPPED_NAMES_SHOWN,
    Dataset,
    Example,
    Recording,
    cut,
    cut_recording,
    reviewed_summary,
    split_clips,
)

PAD_EDGE_FRACTION = 0.1  # of a short clip at each end, whose level its padding takes


@dataclass(frozen=True)
class LoadOptions:
    positive_label: str = "upcall"
    validation_fraction: float = 0.2  # last part of each recording (or of the clips by name)
    holdout_after_seconds: float | None = None  # long recordings: never read past this time
    reviewed_dirs: tuple[Path, ...] = ()  # more places for X.reviewed.selections.txt tables
    reviewed_match: ReviewedMatch | None = None  # those tables matched to every recording read


class AudioError(WhaledError):
    pass


def read_audio(path: Path, channel: int = 1) -> np.ndarray:
    """1-based ``channel`` of ``path`` at the model's rate; :class:`AudioError` when
    unreadable or without that channel. Decoded and resampled a chunk at a time, so memory
    holds the result at the model's rate, never the whole file at its own (a 15-minute
    96 kHz recording: 7 MB, not 350)."""
    try:
        with soundfile.SoundFile(str(path)) as file:
            if file.frames == 0:
                raise AudioError("no samples")
            if not 1 <= channel <= file.channels:
                raise AudioError(f"annotated on channel {channel}, but it has {file.channels} "
                                 "channel(s)")
            resampler = Resampler(int(file.samplerate), SAMPLE_RATE_HZ, 1)
            parts = []
            while len(block := file.read(SIGNAL_CHUNK_FRAMES, dtype="float32",
                                         always_2d=True)):
                parts.append(resampler.push(block[:, channel - 1:channel]))
            parts.append(resampler.flush())
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError, TypeError) as error:
        raise AudioError(str(error).splitlines()[0] if str(error) else repr(error)) from None
    audio = np.concatenate(parts)[:, 0]
    if not np.all(np.isfinite(audio)):
        raise AudioError("non-finite samples")
    return audio


def fit_window(audio: np.ndarray) -> np.ndarray:
    """A clip shorter than a window, centred in one padded with noise: seeded white noise at
    the RMS of the clip's edges (its first and last ``PAD_EDGE_FRACTION``, background more
    than call), so the window has no silent edge and holds the call once. (It used to wrap:
    a 0.5-s positive became a window holding its call four times.)"""
    if len(audio) >= WINDOW_SAMPLES:
        return audio
    edge = max(1, int(len(audio) * PAD_EDGE_FRACTION))
    edges = np.concatenate([audio[:edge], audio[-edge:]]) if len(audio) else np.zeros(1)
    level = float(np.sqrt(np.mean(np.square(edges, dtype=np.float64))))
    out = np.random.default_rng(len(audio)).standard_normal(WINDOW_SAMPLES) * level
    at = (WINDOW_SAMPLES - len(audio)) // 2
    out[at:at + len(audio)] = audio
    return out.astype(np.float32)


def load_dataset(data_dir: Path, options: LoadOptions = LoadOptions(),
                 noise: Iterable[Path] = ()) -> Dataset:
    """Read ``data_dir`` (layout detected) and any noise-only recordings, split for validation."""
    return load_folders([Path(data_dir)], options, noise)


def load_folders(data_dirs: Sequence[Path], options: LoadOptions = LoadOptions(),
                 noise: Iterable[Path] = ()) -> Dataset:
    """Every folder of ``data_dirs`` read as :func:`load_dataset` reads one (each recording
    split by time, clips by name order, folder by folder), and the noise recordings once."""
    train: list[Example] = []
    val: list[Example] = []
    skipped: list[str] = []
    splits, kinds = [], []
    for data_dir in map(Path, data_dirs):
        layout = detect_layout(data_dir)
        if layout is Layout.RAVEN:
            t, v, s, split = load_recordings(recordings_with_tables(data_dir), options)
        else:
            t, v, s, split = load_clip_folder(data_dir, layout, options)
        train, val, skipped = train + t, val + v, skipped + s
        splits.append(split if len(data_dirs) == 1 else f"{data_dir}: {split}")
        kinds += [str(layout)] if str(layout) not in kinds else []
    split = "; ".join(splits)
    noise_files = audio_in(noise)
    if noise_files:
        extra: list[tuple[Path, list[Path]]] = [(f, []) for f in noise_files]
        n_train, n_val, n_skipped, n_split = load_recordings(extra, options, noise_only=True)
        train, val, skipped = train + n_train, val + n_val, skipped + n_skipped
        split += f"; noise recordings: {n_split}"
    dataset = Dataset("+".join(kinds), tuple(train), tuple(val), tuple(skipped), split)
    check_usable(dataset, ", ".join(str(d) for d in data_dirs))
    return dataset


def load_clip_folder(data_dir: Path, layout: Layout, options: LoadOptions
                     ) -> tuple[list[Example], list[Example], list[str], str]:
    """A folder of clips, split by name order; an evidence folder's reviewed verdicts applied
    (a not-upcall clip is a negative, an unsure one left out)."""
    from detector.review.items import evidence_verdicts

    verdicts = evidence_verdicts(data_dir) if layout is Layout.FOLDERS else {}
    clips, skipped = load_clips(labelled_clips(data_dir, layout, options.positive_label),
                                verdicts)
    train, val, split = split_clips(clips, options.validation_fraction)
    if verdicts:
        count = [sum(v.annotation == a for v, _ in verdicts.values()) for a in VERDICTS]
        split += (f"; reviewed verdicts on {len(verdicts)} evidence clip(s): {count[0]} "
                  f"upcall, {count[1]} not-upcall (negatives), {count[2]} unsure (left out)")
    return train, val, skipped, split


def check_usable(dataset: Dataset, data_dir: Path | str) -> None:
    labels = {e.label for e in dataset.train}
    if not dataset.train or labels != {0, 1}:
        what = "no usable examples" if not dataset.train else \
            f"only {'positive' if labels == {1} else 'negative'} examples"
        skipped = f"; {len(dataset.skipped)} file(s) skipped, first: " \
            f"{', '.join(dataset.skipped[:SKIPPED_NAMES_SHOWN])}" if dataset.skipped else ""
        raise DatasetError(f"{data_dir}: {what} for training{skipped}")


# ---- clips (layouts 1-3) ----

def load_clips(clips: list[tuple[Path, int]],
               verdicts: Mapping[Path, tuple[ReviewedLabel, float]] | None = None
               ) -> tuple[list[Example], list[str]]:
    """The clips as examples. An evidence clip with a verdict from ``whaled review``
    (``verdicts``: clip -> (verdict, recording seconds at its start)) takes the verdict's label
    and box: ``upcall`` a positive around its (corrected) box, ``not-upcall`` a negative
    window centred on the false alarm, ``unsure`` left out."""
    examples, skipped = [], []
    for path, label in clips:
        reviewed = (verdicts or {}).get(path.resolve())
        if reviewed is not None and reviewed[0].annotation == UNSURE:
            continue
        try:
            audio = fit_window(read_audio(path))
        except AudioError as error:
            skipped.append(f"{path.name} ({error})")
            continue
        call = evidence_call(path)
        if reviewed is not None:
            verdict, first_seconds = reviewed
            label = int(verdict.annotation == UPCALL)
            call = (max(verdict.begin_seconds - first_seconds, 0.0),
                    verdict.end_seconds - first_seconds)
            if label == 0:
                examples.append(centred_negative(audio, str(path), call))
                continue
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


def centred_negative(audio: np.ndarray, source: str, span: Interval) -> Example:
    """A negative training window (with its crop margin) centred on ``span`` (s)."""
    length = WINDOW_SAMPLES + round(CROP_MARGIN_SECONDS * SAMPLE_RATE_HZ)
    centre = round((span[0] + span[1]) / 2 * SAMPLE_RATE_HZ)
    first = min(max(0, centre - length // 2), max(0, len(audio) - length))
    return Example(fit_window(audio[first:first + length]), 0, source,
                   first / SAMPLE_RATE_HZ)


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
        clip_start = parse_utc(meta["clip_start_utc"])
        start = (parse_utc(meta["start_utc"]) - clip_start).total_seconds()
        end = (parse_utc(meta["end_utc"]) - clip_start).total_seconds()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not evidence metadata: the clip is used whole
    return (max(start, 0.0), end) if end > start else None


# ---- long recordings with Raven tables (layout 4) ----

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


def read_recordings(recordings: list[tuple[Path, list[Path]]], options: LoadOptions
                    ) -> tuple[list[Recording], list[str]]:
    """The readable recordings, one per channel their tables annotate (channel 1 without
    tables), and "name (reason)" for the rest. Annotations come from their tables with the
    reviewed labels (:mod:`detector.annotations.reviewed`) beside the recording and in
    ``options.reviewed_dirs`` applied (as ``options.reviewed_match`` matched them, when it
    covers these recordings)."""
    from detector.annotations import reviewed as labels

    readable: list[Recording] = []
    skipped: list[str] = []
    match = options.reviewed_match
    try:
        if match is None or any(p not in match.tables for p, _ in recordings):
            match = match_reviewed([p for p, _ in recordings], options.reviewed_dirs)
    except labels.LabelsError as error:
        raise DatasetError(str(error)) from None
    for path, tables in recordings:
        for channel in annotated_channels(tables, options.positive_label):
            try:
                audio = read_audio(path, channel)
            except AudioError as error:
                skipped.append(f"{path.name} ({error})")
                continue
            calls: list[Interval] = []
            others: list[Interval] = []
            for table in tables:
                c, o = read_selections(table, options.positive_label, channel)
                calls, others = calls + c, others + o
            try:
                verdicts = [v for v in match.verdicts_for(path) if v.channel == channel]
            except labels.LabelsError as error:
                raise DatasetError(str(error)) from None
            marks = labels.apply_reviewed(calls, others, verdicts, channel)
            end_seconds = len(audio) / SAMPLE_RATE_HZ
            if options.holdout_after_seconds is not None:
                end_seconds = min(end_seconds, options.holdout_after_seconds)
            up, negative, unsure = (sum(v.annotation == kind for v in verdicts)
                                    for kind in labels.VERDICTS)
            readable.append(Recording(audio, str(path), marks.calls, marks.busy, end_seconds,
                                      marks.negatives, marks.unsure, (up, negative, unsure)))
    return readable, skipped


def long_recordings(data_dirs: Iterable[Path], noise: Iterable[Path]) -> list[Path]:
    """The recordings that training reads reviewed labels for: those with Raven tables in
    ``data_dirs`` (folders of clips have none), and the noise recordings."""
    found = [audio for folder in data_dirs if detect_layout(Path(folder)) is Layout.RAVEN
             for audio, _ in recordings_with_tables(Path(folder))]
    return found + audio_in(noise)


def load_fold_recordings(data_dir: Path, options: LoadOptions, noise: Iterable[Path] = ()
                         ) -> tuple[list[Recording], list[str]]:
    """Long recordings with Raven tables, then noise-only recordings, for time-blocked folds."""
    data_dir = Path(data_dir)
    if detect_layout(data_dir) is not Layout.RAVEN:
        raise DatasetError(f"{data_dir}: time-blocked folds need long recordings with Raven "
                           "tables (X.wav + X*.selections.txt)")
    noise_files = audio_in(noise)
    readable, skipped = read_recordings(
        recordings_with_tables(data_dir) + [(f, []) for f in noise_files], options)
    if not any(r.calls for r in readable):
        raise DatasetError(f"{data_dir}: no readable recording with annotated calls")
    return readable, skipped
