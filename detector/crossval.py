"""Cross-validation by day (or by recording): the figure a model is judged by.

A model is used on days it never heard, so it is judged that way: the annotated recordings
are grouped by day (the date stamp in the file name, else the folder), one model is trained
per group on all the other groups, and scored only on its own held-out group. The out-of-fold
events of every group, pooled, choose the on-threshold for an operating point (the highest
recall with at most so many false alarms per hour); the figures per held-out group at that
threshold are what the model card leads with. Noise-only recordings (another site, no calls)
are training negatives in every fold and are never scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from detector.calibration import (
    OFF_THRESHOLD_FRACTION,
    THRESHOLD_GRID,
    block_scores,
    choose_on_threshold,
)
from detector.evaluation import (
    EventReport,
    RecordingScores,
    clip_windows,
    combine,
    event_curve,
    operating_points,
    roc_auc,
)
from detector.examples import GUARD_SECONDS, Dataset, Recording, cut
from detector.layouts import Layout
from detector.network import Network
from detector.recording_evaluation import day_of
from detector.training import EpochRecord, TrainConfig, train

GROUPINGS = ("day", "recording")


def group_of(recording: Recording, by: str) -> str:
    """The day (the date in the name, else the folder: as ``whaled evaluate`` groups days)
    or the recording's name."""
    path = Path(recording.source)
    return day_of(path) if by == "day" else path.name


@dataclass(frozen=True, eq=False)
class FoldResult:
    """One held-out group: its recordings scored by the model that never trained on them."""

    group: str
    recordings: tuple[str, ...]
    trained_on: tuple[str, ...]  # the recordings the fold's model was trained on
    clip_auc: float
    clip_windows: tuple[int, int]  # (positive, negative) windows behind the AUC
    curve: tuple[EventReport, ...]  # at THRESHOLD_GRID, summed over the group's recordings
    scored: tuple[RecordingScores, ...]
    model: Network  # the fold's network, on the CPU in eval mode

    def at(self, threshold: float) -> EventReport:
        return self.curve[int(np.argmin(np.abs(THRESHOLD_GRID - threshold)))]


@dataclass(frozen=True)
class CrossValidation:
    by: str
    folds: tuple[FoldResult, ...]
    pooled: tuple[EventReport, ...]  # at THRESHOLD_GRID, all held-out groups together
    chosen: EventReport
    max_false_alarms_per_hour: float
    rule: str

    @property
    def on(self) -> float:
        return self.chosen.threshold

    @property
    def off(self) -> float:
        return self.chosen.threshold * OFF_THRESHOLD_FRACTION

    def as_dict(self) -> dict[str, object]:
        return {
            "by": self.by, "rule": self.rule, "on": self.on, "off": self.off,
            "max_false_alarms_per_hour": self.max_false_alarms_per_hour,
            "matching": "one-to-one: a detection finds at most one call",
            "pooled": {"at_threshold": self.chosen.as_dict(),
                       "clip_roc_auc": pooled_auc(self.folds),
                       "operating_points": points(self.pooled)},
            "held_out": [{
                "group": f.group, "recordings": list(f.recordings),
                "trained_on": list(f.trained_on), "clip_roc_auc": f.clip_auc,
                "clip_windows": {"positive": f.clip_windows[0], "negative": f.clip_windows[1]},
                "at_threshold": f.at(self.on).as_dict(),
                "operating_points": points(f.curve)} for f in self.folds]}


def points(curve: Sequence[EventReport]) -> list[dict[str, object]]:
    return [p.as_dict() for p in operating_points(curve)]


def pooled_auc(folds: Sequence[FoldResult]) -> float:
    scores, labels = [], []
    for fold in folds:
        for rec in fold.scored:
            s, lab = clip_windows(rec, GUARD_SECONDS)
            scores.append(s)
            labels.append(lab)
    return roc_auc(np.concatenate(scores), np.concatenate(labels))


def training_set(recordings: Sequence[Recording], noise: Sequence[Recording], split: str
                 ) -> Dataset:
    examples = [e for rec in [*recordings, *noise] for e in cut(rec, (0.0, rec.end_seconds),
                                                                 True)]
    return Dataset(str(Layout.RAVEN), tuple(examples), (), (), split)


def cross_validate(recordings: Sequence[Recording], noise: Sequence[Recording],
                   config: TrainConfig, by: str, max_false_alarms_per_hour: float,
                   hop_seconds: float, merge_gap_seconds: float, max_duration_seconds: float,
                   progress: bool = True, say: Callable[[str], None] = print,
                   on_epoch: Callable[[str], Callable[[EpochRecord], None]] | None = None
                   ) -> CrossValidation:
    """One model per group of ``recordings`` trained on the other groups (and ``noise``),
    scored on its own group only; the on-threshold from the pooled out-of-fold events.
    ``on_epoch(group)`` gives the callback for that fold's epochs."""
    from detector.model import pick_torch_device

    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; one of {GROUPINGS}")
    groups = sorted({group_of(r, by) for r in recordings})
    if len(groups) < 2:
        raise ValueError(f"cross-validation by {by} needs two or more {by}s; found "
                         f"{len(groups)} ({', '.join(groups)})")
    device = pick_torch_device(config.device)
    folds = []
    for n, group in enumerate(groups, start=1):
        held = [r for r in recordings if group_of(r, by) == group]
        rest = [r for r in recordings if group_of(r, by) != group]
        trained_on = tuple(Path(r.source).name for r in rest)
        assert not {Path(r.source).name for r in held} & set(trained_on)
        say(f"fold {n}/{len(groups)}: held out {by} {group} ({len(held)} recording(s), "
            f"{sum(len(r.calls) for r in held)} calls); training on {len(rest)} recording(s) "
            f"and {len(noise)} noise recording(s)")
        dataset = training_set(rest, noise, f"{by} {group} held out")
        model = train(dataset, replace(config, select_best=False), progress=progress,
                      on_epoch=None if on_epoch is None else on_epoch(group)).model.to(device)
        scored, curves = [], []
        for rec in held:
            scores = block_scores(model, rec, (0.0, rec.end_seconds), hop_seconds, device)
            scored.append(scores)
            curves.append(event_curve(scores, THRESHOLD_GRID, OFF_THRESHOLD_FRACTION,
                                      hop_seconds, merge_gap_seconds, max_duration_seconds))
        clip_scores, clip_labels = zip(*(clip_windows(s, GUARD_SECONDS) for s in scored),
                                       strict=True)
        labels = np.concatenate(clip_labels)
        fold = FoldResult(group, tuple(Path(r.source).name for r in held), trained_on,
                          roc_auc(np.concatenate(clip_scores), labels),
                          (int(labels.sum()), int(len(labels) - labels.sum())),
                          tuple(combine(list(points)) for points in zip(*curves, strict=True)),
                          tuple(scored), model.cpu().eval())
        folds.append(fold)
        say(f"fold {n}/{len(groups)}: {by} {group} clip ROC AUC {fold.clip_auc:.4f}")
    pooled = tuple(combine([f.curve[i] for f in folds]) for i in range(len(THRESHOLD_GRID)))
    chosen = choose_on_threshold(pooled, max_false_alarms_per_hour)
    rule = (f"leave-one-{by}-out over {len(groups)} {by}s; on-threshold: the highest pooled "
            f"out-of-fold event recall with at most {max_false_alarms_per_hour:g} false alarms "
            "per hour (one-to-one matching), the middle of the thresholds that reach it; "
            f"off = {OFF_THRESHOLD_FRACTION:g} x on")
    return CrossValidation(by, tuple(folds), pooled, chosen, max_false_alarms_per_hour, rule)
