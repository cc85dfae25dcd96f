"""Nested selection: what judges a held-out group is chosen without it.

Cross-validation (:mod:`detector.train.crossval`) holds out one group (a day, a recording) at a
time.
A figure reported for that group is honest only if nothing used to produce it came from the
group: not the model's training data, not the augmentation's statistics, and not the
operating threshold. So each outer fold chooses its own on-threshold from **inner folds
inside its training data**: the training recordings are split again (by the same grouping
when they hold two or more groups, else by recording, else into contiguous time blocks), one
inner model per inner split, and the inner out-of-fold events choose the threshold under the
same false-alarm rule the shipped model uses. The held-out group is then scored at that
threshold, as a new deployment would be.

Background recordings (noise only, another site) are grouped as well (by the date in their
names) and dealt to the outer folds in turn: a fold never trains on the background it counts
false alarms on, so those false alarms are out of sample too. An outer fold's own training
background is dealt again to its inner folds, so the false alarms that choose its threshold
are counted on background as well, not on a quarter of an hour of annotated audio alone.

The pooled recall gets a percentile interval from a block bootstrap (calls cluster in time,
so whole minutes of held-out audio are resampled, not single calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from detector.annotations.layouts import Layout
from detector.core.intervals import Interval
from detector.evaluate.measures import RecordingScores, in_span, match_pairs, tracker_events
from detector.stream.events import Thresholds, TrackerSettings
from detector.train.examples import Dataset, Recording, cut, fold_blocks, fold_dataset

INNER_BLOCKS = 2  # a single training recording is split into this many time blocks
BOOTSTRAP_BLOCK_SECONDS = 60.0  # calls cluster in time: resample whole minutes
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_LEVEL = 0.95  # a 95 % percentile interval


@dataclass(frozen=True)
class Split:
    """One model's training data and the spans it is judged on (never trained on)."""

    name: str
    train: Dataset
    held: tuple[tuple[Recording, Interval], ...]

    @property
    def sources(self) -> frozenset[str]:
        """Every recording any training example was cut from."""
        return frozenset(e.source for e in self.train.train)


def training_set(recordings: Sequence[Recording], noise: Sequence[Recording], split: str
                 ) -> Dataset:
    """Every example of ``recordings`` and ``noise``, whole, for training."""
    examples = [e for rec in [*recordings, *noise]
                for e in cut(rec, (0.0, rec.end_seconds), True)]
    return Dataset(str(Layout.RAVEN), tuple(examples), (), (), split)


def group_splits(recordings: Sequence[Recording], noise: Sequence[Recording],
                 group_of: dict[str, str]) -> list[Split]:
    """Leave one group out: train on the other groups' recordings (and ``noise``), judge
    the group's recordings whole. ``group_of`` maps a recording's source to its group."""
    groups = sorted({group_of[r.source] for r in recordings})
    splits = []
    for group in groups:
        held = [r for r in recordings if group_of[r.source] == group]
        rest = [r for r in recordings if group_of[r.source] != group]
        splits.append(Split(group, training_set(rest, noise, f"{group} held out"),
                            tuple((r, (0.0, r.end_seconds)) for r in held)))
    return splits


def block_splits(recordings: Sequence[Recording], noise: Sequence[Recording],
                 blocks: int = INNER_BLOCKS) -> list[Split]:
    """Contiguous time blocks: block k of every recording held out, the rest trained on
    (:func:`detector.train.examples.fold_dataset`), the noise trained on whole."""
    noise_examples = tuple(e for rec in noise for e in cut(rec, (0.0, rec.end_seconds), True))
    splits = []
    for k in range(blocks):
        fold = fold_dataset(recordings, blocks, k)
        name = f"block {k + 1} of {blocks}"
        held = tuple((rec, fold_blocks(rec.end_seconds, blocks)[k]) for rec in recordings)
        splits.append(Split(name, replace(fold, train=noise_examples + fold.train,
                                          validation=(), split=f"{name} held out"), held))
    return splits


def inner_splits(recordings: Sequence[Recording], noise: Sequence[Recording],
                 group_of: dict[str, str]) -> list[Split]:
    """The inner folds of an outer fold's training data: by its groups when there are two
    or more, else by recording, else by time block. Each also holds out its share of the
    background (:func:`with_background`), as the outer folds do."""
    if len({group_of[r.source] for r in recordings}) >= 2:
        splits = group_splits(recordings, noise, group_of)
    elif len(recordings) >= 2:
        splits = group_splits(recordings, noise, {r.source: Path(r.source).name
                                                  for r in recordings})
    else:
        splits = block_splits(recordings, noise)
    return with_background(splits, noise)


