"""Labelled windows cut from audio at the model's rate, and how they are split for validation.

The validation split never shuffles clips of one recording: long recordings are split by time
(the last part of each recording, or one of several contiguous blocks for folds), clips by
their name order (the challenge clips are named in time order).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.annotations.layouts import Layout, natural_key
from detector.core.intervals import Interval, overlaps_any
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES

POSITIVE_CONTEXT_SECONDS = 2.0  # audio kept either side of a call's centre for random shifts
CROP_MARGIN_SECONDS = 0.5  # extra audio around negative windows for random crops
NEGATIVE_HOP_SECONDS = 1.0  # between negative windows cut from long recordings
GUARD_SECONDS = 1.0  # unannotated time this close to a call is not used as a negative
SKIPPED_NAMES_SHOWN = 5


@dataclass(frozen=True)
class Example:
    """Audio at the model's rate, at least one window long, with its label and origin."""

    audio: np.ndarray  # float32 samples at SAMPLE_RATE_HZ
    label: int  # 1: the positive label, 0: anything else
    source: str  # the file it came from
    start_seconds: float  # of audio[0] within the source
    call_samples: tuple[int, int] | None = None  # the annotated call within audio, if known


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


def split_clips(clips: list[Example], validation_fraction: float
                ) -> tuple[list[Example], list[Example], str]:
    """The last ``validation_fraction`` of each label's clips in name (time) order."""
    train: list[Example] = []
    val: list[Example] = []
    for label in sorted({e.label for e in clips}):
        ordered = sorted((e for e in clips if e.label == label),
                         key=lambda e: natural_key(e.source))
        cut_at = len(ordered) - round(len(ordered) * validation_fraction)
        train, val = train + ordered[:cut_at], val + ordered[cut_at:]
    split = (f"clips in name (time) order, per label: the first {len(train)} train, "
             f"the last {len(val)} validation")
    return train, val, split


def reviewed_summary(recordings: Sequence[Recording]) -> str:
    counts = [r.reviewed for r in recordings if any(r.reviewed)]
    if not counts:
        return ""
    up, negative, unsure = (sum(c[i] for c in counts) for i in range(3))
    return (f"; reviewed labels on {len(counts)} recording(s): {up} upcall, {negative} "
            f"not-upcall, {unsure} unsure")


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
        if not overlaps_any((t, t + length), busy, GUARD_SECONDS):
            a = int(t * rate)
            examples.append(Example(audio[a:a + int(length * rate)], 0, source, t))
        t += NEGATIVE_HOP_SECONDS
    for start, end in negatives:
        lo = (start + end) / 2 - length / 2
        if lo_span <= lo and lo + length <= hi_span and not overlaps_any((lo, lo + length), busy):
            a = int(lo * rate)
            examples.append(Example(audio[a:a + int(length * rate)], 0, source, lo))
    return examples
