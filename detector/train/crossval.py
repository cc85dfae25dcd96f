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
import torch

from detector.core.intervals import Interval
from detector.evaluate.measures import (
    EventReport,
    RecordingScores,
    clip_windows,
    combine,
    event_curve,
    operating_points,
    roc_auc,
    window_reach_seconds,
)
from detector.evaluate.recordings import day_of
from detector.model.network import Network
from detector.model.platt import threshold_text
from detector.stream.events import OFF_THRESHOLD_FRACTION, Thresholds
from detector.train.calibration import (
    THRESHOLD_GRID,
    block_scores,
    choose_on_threshold,
)
from detector.train.examples import GUARD_SECONDS, Recording
from detector.train.loop import EpochRecord, TrainConfig, network_for, train
from detector.train.selection import (
    Split,
    bootstrap_recall,
    deal_noise,
    found_flags,
    inner_splits,
    training_set,
)

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
    curve: tuple[EventReport, ...]  # at THRESHOLD_GRID: the group's recordings + background
    scored: tuple[RecordingScores, ...]
    model: Network  # the fold's network, on the CPU in eval mode
    background: tuple[str, ...] = ()  # held-out background recordings (false alarms only)
    background_curve: tuple[EventReport, ...] = ()  # at THRESHOLD_GRID, those alone
    nested: NestedChoice | None = None  # the threshold chosen inside the training data

    def at(self, threshold: float) -> EventReport:
        return self.curve[int(np.argmin(np.abs(THRESHOLD_GRID - threshold)))]


@dataclass(frozen=True)
class NestedChoice:
    """An outer fold's on-threshold, chosen from inner folds of its training data only."""

    on: float
    inner: EventReport  # the inner out-of-fold events at ``on``
    splits: tuple[str, ...]  # the inner splits' names
    trained_on: frozenset[str]  # every recording an inner model trained on
    judged_on: frozenset[str]  # every recording an inner split was scored on
    curve: tuple[EventReport, ...] = ()  # the pooled inner events at every THRESHOLD_GRID on

    def as_dict(self) -> dict[str, object]:
        return {"on": self.on, "inner_splits": list(self.splits),
                "inner_out_of_fold": self.inner.as_dict(),
                "inner_trained_on": sorted(Path(s).name for s in self.trained_on),
                "inner_judged_on": sorted(Path(s).name for s in self.judged_on)}


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

    def nested_pooled(self) -> EventReport | None:
        """Every held-out group at its own nested threshold, summed (None: not nested)."""
        if any(f.nested is None for f in self.folds):
            return None
        return replace(combine([f.at(f.nested.on) for f in self.folds if f.nested]),
                       threshold=float("nan"))

    def nested_interval(self, hop_seconds: float, merge_gap_seconds: float,
                        max_duration_seconds: float) -> tuple[float, float] | None:
        """A block-bootstrap interval of the nested pooled recall."""
        if any(f.nested is None for f in self.folds):
            return None
        calls = []
        for fold in self.folds:
            assert fold.nested is not None
            thresholds = Thresholds(fold.nested.on, fold.nested.on * OFF_THRESHOLD_FRACTION)
            for rec in fold.scored:
                reach = window_reach_seconds(rec.window_seconds, hop_seconds)
                flags, _ = found_flags(rec, thresholds, hop_seconds, merge_gap_seconds,
                                       max_duration_seconds, reach)
                calls += [(rec.name, c[0], bool(f)) for c, f in zip(rec.calls, flags,
                                                                     strict=True)]
        return bootstrap_recall(calls)

    def as_dict(self) -> dict[str, object]:
        nested = self.nested_pooled()
        return {
            "by": self.by, "rule": self.rule, "on": self.on, "off": self.off,
            "max_false_alarms_per_hour": self.max_false_alarms_per_hour,
            "matching": "one-to-one: a detection finds at most one call",
            "pooled": {"at_threshold": self.chosen.as_dict(),
                       "clip_roc_auc": pooled_auc(self.folds),
                       "operating_points": points(self.pooled),
                       "nested": None if nested is None else nested.as_dict()},
            "held_out": [{
                "group": f.group, "recordings": list(f.recordings),
                "trained_on": list(f.trained_on), "clip_roc_auc": f.clip_auc,
                "clip_windows": {"positive": f.clip_windows[0], "negative": f.clip_windows[1]},
                "background": list(f.background),
                "at_threshold": f.at(self.on).as_dict(),
                "nested": None if f.nested is None else {
                    **f.nested.as_dict(), "held_out_at_on": f.at(f.nested.on).as_dict()},
                "operating_points": points(f.curve)} for f in self.folds]}


def curve_rows(curve: Sequence[EventReport]) -> list[list[float]]:
    """A curve at every THRESHOLD_GRID on, compactly: [on, calls, found, false alarms, hours]
    per threshold, so another threshold rule can be judged again without training."""
    return [[r.threshold, r.n_annotations, r.n_found, r.n_false_alarms, r.hours]
            for r in curve]


