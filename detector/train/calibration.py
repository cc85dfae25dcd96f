"""Choosing the operating thresholds of a trained model.

With time-blocked folds: one model per block trained by :func:`detector.train.loop.train` on
the others, every block scored by the model that never saw it, and the on-threshold with the
highest out-of-fold event recall under a false-alarm limit (through the tracker ``listen``
uses). The other rule, for a plain validation split, lives with the loop that applies it
(:func:`detector.train.loop.validation_thresholds`). The off-threshold is
:data:`~detector.stream.events.OFF_THRESHOLD_FRACTION` of the on-threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from detector.evaluate.measures import (
    EventReport,
    RecordingScores,
    combine,
    event_curve,
)
from detector.model.artifact import pick_torch_device
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.model.scoring import score_windows
from detector.stream.events import OFF_THRESHOLD_FRACTION
from detector.train.examples import Recording, fold_blocks, fold_dataset

if TYPE_CHECKING:
    from detector.train.loop import TrainConfig

# candidate on-thresholds: 0.01 steps, then 0.001 steps above 0.99, then steps of 0.25 in
# logit up to logit 16 (1 - 1.1e-7, where a float32 sigmoid stops): a confident network
# scores calls and its loudest noise above 0.999, and a grid that stopped there could not
# keep false alarms under the limit, so the rule fell back to its top and let them through
TOP_LOGIT = 16.0
TAIL_LOGITS = np.arange(7.0, TOP_LOGIT + 0.125, 0.25)  # from just above 0.999
THRESHOLD_GRID: np.ndarray = np.concatenate(
    [np.round(np.concatenate([np.arange(0.01, 0.99, 0.01), np.arange(0.99, 0.9995, 0.001)]), 3),
     1.0 / (1.0 + np.exp(-TAIL_LOGITS))])
# digits of a window score in the saved out-of-fold files: float32 resolves 6e-8 near 1, and a
# confident model's thresholds (0.99966, 0.999904) need them; 5 digits made 0.999996 read as 1
SCORE_DECIMALS = 8


def saved_scores(scores: np.ndarray) -> list[float]:
    """Window scores as the out-of-fold files keep them, with SCORE_DECIMALS digits."""
    return [round(float(x), SCORE_DECIMALS) for x in scores]


@dataclass(frozen=True)
class CrossFit:
    """Out-of-fold event figures at each candidate on-threshold, and the one chosen."""

    on: float
    off: float
    chosen: EventReport
    curve: tuple[EventReport, ...]
    rule: str
    folds: int
    fold_aucs: tuple[float, ...]  # each fold model's clip AUC on its held-out block
    scored: tuple[RecordingScores, ...] = ()  # out-of-fold window scores, block by block

    def scores_doc(self) -> dict[str, object]:
        """The out-of-fold window scores, for review (every "false alarm" deserves a look)."""
        return {"rule": self.rule, "on": self.on, "off": self.off, "blocks": [
            {"recording": r.name, "span": list(r.span), "window_seconds": r.window_seconds,
             "calls": [list(c) for c in r.calls],
             "starts": [round(float(t), 3) for t in r.starts_seconds],
             "scores": saved_scores(r.scores)} for r in self.scored]}

    def as_dict(self) -> dict[str, object]:
        return {"on": self.on, "off": self.off, "folds": self.folds, "rule": self.rule,
                "fold_clip_aucs": list(self.fold_aucs), "chosen": self.chosen.as_dict(),
                "curve": [r.as_dict() for r in self.curve]}


def block_scores(model: nn.Module, rec: Recording, block: tuple[float, float],
                 hop_seconds: float, device: torch.device) -> RecordingScores:
    """Scores of the windows lying wholly inside ``block``, with the calls that start in it."""
    rate = SAMPLE_RATE_HZ
    hop = round(hop_seconds * rate)
    first, last = math.ceil(block[0] * rate), int(block[1] * rate) - WINDOW_SAMPLES
    starts = np.arange(first, last + 1, hop)
    windows = np.lib.stride_tricks.sliding_window_view(rec.audio, WINDOW_SAMPLES)[starts]
    scores = score_windows(model, windows.astype(np.float32), device)
    calls = tuple(c for c in rec.calls if block[0] <= c[0] < block[1])
    return RecordingScores(Path(rec.source).name, starts / rate, scores, WINDOW_SAMPLES / rate,
                           calls, rec.busy, block, rec.unsure)


def block_curve(model: nn.Module, rec: Recording, block: tuple[float, float],
                device: torch.device) -> tuple[RecordingScores, list[EventReport]]:
    """``rec``'s ``block`` scored by ``model``, and its events at every on-threshold of
    :data:`THRESHOLD_GRID` through the tracker ``listen`` uses, with the daemon's settings."""
    from detector.core.config import Settings

    settings = Settings()
    scored = block_scores(model, rec, block, settings.hop_seconds, device)
    return scored, event_curve(scored, THRESHOLD_GRID, OFF_THRESHOLD_FRACTION,
                               settings.hop_seconds, settings.merge_gap_seconds,
                               settings.max_duration_seconds)


