"""The simulated hydrophone judged: what ``listen --device synthetic`` reported against the
upcalls it placed (``OUT/synthetic_truth.jsonl``).

The README's demo is the first thing a newcomer runs, so its figure is measured, not hoped
for: calls found one-to-one (the rule ``whaled evaluate`` uses, a detection's span widened
by half a window less half a hop), counted by signal-to-noise ratio, and every detection on
no placed upcall counted as a false alarm (the simulator also plays ship tones, impulses and
downsweeps). ``benchmarks/synthetic_demo.py`` prints it; a test asserts it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from detector.core.intervals import Interval, overlaps_any
from detector.evaluate.measures import match_pairs, window_reach_seconds
from detector.sources.replay import SYNTHETIC_TRUTH_FILE

DEMO_MIN_SNR_DB = 5.0  # the README's figure: upcalls at or above this signal-to-noise ratio
DETECTIONS_FILE = "detections.jsonl"


@dataclass(frozen=True)
class DemoScore:
    calls: int  # placed upcalls at or above the SNR floor
    found: int  # of those, matched one-to-one to a detection
    all_calls: int  # every placed upcall, any SNR
    all_found: int
    detections: int
    false_alarms: int  # detections that match no placed upcall and overlap none
    min_snr_db: float

    @property
    def recall(self) -> float:
        return self.found / self.calls if self.calls else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {"min_snr_db": self.min_snr_db, "calls": self.calls, "found": self.found,
                "recall": self.recall, "all_calls": self.all_calls,
                "all_found": self.all_found, "detections": self.detections,
                "false_alarms": self.false_alarms}


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score_demo(out: Path, window_seconds: float = 2.0, hop_seconds: float = 0.25,
               min_snr_db: float = DEMO_MIN_SNR_DB) -> DemoScore:
    """Score the outputs of one synthetic ``listen`` run written to ``out`` (one channel)."""
    truth = [t for t in read_lines(out / SYNTHETIC_TRUTH_FILE) if t["kind"] == "upcall"]
    found_rows = [d for d in read_lines(out / DETECTIONS_FILE) if d.get("type") == "detection"]
    reach = window_reach_seconds(window_seconds, hop_seconds)
    detections: list[Interval] = [(float(str(d["start_seconds"])) - reach,
                                   float(str(d["end_seconds"])) + reach) for d in found_rows]
    calls: list[Interval] = [(float(str(t["start_seconds"])), float(str(t["end_seconds"])))
                             for t in truth]
    pairs = match_pairs(detections, calls)
    matched_calls = {j for _, j in pairs}
    matched_detections = {i for i, _ in pairs}
    loud = [j for j, t in enumerate(truth) if float(str(t["snr_db"])) >= min_snr_db]
    spare = [d for i, d in enumerate(detections) if i not in matched_detections]
    false_alarms = sum(1 for lo, hi in spare if not overlaps_any((lo, hi), calls))
    return DemoScore(len(loud), sum(1 for j in loud if j in matched_calls), len(calls),
                     len(matched_calls), len(detections), false_alarms, min_snr_db)
