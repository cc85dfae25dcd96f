"""The figures users trust: clip-level ROC/PR metrics and event-level recall and false alarms.

Clip level follows the 2013 talk's report: ROC AUC, average precision, a confusion matrix and
precision/recall/F1 per class at the model's threshold. Event level matches detections to
annotations on long recordings one-to-one (:data:`MATCHING_RULE`): a detection finds at most
one call, so two calls under one long detection are one hit and one miss. A detection's span
runs between its windows' centres, so matching widens it by ``reach_seconds`` each side to
cover the audio its windows actually held (half a window less half a hop).

Everything here works on plain arrays and (start_seconds, end_seconds) intervals, so it is
tested on hand-made cases; :mod:`detector.cli.model` feeds it real scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detector.core.intervals import Interval, overlap

if TYPE_CHECKING:
    from detector.stream.events import Event, TrackerSettings

SECONDS_PER_HOUR = 3600.0


# ---- clip level ----

def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # midranks for ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    midranks = first + (counts + 1) / 2
    ranks[order] = np.repeat(midranks, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def curve_points(scores: np.ndarray, labels: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, true positives, false positives) at each distinct score."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_value = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_value]
    fp = np.cumsum(~y)[last_of_value]
    return s[last_of_value], tp, fp


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), starting at (0, 0)."""
    _, tp, fp = curve_points(scores, labels)
    n_pos, n_neg = max(tp[-1], 1), max(fp[-1], 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold, highest threshold first."""
    _, tp, fp = curve_points(scores, labels)
    return tp / max(tp[-1], 1), tp / (tp + fp)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Sum over thresholds of (recall gained) x precision, as scikit-learn computes it."""
    if not np.any(np.asarray(labels) > 0):
        return float("nan")
    recall, precision = precision_recall_curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_for_false_positive_rate(scores: np.ndarray, labels: np.ndarray,
                                      max_rate: float) -> float:
    """The lowest threshold with at most ``max_rate`` of negatives scoring at or above it."""
    negatives = np.sort(np.asarray(scores, np.float64)[np.asarray(labels) <= 0])[::-1]
    allowed = int(np.floor(max_rate * len(negatives)))
    if allowed >= len(negatives):
        return 0.0
    return float(min(np.nextafter(negatives[allowed], np.inf), 1.0))


@dataclass(frozen=True)
class ClassReport:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClipReport:
    roc_auc: float
    average_precision: float
    threshold: float
    accuracy: float
    confusion: tuple[tuple[int, int], tuple[int, int]]  # rows truth (neg, pos), cols predicted
    classes: tuple[ClassReport, ...]
    n_pos: int
    n_neg: int


def safe_ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def clip_report(scores: np.ndarray, labels: np.ndarray, threshold: float,
                names: tuple[str, str] = ("neg", "pos")) -> ClipReport:
    truth = np.asarray(labels) > 0
    predicted = np.asarray(scores) >= threshold
    tn, fp = int(np.sum(~truth & ~predicted)), int(np.sum(~truth & predicted))
    fn, tp = int(np.sum(truth & ~predicted)), int(np.sum(truth & predicted))
    classes = []
    for name, hit, wrong_in, missed in ((names[0], tn, fn, fp), (names[1], tp, fp, fn)):
        precision, recall = safe_ratio(hit, hit + wrong_in), safe_ratio(hit, hit + missed)
        f1 = safe_ratio(2 * precision * recall, precision + recall)
        classes.append(ClassReport(name, precision, recall, f1, hit + missed))
    return ClipReport(roc_auc(scores, labels), average_precision(scores, labels), threshold,
                      safe_ratio(tn + tp, len(truth)), ((tn, fp), (fn, tp)), tuple(classes),
                      tp + fn, tn + fp)


# ---- event level ----

MATCHING_RULE = (
    "one-to-one: each detection is matched to at most one call and each call to at most one "
    "detection, by a maximum bipartite matching on time overlap (a detection widened by the "
    "reach of its windows); matched calls are found, the other calls are missed, the other "
    "detections are false alarms, except detections overlapping a reviewed 'unsure' span, "
    "which count as neither")


@dataclass(frozen=True)
class EventReport:
    threshold: float
    n_annotations: int
    n_found: int  # calls matched one-to-one to a detection
    n_detections: int
    n_false_alarms: int  # detections matched to no call (and not on an unsure span)
    hours: float
    n_ignored: int = 0  # detections on a reviewed unsure span: neither hit nor false alarm
    n_duplicates: int = 0  # of the false alarms, those overlapping a call another one found

    @property
    def recall(self) -> float:
        return safe_ratio(self.n_found, self.n_annotations)

    @property
    def precision(self) -> float:
        return safe_ratio(self.n_found, self.n_found + self.n_false_alarms)

    @property
    def false_alarms_per_hour(self) -> float:
        return safe_ratio(self.n_false_alarms, self.hours)

    def as_dict(self) -> dict[str, float]:
        return {"recall": self.recall, "precision": self.precision,
                "false_alarms_per_hour": self.false_alarms_per_hour, "hours": self.hours,
                "threshold": self.threshold, "n_annotations": self.n_annotations,
                "n_found": self.n_found, "n_detections": self.n_detections,
                "n_false_alarms": self.n_false_alarms, "n_ignored": self.n_ignored,
                "n_duplicates": self.n_duplicates}


def window_reach_seconds(window_seconds: float, hop_seconds: float) -> float:
    """How far a detection's windows reach beyond the centres its span runs between."""
    return max(window_seconds / 2 - hop_seconds / 2, 0.0)


def match_pairs(detections: Sequence[Interval], calls: Sequence[Interval]
                ) -> list[tuple[int, int]]:
    """(detection index, call index) of a maximum one-to-one matching on overlap; among the
    largest matchings, the one with the most overlap (as a share of each call)."""
    from scipy.optimize import linear_sum_assignment

    if not detections or not calls:
        return []
    d = np.asarray(detections, np.float64)
    c = np.asarray(calls, np.float64)
    shared = np.minimum(d[:, None, 1], c[None, :, 1]) - np.maximum(d[:, None, 0], c[None, :, 0])
    share = np.clip(shared / np.maximum(c[None, :, 1] - c[None, :, 0], 1e-9), 0.0, 1.0)
    # every pair counts 1 (the most pairs first); overlap only breaks ties between matchings
    weight = np.where(shared > 0, 1.0 + share / (2 * min(len(d), len(c))), 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if weight[i, j] > 0]


def match_events(detections: Sequence[Interval], annotations: Sequence[Interval],
                 hours: float, threshold: float = float("nan"),
                 reach_seconds: float = 0.0, unsure: Sequence[Interval] = ()) -> EventReport:
    """Recall and false alarms under :data:`MATCHING_RULE`."""
    widened = [(lo - reach_seconds, hi + reach_seconds) for lo, hi in detections]
    pairs = match_pairs(widened, annotations)
    matched = {i for i, _ in pairs}
    found_calls = [annotations[j] for _, j in pairs]
    spare = [d for i, d in enumerate(widened) if i not in matched]
    ignored = [d for d in spare if any(overlap(d, u) for u in unsure)]
    false_alarms = [d for d in spare if not any(overlap(d, u) for u in unsure)]
    duplicates = sum(1 for d in false_alarms if any(overlap(d, a) for a in found_calls))
    return EventReport(threshold, len(annotations), len(pairs), len(detections),
                       len(false_alarms), hours, len(ignored), duplicates)


def combine(reports: Sequence[EventReport]) -> EventReport:
    """Sum the counts of several recordings evaluated at the same threshold."""
    return EventReport(reports[0].threshold, sum(r.n_annotations for r in reports),
                       sum(r.n_found for r in reports), sum(r.n_detections for r in reports),
                       sum(r.n_false_alarms for r in reports), sum(r.hours for r in reports),
                       sum(r.n_ignored for r in reports), sum(r.n_duplicates for r in reports))


def event_average_precision(curve: Sequence[EventReport]) -> float:
    """Area under the event precision-recall curve: each recall gained, from the highest
    threshold down, weighted by the event precision where it is gained (0 with no calls)."""
    area, reached = 0.0, 0.0
    for report in sorted(curve, key=lambda r: -r.threshold):
        if report.recall > reached:
            area += (report.recall - reached) * report.precision
            reached = report.recall
    return area


@dataclass(frozen=True)
class OperatingPoint:
    """The highest recall with at most ``max_false_alarms_per_hour``, and where it is."""

    max_false_alarms_per_hour: float
    report: EventReport | None  # None: no threshold on the grid is that quiet

    def as_dict(self) -> dict[str, object]:
        return {"max_false_alarms_per_hour": self.max_false_alarms_per_hour,
                "recall": self.report.recall if self.report else 0.0,
                "threshold": self.report.threshold if self.report else None,
                "events": self.report.as_dict() if self.report else None}


FALSE_ALARM_LIMITS_PER_HOUR = (1.0, 2.0, 5.0)


def operating_points(curve: Sequence[EventReport],
                     limits: Sequence[float] = FALSE_ALARM_LIMITS_PER_HOUR
                     ) -> list[OperatingPoint]:
    """For each limit: the highest recall on ``curve`` with at most that many false alarms
    per hour; of the thresholds reaching it, the one with the fewest false alarms (then the
    highest threshold)."""
    points = []
    for limit in limits:
        allowed = [r for r in curve if r.false_alarms_per_hour <= limit]
        best = max(allowed, key=lambda r: (r.n_found, -r.n_false_alarms, r.threshold),
                   default=None)
        points.append(OperatingPoint(limit, best))
    return points


# ---- long recordings: window scores, clip windows and event curves ----

@dataclass(frozen=True)
class RecordingScores:
    """Window scores over one recording, restricted to an evaluated span."""

    name: str
    starts_seconds: np.ndarray  # window starts
    scores: np.ndarray
    window_seconds: float
    calls: tuple[Interval, ...]  # annotated positives inside the span
    busy: tuple[Interval, ...]  # every annotation (no negatives are taken near one)
    span: Interval
    unsure: tuple[Interval, ...] = ()  # reviewed unsure: neither a call nor a false alarm

    @property
    def hours(self) -> float:
        return (self.span[1] - self.span[0]) / SECONDS_PER_HOUR


def clip_windows(rec: RecordingScores, guard_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of the windows inside the span that hold a whole call (positive) or
    lie at least ``guard_seconds`` from any annotation (negative); the others are left out."""
    starts, ends = rec.starts_seconds, rec.starts_seconds + rec.window_seconds
    inside = (starts >= rec.span[0]) & (ends <= rec.span[1])
    positive = np.zeros(len(starts), bool)
    near = np.zeros(len(starts), bool)
    for lo, hi in rec.calls:
        positive |= (starts <= lo) & (ends >= hi)
    for lo, hi in (*rec.busy, *rec.unsure):
        near |= (starts < hi + guard_seconds) & (ends > lo - guard_seconds)
    keep = inside & (positive | ~near)
    return rec.scores[keep], positive[keep].astype(np.int64)


def in_span(intervals: Sequence[Interval], span: Interval) -> list[Interval]:
    return [i for i in intervals if i[1] > span[0] and i[0] < span[1]]


def tracker_events(centres: np.ndarray, scores: np.ndarray, settings: TrackerSettings
                   ) -> list[Event]:
    """The events ``listen``'s tracker gives on these windows, feeding it only the windows at
    or above the off-threshold and the one after each: the others change nothing but when a
    waiting event is reported, never what it is."""
    from detector.stream.events import EventTracker

    above = np.asarray(scores) >= settings.thresholds.off
    fed = np.flatnonzero(above | np.r_[False, above[:-1]])
    tracker = EventTracker(settings, channel=1, label="upcall")
    events = [e for i in fed for e in tracker.update(float(centres[i]), float(scores[i]))]
    return events + tracker.flush()


def event_curve(rec: RecordingScores, thresholds: Sequence[float] | np.ndarray,
                off_fraction: float,
                hop_seconds: float, merge_gap_seconds: float, max_duration_seconds: float,
                min_duration_seconds: float = 0.0) -> list[EventReport]:
    """Events from the same tracker ``listen`` uses, at each on-threshold, over the span,
    matched one-to-one."""
    from detector.stream.events import Thresholds, TrackerSettings

    reports = []
    centres = rec.starts_seconds + rec.window_seconds / 2
    reach = window_reach_seconds(rec.window_seconds, hop_seconds)
    for on in thresholds:
        settings = TrackerSettings(Thresholds(float(on), float(on) * off_fraction), hop_seconds,
                                   min_duration_seconds, merge_gap_seconds,
                                   max_duration_seconds)
        events = tracker_events(centres, rec.scores, settings)
        found = in_span([(e.start_seconds, e.end_seconds) for e in events], rec.span)
        reports.append(match_events(found, rec.calls, rec.hours, float(on), reach, rec.unsure))
    return reports
