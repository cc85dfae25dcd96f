"""Threshold guidance against the truth: the estimate from a reviewed draw beside the precision
of every detection, on the four NOPP6 recordings of ``../shared/data`` with their expert tables.

    python benchmarks/threshold_guidance.py [--on-threshold 0.3] [--evidence 10]

``whaled detect --evidence N`` scans the four recordings (1 h, in a temporary folder, never the
repository); a simulated analyst gives each *drawn* detection the verdict of the expert tables
(``upcall`` where it overlaps an annotated call, else ``not-upcall``); ``whaled presence``
prints the guidance. Then the true precision per score bin and at or above each bin's edge,
over *all* detections judged by the same tables, is printed beside it, as JSON lines.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from detector.annotations.reviewed import NOT_UPCALL, UPCALL, ReviewedLabel, append_reviewed
from detector.review.items import reviewed_path
from detector.season.threshold_guidance import BIN_WIDTH, bin_of

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
FOLDERS = ("dclde2013-20090328", "dclde2013")


def expert_calls() -> dict[str, list[tuple[float, float]]]:
    calls = {}
    for folder in FOLDERS:
        for table in (DATA / folder).glob("*.selections.txt"):
            with table.open(newline="") as handle:
                rows = list(csv.DictReader(handle, dialect="excel-tab"))
            calls[table.name.split(".")[0]] = [(float(r["Begin Time (s)"]),
                                                float(r["End Time (s)"])) for r in rows]
    return calls


def judge(out: Path) -> dict[int, list[bool]]:
    """Verdicts for the drawn detections; every detection's truth by score bin."""
    calls = expert_calls()
    truth: dict[tuple[str, int, float], tuple[bool, float]] = {}
    waiting: list[dict[str, object]] = []
    for line in (out / "detections.jsonl").open():
        doc = json.loads(line)
        if doc["type"] == "detection":
            waiting.append(doc)
        elif doc["type"] == "recording":
            stem = Path(doc["recording"]).stem
            for d in waiting:
                start, end = float(d["start_seconds"]), float(d["end_seconds"])  # type: ignore[arg-type]
                hit = any(a < end and start < b for a, b in calls[stem])
                truth[(stem, int(d["channel"]), start)] = (hit, float(d["peak_score"]))  # type: ignore[arg-type]
            waiting = []
    for line in (out / "evidence_sample.jsonl").open():
        draw = json.loads(line)
        stem = Path(draw["recording"]).stem
        for channel, begin, end in draw["top"] + draw["random"]:
            hit = truth[(stem, channel, begin)][0]
            append_reviewed(reviewed_path(out, stem), ReviewedLabel(
                begin, end, UPCALL if hit else NOT_UPCALL, channel=channel))
    bins: dict[int, list[bool]] = {}
    for hit, score in truth.values():
        bins.setdefault(bin_of(score), []).append(hit)
    return bins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--on-threshold", type=float, default=0.3)
    parser.add_argument("--evidence", type=int, default=10)
    args = parser.parse_args()
    if not all((DATA / f).is_dir() for f in FOLDERS):
        sys.exit(f"{DATA} does not hold {', '.join(FOLDERS)}")
    whaled = [sys.executable, "-m", "detector.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        audio, out = Path(tmp) / "audio", Path(tmp) / "out"
        audio.mkdir()
        for folder in FOLDERS:
            for wav in (DATA / folder).glob("*.wav"):
                (audio / wav.name).symlink_to(wav)
        subprocess.run([*whaled, "detect", str(audio), "--model", str(REPO / "models" /
                                                                      "upcall.pt"),
                        "--on-threshold", str(args.on_threshold), "--evidence",
                        str(args.evidence), "--out", str(out), "--no-progress"], check=True,
                       capture_output=True)
        bins = judge(out)
        subprocess.run([*whaled, "presence", str(out)], check=True)
        for k in sorted(bins):
            above = [hit for b, hits in bins.items() if b >= k for hit in hits]
            print(json.dumps({"score_from": round(k * BIN_WIDTH, 3), "detections": len(bins[k]),
                              "true_precision": round(sum(bins[k]) / len(bins[k]), 3),
                              "detections_at_or_above": len(above),
                              "true_precision_at_or_above": round(sum(above) / len(above),
                                                                  3)}))


if __name__ == "__main__":
    main()
