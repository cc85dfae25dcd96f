"""The event tracker's merge gap and minimum duration against one-to-one recall, on the shipped
model's out-of-fold scores (``models/upcall.cv.json``: each held-out day scored by the fold
model that never trained on it). No training and no audio: the tracker ``listen`` uses is
run again on the saved window scores. Prints JSON.

    python benchmarks/tracker.py [--cv models/upcall.cv.json]
                                 [--merge-gaps 0 0.25 0.5 1 2] [--min-durations 0 0.25 0.5]

For every (merge gap, minimum duration): pooled recall, detections and false alarms at the
model's own raw on-threshold, and the best recall with at most 2 false alarms per hour over a
threshold grid (false alarms on the annotated days only: the background's scores are not in
the file). The second figure picks its threshold on the same days it reports, so it is a
ceiling that says which settings can matter, not a figure for the card's nested table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from machine import REPO, machine

from detector.evaluate.measures import RecordingScores, combine, event_curve
from detector.stream.events import OFF_THRESHOLD_FRACTION
from detector.train.calibration import THRESHOLD_GRID

HOP_SECONDS = 0.25
MAX_DURATION_SECONDS = 10.0
# the training rule's candidates: they go on above 0.999 in logit steps, where a confident
# model's calls and loudest noise both score (a grid that stopped at 0.9995 found no ceiling)
GRID = THRESHOLD_GRID
MAX_FALSE_ALARMS_PER_HOUR = 2.0


def recordings(doc: dict[str, object]) -> list[RecordingScores]:
    out = []
    for held in doc["held_out"]:  # type: ignore[attr-defined]
        starts = np.array(held["starts"], float)
        window = float(held["window_seconds"])
        calls = tuple((float(a), float(b)) for a, b in held["calls"])
        out.append(RecordingScores(held["recording"], starts, np.array(held["scores"], float),
                                   window, calls, calls, (float(starts[0]),
                                                          float(starts[-1]) + window)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, default=REPO / "models" / "upcall.cv.json")
    parser.add_argument("--merge-gaps", type=float, nargs="+", default=[0, 0.25, 0.5, 1, 2])
    parser.add_argument("--min-durations", type=float, nargs="+", default=[0, 0.25, 0.5])
    args = parser.parse_args()
    doc = json.loads(args.cv.read_text())
    recs = recordings(doc)
    on = float(doc["on"])
    rows = []
    for gap in args.merge_gaps:
        for shortest in args.min_durations:
            curves = [event_curve(r, [on, *GRID], OFF_THRESHOLD_FRACTION, HOP_SECONDS, gap,
                                  MAX_DURATION_SECONDS, shortest) for r in recs]
            pooled = [combine([c[i] for c in curves]) for i in range(len(GRID) + 1)]
            at_on = pooled[0]
            ok = [p for p in pooled[1:] if p.false_alarms_per_hour <= MAX_FALSE_ALARMS_PER_HOUR]
            best = max(ok, key=lambda p: (p.n_found, -p.threshold)) if ok else None
            rows.append({"merge_gap_seconds": gap, "min_duration_seconds": shortest,
                         "at_on": {"threshold": on, "found": at_on.n_found,
                                   "calls": at_on.n_annotations,
                                   "detections": at_on.n_detections,
                                   "false_alarms": at_on.n_false_alarms,
                                   "duplicates": at_on.n_duplicates},
                         "ceiling_at_2_per_hour": None if best is None else {
                             "threshold": best.threshold, "found": best.n_found,
                             "false_alarms": best.n_false_alarms}})
    print(json.dumps({"cv": str(args.cv), "hours": round(sum(r.hours for r in recs), 3),
                      "rows": rows, "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