def best_recall_plateau(curve: Sequence[EventReport], max_false_alarms_per_hour: float
                        ) -> list[EventReport]:
    """The thresholds with the highest recall at most ``max_false_alarms_per_hour`` allows,
    lowest first. When no threshold is that quiet: the fewest false alarms first, then the
    same."""
    allowed = [r for r in curve if r.false_alarms_per_hour <= max_false_alarms_per_hour]
    if not allowed:
        fewest = min(r.n_false_alarms for r in curve)
        allowed = [r for r in curve if r.n_false_alarms == fewest]
    best = max(r.n_found for r in allowed)
    return sorted((r for r in allowed if r.n_found == best), key=lambda r: r.threshold)


def choose_on_threshold(curve: Sequence[EventReport], max_false_alarms_per_hour: float
                        ) -> EventReport:
    """The middle of :func:`best_recall_plateau` (a margin on both sides)."""
    reaching = best_recall_plateau(curve, max_false_alarms_per_hour)
    return reaching[(len(reaching) - 1) // 2]


def cross_fit_thresholds(recordings: Sequence[Recording], config: TrainConfig, folds: int,
                         max_false_alarms_per_hour: float, progress: bool = True,
                         say: Callable[[str], None] = print) -> CrossFit:
    """Train one model per time block with that block left out (fixed epochs, last epoch
    kept), score every block with the model that never saw it, and choose the on-threshold
    on those out-of-fold events (calls found and false alarms per hour, through the tracker
    ``listen`` uses; the off-threshold is ``OFF_THRESHOLD_FRACTION`` of it)."""
    from detector.train.loop import train

    device = pick_torch_device(config.device)
    per_recording: list[list[list[EventReport]]] = []
    scored_blocks: list[RecordingScores] = []
    fold_aucs = []
    for fold in range(folds):
        dataset = fold_dataset(recordings, folds, fold)
        summary = dataset.summary()
        say(f"fold {fold + 1}/{folds}: train {summary['train_pos']} positive / "
            f"{summary['train_neg']} negative, held-out block {summary['validation_pos']} / "
            f"{summary['validation_neg']}")
        result = train(dataset, replace(config, select_best=False), progress=progress)
        model = result.model.to(device)
        curves = []
        for rec in recordings:
            block = fold_blocks(rec.end_seconds, folds)[fold]
            scored, rec_curve = block_curve(model, rec, block, device)
            scored_blocks.append(scored)
            curves.append(rec_curve)
        per_recording.append(curves)
        fold_aucs.append(result.history[-1].validation_auc)
        say(f"fold {fold + 1}/{folds}: held-out block clip AUC {fold_aucs[-1]:.4f}")
    curve = tuple(combine([c[i] for fold_curves in per_recording for c in fold_curves])
                  for i in range(len(THRESHOLD_GRID)))
    chosen = choose_on_threshold(curve, max_false_alarms_per_hour)
    rule = (f"{folds} contiguous time blocks of every recording up to the holdout; one model "
            "per block trained on the other blocks; on-threshold: the highest out-of-fold event "
            f"recall with at most {max_false_alarms_per_hour:g} out-of-fold false alarms per "
            "hour (none that quiet: the fewest false alarms), the middle of the candidate "
            "thresholds (0.01 steps) that reach it; off = "
            f"{OFF_THRESHOLD_FRACTION:g} x on")
    return CrossFit(chosen.threshold, chosen.threshold * OFF_THRESHOLD_FRACTION, chosen, curve,
                    rule, folds, tuple(fold_aucs), tuple(scored_blocks))
