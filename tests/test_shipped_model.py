"""The shipped model meets, on the real recording's held-out span, the figures its card states.

``models/upcall.heldout.json`` is the output of the evaluation the card reports
(``whaled evaluate models/upcall.pt ../shared/data/dclde2013 --from-seconds 600 --json``);
this test runs the same evaluation again and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detector.model import load_model, read_metadata

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DCLDE = SHARED_DATA / "dclde2013"
MODEL = REPO / "models" / "upcall.pt"
STATED = REPO / "models" / "upcall.heldout.json"
AUC_TOLERANCE = 1e-3  # scores may differ in the last bits across CPUs


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, float]]:
    if not (DCLDE / "NOPP6_EST_20090329_121500.wav").exists():
        pytest.skip(f"real recordings not found: {SHARED_DATA} is absent "
                    "(../shared/data beside the repository)")
    from test_training import app

    holdout = read_metadata(MODEL).extra["holdout_after_seconds"]
    result = CliRunner().invoke(app, ["evaluate", str(MODEL), str(DCLDE), "--json",
                                      "--from-seconds", str(holdout)])
    assert result.exit_code == 0, result.output
    doc: dict[str, dict[str, float]] = json.loads(result.stdout)  # progress is on stderr
    return doc


def test_model_loads_with_the_daemon_contract() -> None:
    loaded = load_model(MODEL)
    meta = loaded.metadata
    assert (meta.sample_rate_hz, meta.window_samples, meta.labels) == (2000, 4000, ("upcall",))
    assert meta.extra["command"].startswith("whaled train ")
    assert meta.extra["holdout_after_seconds"] == 600.0


def test_held_out_figures_match_the_card(measured: dict[str, dict[str, float]]) -> None:
    stated = json.loads(STATED.read_text())
    clips, events = measured["clips"], measured["events"]
    assert clips["n_pos"] == stated["clips"]["n_pos"]
    assert clips["n_neg"] == stated["clips"]["n_neg"]
    assert clips["roc_auc"] >= stated["clips"]["roc_auc"] - AUC_TOLERANCE
    assert events["n_annotations"] == stated["events"]["n_annotations"] == 14
    assert events["recall"] >= stated["events"]["recall"]
    assert events["false_alarms_per_hour"] <= stated["events"]["false_alarms_per_hour"]
