"""The calls an evaluation missed and its false alarms, for a person to look at.

``whaled evaluate --review-dir DIR`` writes ``mistakes.csv`` and ``mistakes.json`` (one row per
missed call and per false alarm at the operating thresholds, matched one-to-one, with times
and scores) and one spectrogram PNG per row (time and frequency axes, 0-500 Hz, the call or
detection boxed). A missed call's score is the highest any window holding part of it got.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from detector.core.intervals import overlap
from detector.evaluate import measures as evaluation
from detector.evaluate.recordings import RecordingEvaluation


@dataclass(frozen=True)
class Mistake:
    kind: str  # "missed" or "false_alarm"
    recording: str
    begin_seconds: float  # from the start of the file
    end_seconds: float
    begin_utc: str  # empty when the recording's name carries no start time
    score: float
    png: str  # file name inside the review folder


def find_mistakes(rec: RecordingEvaluation, hop_seconds: float) -> list[Mistake]:
    scores = rec.scores
    reach = evaluation.window_reach_seconds(scores.window_seconds, hop_seconds)
    detections = [d for d in rec.detections
                  if evaluation.in_span([(d.start_seconds, d.end_seconds)], scores.span)]
    widened = [(d.start_seconds - reach, d.end_seconds + reach) for d in detections]
    pairs = evaluation.match_pairs(widened, scores.calls)
    matched_d, matched_c = {i for i, _ in pairs}, {j for _, j in pairs}
    out = []
    for j, (lo, hi) in enumerate(scores.calls):
        if j not in matched_c:
            held = (scores.starts_seconds < hi) & \
                (scores.starts_seconds + scores.window_seconds > lo)
            best = float(np.max(scores.scores[held])) if held.any() else 0.0
            out.append(_mistake(rec, "missed", lo, hi, best))
    for i, d in enumerate(detections):
        on_unsure = any(overlap(widened[i], u) for u in scores.unsure)
        if i not in matched_d and not on_unsure:
            out.append(_mistake(rec, "false_alarm", d.start_seconds, d.end_seconds,
                                d.peak_score))
    return sorted(out, key=lambda m: m.begin_seconds)


def _mistake(rec: RecordingEvaluation, kind: str, lo: float, hi: float,
             score: float) -> Mistake:
    utc = "" if rec.origin_utc is None else (rec.origin_utc + timedelta(seconds=lo)).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    channel = "" if rec.channel == 1 else f"_ch{rec.channel}"
    png = f"{rec.path.stem}{channel}_{lo:09.3f}_{kind}.png"
    return Mistake(kind, rec.name, round(lo, 3), round(hi, 3), utc, round(score, 5), png)


def write_review(recs: Sequence[RecordingEvaluation], hop_seconds: float, folder: Path
                 ) -> list[Mistake]:
    """The table, its JSON twin and a PNG per mistake in ``folder``; the mistakes."""
    from detector.figures.detections import mistake_spectrogram_png

    folder.mkdir(parents=True, exist_ok=True)
    mistakes: list[Mistake] = []
    for rec in recs:
        mine = find_mistakes(rec, hop_seconds)
        for m in mine:
            mistake_spectrogram_png(rec.path, m, folder / m.png, rec.channel)
        mistakes += mine
    rows = [asdict(m) for m in mistakes]
    with (folder / "mistakes.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [f for f in Mistake.__dataclass_fields__],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (folder / "mistakes.json").write_text(json.dumps(rows, indent=1) + "\n")
    return mistakes
