"""Threshold rules judged again, nested, from a cross-validation's saved curves: no training,
no audio. Prints JSON.

    python benchmarks/threshold_rules.py RUN.cv.json [RUN.cv.json ...]

A nested fold's on-threshold is chosen on the pooled events of inner folds of its training
data only; ``NAME.cv.json`` (written by ``whaled train --cross-validate ... --nested``) keeps
those inner events and the held-out group's (its background included) at every candidate
threshold. Each rule below picks a threshold from a fold's inner curve alone; the figure is
what the held-out group then gets, pooled over the groups. The shipped rule is the first: its
row repeats the training's own nested figure. Every other row is a rule a recipe could adopt,
and picking one by these rows picks it on the judged days, so a rule is adopted only if it
wins across several runs (draws or recipes), and then retrained and judged as a recipe.

Rules: the shipped one (the highest inner recall with at most 2 false alarms per hour; among
the thresholds that reach it, the middle one), the lowest of those thresholds instead of the
middle (a fold's quietest day rarely has the held-out day's loudest noise, so the middle one
sits high), and limits of 1, 3 and 5 false alarms per hour with the middle.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from machine import machine

from detector.evaluate.measures import EventReport
from detector.model.platt import threshold_text
from detector.train.calibration import best_recall_plateau, choose_on_threshold

Rule = Callable[[Sequence[EventReport]], EventReport]


def report(row: Sequence[float]) -> EventReport:
    """A saved curve row, [on, calls, found, false alarms, hours], as the training read it."""
    on, calls, found, false_alarms, hours = row
    return EventReport(float(on), int(calls), int(found), int(found + false_alarms),
                       int(false_alarms), float(hours))


RULES: dict[str, Rule] = {
    "shipped: <= 2/h, middle": lambda c: choose_on_threshold(c, 2.0),
    "<= 2/h, lowest": lambda c: best_recall_plateau(c, 2.0)[0],
    "<= 1/h, middle": lambda c: choose_on_threshold(c, 1.0),
    "<= 3/h, middle": lambda c: choose_on_threshold(c, 3.0),
    "<= 5/h, middle": lambda c: choose_on_threshold(c, 5.0),
}


def judge(doc: dict[str, object], rule: Rule) -> dict[str, object]:
    folds = []
    for fold in doc["curves"]:  # type: ignore[attr-defined]
        if fold["inner"] is None:
            raise SystemExit(f"{fold['group']}: no inner curve (not a nested run)")
        inner = [report(r) for r in fold["inner"]]
        held = [report(r) for r in fold["held_out"]]
        chosen = rule(inner)
        at = held[inner.index(chosen)]  # both curves are on the training's threshold grid
        folds.append({"group": fold["group"], "on": threshold_text(chosen.threshold),
                      "found": at.n_found, "calls": at.n_annotations,
                      "false_alarms": at.n_false_alarms, "hours": round(at.hours, 3)})
    found, calls = sum(f["found"] for f in folds), sum(f["calls"] for f in folds)
    false_alarms, hours = sum(f["false_alarms"] for f in folds), sum(f["hours"] for f in folds)
    return {"found": found, "calls": calls, "false_alarms": false_alarms,
            "false_alarms_per_hour": round(false_alarms / hours, 2), "folds": folds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cv", type=Path, nargs="+", help="NAME.cv.json of nested runs")
    args = parser.parse_args()
    runs = []
    for path in args.cv:
        doc = json.loads(path.read_text())
        if "curves" not in doc:
            raise SystemExit(f"{path}: no saved curves (written before they were kept); "
                             "train it again")
        runs.append({"cv": str(path),
                     "rules": {name: judge(doc, rule) for name, rule in RULES.items()}})
    print(json.dumps({"runs": runs, "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
