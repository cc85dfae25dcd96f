"""What ``whaled evaluate`` reports: labelled clips scored, and the text lines and JSON
document of clips, recordings, days and operating points.

The figures come from :mod:`detector.evaluate.measures` (clip and event metrics) and
:mod:`detector.evaluate.recordings` (long recordings through the detect path).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detector.annotations.layouts import Layout
from detector.evaluate.measures import (
    MATCHING_RULE,
    ClipReport,
    OperatingPoint,
    event_average_precision,
)
from detector.evaluate.recordings import Evaluation, EvaluationError, summarise
from detector.model.artifact import LoadedModel


def score_clips(loaded: LoadedModel, data_dir: Path, layout: Layout, positive: str
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(scores, labels, skipped) of the labelled clips in ``data_dir``, each clip's centre
    window through the model."""
    from detector.annotations.datasets import load_clips
    from detector.annotations.layouts import labelled_clips
    from detector.model.scoring import Scorer, centre_crop

    clips, skipped = load_clips(labelled_clips(data_dir, layout, positive))
    if not clips:
        raise EvaluationError(f"{data_dir}: no readable clips ({len(skipped)} skipped)")
    windows = np.stack([centre_crop(c) for c in clips]).astype(np.float32)
    labels = np.array([c.label for c in clips])
    return Scorer(loaded, len(windows)).score(windows)[:, 0], labels, skipped


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


def format_operating_points(points: Sequence[OperatingPoint]) -> str:
    parts = []
    for p in points:
        if p.report is None:
            parts.append(f"<= {p.max_false_alarms_per_hour:g}/h: none")
        else:
            parts.append(f"<= {p.max_false_alarms_per_hour:g}/h: recall {p.report.recall:.3f} "
                         f"({p.report.n_found}/{p.report.n_annotations}) at threshold "
                         f"{p.report.threshold:.4f}")
    return "best recall with false alarms " + "; ".join(parts)


def recordings_doc(result: Evaluation, from_seconds: float) -> dict[str, Any]:
    on = result.thresholds.on
    pooled = summarise("all", result.recordings, on)
    return {
        "matching_rule": MATCHING_RULE, "from_seconds": from_seconds,
        "hop_seconds": result.hop_seconds,
        "thresholds": {"on": on, "off": result.thresholds.off},
        "recordings": [{**summarise(r.name, [r], on).as_dict(), "day": r.day,
                        "path": str(r.path), "channel": r.channel,
                        "reviewed_labels": r.reviewed,
                        "audio_seconds": r.audio_seconds,
                        "real_time_factor": r.audio_seconds / max(r.wall_seconds, 1e-9)}
                       for r in result.recordings],
        "days": [summarise(day, recs, on).as_dict()
                 for day, recs in result.by_day().items()],
        "pooled": pooled.as_dict(),
        "events": {**pooled.events.as_dict(),
                   "average_precision": event_average_precision(pooled.curve),
                   "curve": [r.as_dict() for r in pooled.curve]},
    }


def recordings_lines(result: Evaluation) -> list[str]:
    on = result.thresholds.on
    rows = [(r.name, summarise(r.name, [r], on)) for r in result.recordings]
    rows += [(f"day {day}", summarise(day, recs, on))
             for day, recs in result.by_day().items()]
    pooled = summarise("all", result.recordings, on)
    rows.append(("pooled", pooled))
    width = max(len(name) for name, _ in rows)
    lines = [f"events at on-threshold {on:.4f}, off {result.thresholds.off:.4f}, hop "
             f"{result.hop_seconds:g} s; matching: {MATCHING_RULE}",
             f"{'':{width}}  {'found':>9} {'recall':>7} {'false':>6} {'per h':>7} "
             f"{'hours':>6} {'clip AUC':>8}  best recall at <=1 / <=2 / <=5 false alarms/h"]
    for name, summary in rows:
        e = summary.events
        auc = f"{summary.clips.roc_auc:8.4f}" if summary.clips else f"{'-':>8}"
        best = " / ".join(f"{p.report.recall:.3f}@{p.report.threshold:.4f}" if p.report
                          else "none" for p in summary.points)
        lines.append(f"{name:{width}}  {e.n_found:4d}/{e.n_annotations:<4d} {e.recall:7.3f} "
                     f"{e.n_false_alarms:6d} {e.false_alarms_per_hour:7.2f} {e.hours:6.3f} "
                     f"{auc}  {best}")
    lines.append(format_operating_points(pooled.points))
    e = pooled.events
    lines.append(f"event precision {e.precision:.3f} ({e.n_found} of "
                 f"{e.n_found + e.n_false_alarms} detections matched to a call) at the "
                 "operating point; event average precision "
                 f"{event_average_precision(pooled.curve):.3f} over the curve")
    return lines