def points(curve: Sequence[EventReport]) -> list[dict[str, object]]:
    return [p.as_dict() for p in operating_points(curve)]


def pooled_windows(folds: Sequence[FoldResult]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of every held-out clip window, each scored by its fold's model."""
    pairs = [clip_windows(rec, GUARD_SECONDS) for fold in folds for rec in fold.scored]
    return np.concatenate([s for s, _ in pairs]), np.concatenate([lab for _, lab in pairs])


def pooled_auc(folds: Sequence[FoldResult]) -> float:
    return roc_auc(*pooled_windows(folds))


@dataclass(frozen=True)
class Tracking:
    """The tracker rules the folds are scored with (``listen``'s)."""

    hop_seconds: float
    merge_gap_seconds: float
    max_duration_seconds: float


def judge(model: Network, held: Sequence[tuple[Recording, Interval]], rules: Tracking,
          device: torch.device) -> tuple[list[RecordingScores], tuple[EventReport, ...]]:
    """``held`` spans scored by ``model``; their events summed at every THRESHOLD_GRID on."""
    scored = [block_scores(model, rec, span, rules.hop_seconds, device) for rec, span in held]
    curves = [event_curve(s, THRESHOLD_GRID, OFF_THRESHOLD_FRACTION, rules.hop_seconds,
                          rules.merge_gap_seconds, rules.max_duration_seconds) for s in scored]
    return scored, tuple(combine(list(at)) for at in zip(*curves, strict=True))


def choose_nested(splits: Sequence[Split], models: Sequence[Network],
                  max_false_alarms_per_hour: float, rules: Tracking,
                  device: torch.device) -> NestedChoice:
    """The on-threshold from the inner ``splits`` of an outer fold's training data and their
    models: the outer fold's held-out data is not an argument, so none of it can reach the
    choice."""
    curves = [judge(model.to(device), split.held, rules, device)[1]
              for split, model in zip(splits, models, strict=True)]
    pooled = [combine([c[i] for c in curves]) for i in range(len(THRESHOLD_GRID))]
    chosen = choose_on_threshold(pooled, max_false_alarms_per_hour)
    return NestedChoice(chosen.threshold, chosen, tuple(s.name for s in splits),
                        frozenset().union(*(s.sources for s in splits)),
                        frozenset(r.source for s in splits for r, _ in s.held), tuple(pooled))


@dataclass(frozen=True)
class Planned:
    """One held-out group's data: its recordings and background, and the splits to fit."""

    group: str
    held: tuple[Recording, ...]
    rest: tuple[Recording, ...]
    held_noise: tuple[Recording, ...]
    inner: tuple[Split, ...]
    outer: Split


def plan_folds(recordings: Sequence[Recording], noise: Sequence[Recording], by: str,
               nested: bool) -> list[Planned]:
    groups = sorted({group_of(r, by) for r in recordings})
    dealt = deal_noise(noise, groups) if nested else {g: [] for g in groups}
    planned = []
    for group in groups:
        held = [r for r in recordings if group_of(r, by) == group]
        rest = [r for r in recordings if group_of(r, by) != group]
        held_sources = {r.source for r in dealt[group]}
        train_noise = [r for r in noise if r.source not in held_sources]
        inner = (inner_splits(rest, train_noise, {r.source: group_of(r, by) for r in rest})
                 if nested else [])
        outer = Split(group, training_set(rest, train_noise, f"{by} {group} held out"),
                      tuple((r, (0.0, r.end_seconds)) for r in held))
        planned.append(Planned(group, tuple(held), tuple(rest), tuple(dealt[group]),
                               tuple(inner), outer))
    return planned


_JOBS: list[tuple[str, Split]] = []  # what a forked worker trains (fork shares, no pickling)
_FIT: list[Callable[[str, Split], Network]] = []


def _fit_job(index: int) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    name, split = _JOBS[index]
    return _FIT[0](name, split).state_dict()


def fit_all(jobs: Sequence[tuple[str, Split]], config: TrainConfig,
            fit: Callable[[str, Split], Network], workers: int) -> list[Network]:
    """Every (name, split) fitted: in this process, or ``workers`` forked processes of one
    torch thread each (the splits are independent; on 2 cores two one-thread processes
    train about 1.5x faster than one process of two threads)."""
    if workers <= 1 or len(jobs) == 1:
        return [fit(name, split) for name, split in jobs]
    import multiprocessing

    _JOBS[:], _FIT[:] = list(jobs), [fit]
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
            states = pool.map(_fit_job, range(len(jobs)), chunksize=1)
    finally:
        _JOBS.clear()
        _FIT.clear()
    models = []
    for state in states:
        model = network_for(config)
        model.load_state_dict(state)
        models.append(model.eval())
    return models


def cross_validate(recordings: Sequence[Recording], noise: Sequence[Recording],
                   config: TrainConfig, by: str, max_false_alarms_per_hour: float,
                   hop_seconds: float, merge_gap_seconds: float, max_duration_seconds: float,
                   progress: bool = True, say: Callable[[str], None] = print,
                   on_epoch: Callable[[str], Callable[[EpochRecord], None]] | None = None,
                   nested: bool = False, workers: int = 1) -> CrossValidation:
    """One model per group of ``recordings`` trained on the other groups (and ``noise``),
    scored on its own group only; the on-threshold from the pooled out-of-fold events.
    ``on_epoch(name)`` gives the callback for that run's epochs (a group, or a group and an
    inner split). ``nested``: each group also gets a threshold chosen inside its training
    data (:mod:`detector.train.selection`), and holds out its share of the background.
    ``workers``: models trained at once, in forked processes."""
    from detector.model.artifact import pick_torch_device

    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; one of {GROUPINGS}")
    groups = sorted({group_of(r, by) for r in recordings})
    if len(groups) < 2:
        raise ValueError(f"cross-validation by {by} needs two or more {by}s; found "
                         f"{len(groups)} ({', '.join(groups)})")
    device = pick_torch_device(config.device)
    rules = Tracking(hop_seconds, merge_gap_seconds, max_duration_seconds)
    planned = plan_folds(recordings, noise, by, nested)
    for n, p in enumerate(planned, start=1):
        say(f"fold {n}/{len(groups)}: held out {by} {p.group} ({len(p.held)} recording(s), "
            f"{sum(len(r.calls) for r in p.held)} calls, {len(p.held_noise)} background); "
            f"training on {len(p.rest)} recording(s) and "
            f"{len(noise) - len(p.held_noise)} noise recording(s)"
            + (f"; {len(p.inner)} inner splits choose its threshold" if nested else ""))

    def fit(name: str, split: Split) -> Network:
        return train(split.train, replace(config, select_best=False), progress=progress,
                     on_epoch=None if on_epoch is None else on_epoch(name)).model

    jobs = [(f"{p.group} {s.name}", s) for p in planned for s in p.inner] + \
        [(p.group, p.outer) for p in planned]
    fitted = dict(zip([name for name, _ in jobs], fit_all(jobs, config, fit, workers),
                      strict=True))
    folds = []
    for n, p in enumerate(planned, start=1):
        group, held = p.group, p.held
        trained_on = tuple(Path(r.source).name for r in p.rest)
        assert not {Path(r.source).name for r in held} & set(trained_on)
        choice = (choose_nested(p.inner, [fitted[f"{group} {s.name}"] for s in p.inner],
                                max_false_alarms_per_hour, rules, device) if nested else None)
        model = fitted[group].to(device)
        scored, curve = judge(model, p.outer.held, rules, device)
        _, background_curve = judge(model, [(r, (0.0, r.end_seconds)) for r in p.held_noise],
                                    rules, device) if p.held_noise else ([], ())
        if background_curve:
            curve = tuple(combine([a, b]) for a, b in zip(curve, background_curve, strict=True))
        clip_scores, clip_labels = zip(*(clip_windows(s, GUARD_SECONDS) for s in scored),
                                       strict=True)
        labels = np.concatenate(clip_labels)
        fold = FoldResult(group, tuple(Path(r.source).name for r in held), trained_on,
                          roc_auc(np.concatenate(clip_scores), labels),
                          (int(labels.sum()), int(len(labels) - labels.sum())),
                          curve, tuple(scored), model.cpu().eval(),
                          tuple(Path(r.source).name for r in p.held_noise), background_curve,
                          choice)
        folds.append(fold)
        nested_text = "" if choice is None else (
            f"; nested on {threshold_text(choice.on)}: {fold.at(choice.on).n_found}/"
            f"{fold.at(choice.on).n_annotations} calls, {fold.at(choice.on).n_false_alarms} "
            "false alarms")
        say(f"fold {n}/{len(groups)}: {by} {group} clip ROC AUC {fold.clip_auc:.4f}"
            + nested_text)
    pooled = tuple(combine([f.curve[i] for f in folds]) for i in range(len(THRESHOLD_GRID)))
    chosen = choose_on_threshold(pooled, max_false_alarms_per_hour)
    rule = (f"leave-one-{by}-out over {len(groups)} {by}s; on-threshold: the highest pooled "
            f"out-of-fold event recall with at most {max_false_alarms_per_hour:g} false alarms "
            "per hour (one-to-one matching), the middle of the thresholds that reach it; "
            f"off = {OFF_THRESHOLD_FRACTION:g} x on"
            + ("; nested: each held-out group judged at the threshold the same rule chose on "
               "inner folds of its training data only" if nested else ""))
    return CrossValidation(by, tuple(folds), pooled, chosen, max_false_alarms_per_hour, rule)
