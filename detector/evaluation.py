"""The figures users trust: clip-level ROC/PR metrics and event-level recall and false alarms.

Clip level follows the 2013 talk's report: ROC AUC, average precision, a confusion matrix and
precision/recall/F1 per class at the model's threshold. Event level matches detections to
annotations on long recordings by time overlap: an annotation is found when any detection
overlaps it; a detection that overlaps no annotation is a false alarm. A detection's span
runs between its windows' centres, so matching widens it by ``reach_seconds`` each side to
cover the audio its windows actually held (half a window less half a hop).

Everything here works on plain arrays and (start_seconds, end_seconds) intervals, so it is
tested on hand-made cases; :mod:`detector.model_commands` feeds it real scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SECONDS_PER_HOUR = 3600.0
Interval = tuple[float, float]


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


def format_clip_report(report: ClipReport) -> str:
    (tn, fp), (fn, tp) = report.confusion
    lines = [f"clips: {report.n_pos} positive, {report.n_neg} negative",
             f"ROC AUC {report.roc_auc:.4f}   average precision {report.average_precision:.4f}",
             f"accuracy {report.accuracy:.4f} at threshold {report.threshold:.3f}",
             "confusion matrix (rows: truth, columns: predicted neg, pos)",
             f"  neg {tn:7d} {fp:7d}", f"  pos {fn:7d} {tp:7d}",
             f"{'':6}{'precision':>10}{'recall':>10}{'f1score':>10}{'support':>10}"]
    for c in report.classes:
        lines.append(f"{c.label:6}{c.precision:10.2f}{c.recall:10.2f}{c.f1:10.2f}{c.support:10d}")
    return "\n".join(lines)


# ---- event level ----

@dataclass(frozen=True)
class EventReport:
    threshold: float
    n_annotations: int
    n_found: int  # annotations overlapped by at least one detection
    n_detections: int
    n_false_alarms: int  # detections overlapping no annotation
    hours: float

    @property
    def recall(self) -> float:
        return safe_ratio(self.n_found, self.n_annotations)

    @property
    def precision(self) -> float:
        return safe_ratio(self.n_detections - self.n_false_alarms, self.n_detections)

    @property
    def false_alarms_per_hour(self) -> float:
        return safe_ratio(self.n_false_alarms, self.hours)

    def as_dict(self) -> dict[str, float]:
        return {"recall": self.recall, "precision": self.precision,
                "false_alarms_per_hour": self.false_alarms_per_hour, "hours": self.hours,
                "threshold": self.threshold, "n_annotations": self.n_annotations,
                "n_found": self.n_found, "n_detections": self.n_detections,
                "n_false_alarms": self.n_false_alarms}


def overlap(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def window_reach_seconds(window_seconds: float, hop_seconds: float) -> float:
    """How far a detection's windows reach beyond the centres its span runs between."""
    return max(window_seconds / 2 - hop_seconds / 2, 0.0)


def match_events(detections: Sequence[Interval], annotations: Sequence[Interval],
                 hours: float, threshold: float = float("nan"),
                 reach_seconds: float = 0.0) -> EventReport:
    detections = [(lo - reach_seconds, hi + reach_seconds) for lo, hi in detections]
    found = sum(1 for a in annotations if any(overlap(a, d) for d in detections))
    false_alarms = sum(1 for d in detections if not any(overlap(a, d) for a in annotations))
    return EventReport(threshold, len(annotations), found, len(detections), false_alarms, hours)


def combine(reports: Sequence[EventReport]) -> EventReport:
    """Sum the counts of several recordings evaluated at the same threshold."""
    return EventReport(reports[0].threshold, sum(r.n_annotations for r in reports),
                       sum(r.n_found for r in reports), sum(r.n_detections for r in reports),
                       sum(r.n_false_alarms for r in reports), sum(r.hours for r in reports))


def format_event_report(report: EventReport) -> str:
    return (f"events at threshold {report.threshold:.3f} over {report.hours:.3f} h: "
            f"recall {report.recall:.3f} ({report.n_found}/{report.n_annotations}), "
            f"precision {report.precision:.3f} "
            f"({report.n_detections - report.n_false_alarms}/{report.n_detections}), "
            f"false alarms {report.n_false_alarms} = {report.false_alarms_per_hour:.1f} per hour")


# ---- plots ----

def write_plots(scores: np.ndarray, labels: np.ndarray, curve: Sequence[EventReport],
                out_dir: Path) -> list[Path]:
    """ROC, precision-recall and (when there are events) recall versus false alarms per hour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fpr, tpr = roc_curve(scores, labels)
    recall, precision = precision_recall_curve(scores, labels)
    panels = [("roc.png", fpr, tpr, "false positive rate", "true positive rate", "ROC"),
              ("pr.png", recall, precision, "recall", "precision", "precision-recall")]
    if curve:
        panels.append(("recall_vs_false_alarms.png",
                       np.array([r.false_alarms_per_hour for r in curve]),
                       np.array([r.recall for r in curve]), "false alarms per hour",
                       "event recall", "events"))
    for name, x, y, xlabel, ylabel, title in panels:
        fig, ax = plt.subplots(figsize=(4, 3.5))
        ax.plot(x, y, drawstyle="steps-post" if name != "recall_vs_false_alarms.png" else None,
                marker="." if name == "recall_vs_false_alarms.png" else None)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=80)
        plt.close(fig)
        written.append(out_dir / name)
    return written


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
    for lo, hi in rec.busy:
        near |= (starts < hi + guard_seconds) & (ends > lo - guard_seconds)
    keep = inside & (positive | ~near)
    return rec.scores[keep], positive[keep].astype(np.int64)


def in_span(intervals: Sequence[Interval], span: Interval) -> list[Interval]:
    return [i for i in intervals if i[1] > span[0] and i[0] < span[1]]


def event_curve(rec: RecordingScores, thresholds: Sequence[float] | np.ndarray,
                off_fraction: float,
                hop_seconds: float, merge_gap_seconds: float, max_duration_seconds: float
                ) -> list[EventReport]:
    """Events from the same tracker ``listen`` uses, at each on-threshold, over the span."""
    from detector.events import EventTracker, TrackerSettings
    from detector.model import Thresholds

    reports = []
    centres = rec.starts_seconds + rec.window_seconds / 2
    for on in thresholds:
        settings = TrackerSettings(Thresholds(on, on * off_fraction), hop_seconds,
                                   merge_gap_seconds=merge_gap_seconds,
                                   max_duration_seconds=max_duration_seconds)
        tracker = EventTracker(settings, channel=1, label="upcall")
        events = [e for c, s in zip(centres, rec.scores, strict=True)
                  for e in tracker.update(float(c), float(s))] + tracker.flush()
        found = in_span([(e.start_seconds, e.end_seconds) for e in events], rec.span)
        reach = window_reach_seconds(rec.window_seconds, hop_seconds)
        reports.append(match_events(found, rec.calls, rec.hours, on, reach))
    return reports
