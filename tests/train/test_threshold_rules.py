"""benchmarks/threshold_rules.py: threshold rules judged again from a run's saved curves, as
a user runs it (a subprocess on a NAME.cv.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "threshold_rules.py"
GRID = [0.5, 0.6, 0.7, 0.8, 0.9]


def rows(calls: int, found: list[int], false_alarms: list[int], hours: float) -> list[list[float]]:
    return [[t, calls, n, f, hours] for t, n, f in zip(GRID, found, false_alarms, strict=True)]


def run(doc: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "run.cv.json"
    path.write_text(json.dumps(doc))
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True,
                          text=True, check=False, timeout=120)


def test_each_rule_picks_from_the_inner_curve_and_is_judged_on_the_held_out_one(
        tmp_path: Path) -> None:
    # inner: at <= 2/h the best recall (8 of 10) is reached at 0.6, 0.7 and 0.8
    inner = rows(10, [9, 8, 8, 8, 5], [5, 1, 1, 0, 0], 1.0)
    held = rows(20, [18, 16, 14, 12, 6], [6, 2, 1, 1, 0], 2.0)
    doc = {"curves": [{"group": "2009-03-29", "inner": inner, "held_out": held}]}
    result = run(doc, tmp_path)
    assert result.returncode == 0, result.stderr
    rules = json.loads(result.stdout)["runs"][0]["rules"]
    shipped = rules["shipped: <= 2/h, middle"]
    assert (shipped["folds"][0]["on"], shipped["found"], shipped["false_alarms"]) == \
        ("0.700", 14, 1)  # the middle of 0.6-0.8
    assert shipped["false_alarms_per_hour"] == 0.5
    lowest = rules["<= 2/h, lowest"]
    assert (lowest["folds"][0]["on"], lowest["found"], lowest["false_alarms"]) == ("0.600", 16, 2)
    assert rules["<= 5/h, middle"]["found"] == 18  # 0.5: 9 of 10 inner calls at 5/h
    assert rules["<= 1/h, middle"]["folds"][0]["on"] == "0.700"


def test_a_run_without_inner_curves_is_refused_in_one_line(tmp_path: Path) -> None:
    doc = {"curves": [{"group": "2009-03-29", "inner": None,
                       "held_out": rows(20, [1] * 5, [0] * 5, 1.0)}]}
    result = run(doc, tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == "2009-03-29: no inner curve (not a nested run)"
    old = run({"held_out": []}, tmp_path)
    assert old.returncode != 0 and "no saved curves" in old.stderr
    assert "Traceback" not in old.stderr + result.stderr
