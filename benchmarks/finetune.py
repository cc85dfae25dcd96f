"""What an analyst's 5-minute review buys: fine-tuning the fold model that never heard the day.

    nice -n 10 python benchmarks/finetune.py [--threads 2] [--review-seconds 300]

For each annotated recording of ``../shared/data`` (4 recordings of 15 min, 2 days), held out
in turn: the shipped recipe's fold model that was trained without that recording's day
(``models/upcall.fold-DAY.pt``) is fine-tuned (``detector.train.finetune``, the defaults of
``whaled train --init``) on the expert labels of the recording's first ``--review-seconds``
only, its threshold chosen inside those seconds only (the last 30 % of them, never trained
on; with fewer than 5 calls there, the parent's threshold is kept). Both models are then
judged on the rest of the recording (from ``--review-seconds`` to the end) exactly as
``whaled evaluate --from-seconds`` judges: the detect pipeline, events matched one-to-one.

Prints JSON: the machine, and per recording and pooled, for the fold model and the
fine-tuned one: recall and false alarms at the model's own operating threshold, and "recall
at <= 2 false alarms per hour" = ``whaled evaluate``'s operating point: the highest recall over
on-thresholds (0.01 grid) whose false alarms per hour on the judged span are at most 2. On one
recording's 10 minutes that allows no false alarm at all; pooled (40 min, one threshold
shared by the 4 models) it allows one. That figure picks its threshold on the judged span: it
says how well the scores rank, not what an operator would get; the operating figures do.
Skips (exit 0, one line) when ``../shared/data`` is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import REPO, machine

DATA = (REPO.parent / "shared" / "data").resolve()
ANNOTATED_DAYS = ("dclde2013", "dclde2013-20090328")
FOLD_MODEL = "models/upcall.fold-{day}.pt"  # trained on every day but ``day``
MAX_FALSE_ALARMS_PER_HOUR = 2.0


def figures(report: object) -> dict[str, object]:
    from detector.evaluate.measures import EventReport

    assert isinstance(report, EventReport)
    return {"threshold": report.threshold, "recall": round(report.recall, 4),
            "found": report.n_found, "calls": report.n_annotations,
            "false_alarms": report.n_false_alarms,
            "false_alarms_per_hour": round(report.false_alarms_per_hour, 2),
            "minutes": round(report.hours * 60, 2)}


def judged(summary: object) -> dict[str, object]:
    """The operating figures and the recall at <= 2 false alarms per hour of a summary."""
    from detector.evaluate.measures import operating_points
    from detector.evaluate.recordings import Summary

    assert isinstance(summary, Summary)
    point = operating_points(summary.curve, (MAX_FALSE_ALARMS_PER_HOUR,))[0]
    best = point.report
    return {"at_operating_threshold": figures(summary.events),
            "at_most_2_false_alarms_per_hour": None if best is None else figures(best)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--review-seconds", type=float, default=300.0)
    parser.add_argument("--only", default="", help="one recording (its file name), to try")
    parser.add_argument("--batches-per-epoch", type=int, default=0,
                        help="0: the fine-tuning default")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (the shared recordings)")
        return 0
    import torch

    from detector.annotations import datasets, layouts
    from detector.core.config import Settings
    from detector.evaluate.recordings import (
        day_of,
        evaluate_recordings,
        loaded_from_network,
        summarise,
    )
    from detector.model.artifact import load_model
    from detector.train import finetune

    torch.set_num_threads(args.threads)
    recordings = [audio for folder in ANNOTATED_DAYS
                  for audio, _ in layouts.recordings_with_tables(DATA / folder)
                  if args.only in ("", audio.name)]
    options = datasets.LoadOptions(holdout_after_seconds=args.review_seconds)
    settings = Settings()
    rows, before_all, after_all = [], [], []
    for path in recordings:
        day = day_of(path)
        parent_path = REPO / FOLD_MODEL.format(day=day)
        parent = finetune.read_parent(parent_path)
        review, skipped = datasets.read_recordings([(path, layouts.expert_tables(path))],
                                                   options)
        if skipped:
            raise SystemExit(f"unreadable: {skipped[0]}")
        name = path.name
        config = finetune.finetune_config(parent, device="cpu", **(
            {"batches_per_epoch": args.batches_per_epoch} if args.batches_per_epoch else {}))
        started = time.monotonic()
        tuned = finetune.fine_tune(parent, review, config, MAX_FALSE_ALARMS_PER_HOUR,
                                   say=lambda line, name=name: print(f"{name}: {line}",
                                                          file=sys.stderr))
        seconds = time.monotonic() - started
        before = evaluate_recordings(load_model(parent_path), [path], settings,
                                     from_seconds=args.review_seconds).recordings[0]
        after = evaluate_recordings(
            loaded_from_network(tuned.result.model, tuned.result.metadata), [path], settings,
            from_seconds=args.review_seconds).recordings[0]
        before_all.append(before)
        after_all.append(after)
        rows.append({
            "recording": path.name, "day": day, "parent": FOLD_MODEL.format(day=day),
            "review": {"calls": finetune.annotated_calls(review),
                       "threshold_from_review": tuned.from_held_out, "how": tuned.message},
            "fine_tune_seconds": round(seconds, 1),
            "fold_model": judged(summarise(path.name, [before], before.operating.threshold)),
            "fine_tuned": judged(summarise(path.name, [after], after.operating.threshold))})
        print(json.dumps(rows[-1]), file=sys.stderr)
    doc = {
        "machine": machine(), "review_seconds": args.review_seconds,
        "judged": f"from {args.review_seconds:g} s to the end of each recording",
        "schedule": {"epochs": finetune.FINETUNE_EPOCHS,
                     "batches_per_epoch": finetune.FINETUNE_BATCHES_PER_EPOCH,
                     "learning_rate": finetune.FINETUNE_LEARNING_RATE},
        "recordings": rows,
        "pooled": {"fold_model": judged(summarise("pooled", before_all, 0.5)),
                   "fine_tuned": judged(summarise("pooled", after_all, 0.5))}}
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