def with_background(splits: Sequence[Split], noise: Sequence[Recording]) -> list[Split]:
    """``splits`` that also judge a share of ``noise`` (dealt by :func:`deal_noise`, one
    recording or day each) and do not train on it, so an inner fold counts false alarms on
    background it never heard as well as on its annotated audio (a quarter of an hour of it
    alone makes one false alarm 4 per hour). Unchanged when there is less background than
    splits: every inner model keeps the rest to train on."""
    dealt = deal_noise(noise, [s.name for s in splits], spare=0)
    out = []
    for split in splits:
        held_noise = dealt[split.name]
        if not held_noise:
            out.append(split)
            continue
        sources = {r.source for r in held_noise}
        train = replace(split.train, train=tuple(e for e in split.train.train
                                                 if e.source not in sources))
        out.append(replace(split, train=train, held=split.held + tuple(
            (r, (0.0, r.end_seconds)) for r in held_noise)))
    return out


def deal_noise(noise: Sequence[Recording], groups: Sequence[str], spare: int = 1
               ) -> dict[str, list[Recording]]:
    """Background recordings dealt to ``groups`` in turn, {group: the background it holds
    out}: whole days of background (the date in the name) when there are as many days as
    groups, else single recordings; none when there are fewer than ``len(groups) + spare``
    recordings (the outer folds keep one spare; every fold keeps some background to train
    on)."""
    from detector.evaluate.recordings import day_of

    if len(noise) < max(len(groups) + spare, 2):
        return {g: [] for g in groups}
    days = sorted({day_of(Path(r.source)) for r in noise})
    by_name = sorted(noise, key=lambda r: Path(r.source).name)
    units = ([[r for r in by_name if day_of(Path(r.source)) == d] for d in days]
             if len(days) >= len(groups) else [[r] for r in by_name])
    dealt: dict[str, list[Recording]] = {g: [] for g in groups}
    for i, unit in enumerate(units):
        dealt[groups[i % len(groups)]] += unit
    return dealt


def found_flags(rec: RecordingScores, thresholds: Thresholds, hop_seconds: float,
                merge_gap_seconds: float, max_duration_seconds: float,
                reach_seconds: float) -> tuple[np.ndarray, list[Interval]]:
    """(for each call, whether a detection found it one-to-one; the detections) at these
    thresholds, through the tracker ``listen`` uses."""
    settings = TrackerSettings(thresholds, hop_seconds, 0.0, merge_gap_seconds,
                               max_duration_seconds)
    centres = rec.starts_seconds + rec.window_seconds / 2
    events = tracker_events(centres, rec.scores, settings)
    found = in_span([(e.start_seconds, e.end_seconds) for e in events], rec.span)
    widened = [(lo - reach_seconds, hi + reach_seconds) for lo, hi in found]
    flags = np.zeros(len(rec.calls), bool)
    for _, j in match_pairs(widened, rec.calls):
        flags[j] = True
    return flags, found


def bootstrap_recall(calls: Sequence[tuple[str, float, bool]], seed: int = 0,
                     resamples: int = BOOTSTRAP_RESAMPLES, level: float = BOOTSTRAP_LEVEL
                     ) -> tuple[float, float]:
    """A percentile interval for recall: ``calls`` are (recording, start s, found); whole
    ``BOOTSTRAP_BLOCK_SECONDS`` blocks of each recording are resampled with replacement."""
    blocks: dict[tuple[str, int], list[bool]] = {}
    for name, start, found in calls:
        blocks.setdefault((name, int(start // BOOTSTRAP_BLOCK_SECONDS)), []).append(found)
    if not blocks:
        return (float("nan"), float("nan"))
    found_per = np.array([sum(b) for b in blocks.values()], np.float64)
    calls_per = np.array([len(b) for b in blocks.values()], np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(found_per), size=(resamples, len(found_per)))
    recalls = found_per[picks].sum(axis=1) / np.maximum(calls_per[picks].sum(axis=1), 1)
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(recalls, tail)), float(np.percentile(recalls, 100 - tail)))

