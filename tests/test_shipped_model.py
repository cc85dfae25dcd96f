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


def read_calls(table: Path) -> list[tuple[float, float]]:
    """(begin, end) seconds of the expert's upcalls in a Raven selection table."""
    import csv

    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle, dialect="excel-tab"))
    return [(float(r["Begin Time (s)"]), float(r["End Time (s)"])) for r in rows
            if r.get("Annotation", "upcall") == "upcall"]


@pytest.mark.slow
@pytest.mark.parametrize("speed", [0.0, 60.0])
def test_listen_with_the_shipped_model_finds_the_held_out_calls_at_their_utc_times(
        speed: float, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The daemon's own path, end to end, with the real model and no --model: a held-out span
    of the real recording replayed through `listen --device file:`. Every call the card says
    it finds must be detected where the expert put it, in UTC. At --speed 0 the model sees
    full batches; paced (60 x real time, 5 s) it scores the small live batches a sound card
    gives, through the shipped network's shared-span scoring."""
    import hashlib
    import re
    import subprocess
    from datetime import UTC, datetime, timedelta

    import soundfile
    from conftest import WHALED, require_shared_data

    require_shared_data()
    wav = DCLDE / "NOPP6_EST_20090329_121500.wav"
    table = DCLDE / "NOPP6_EST_20090329_121500.Table.1.selections.txt"
    recording_start = datetime(2009, 3, 29, 12, 15, tzinfo=UTC)  # the name's stamp
    meta = read_metadata(MODEL)
    holdout = float(meta.extra["holdout_after_seconds"])
    audio, rate = soundfile.read(str(wav), dtype="float32")
    span_start = recording_start + timedelta(seconds=holdout)
    span = tmp_path / f"NOPP6_EST_{span_start:%Y%m%d_%H%M%S}.wav"  # a recorder's own name
    soundfile.write(str(span), audio[round(holdout * rate):], rate, subtype="FLOAT")
    calls = [(recording_start + timedelta(seconds=b), recording_start + timedelta(seconds=e))
             for b, e in read_calls(table) if b >= holdout]
    stated = json.loads(STATED.read_text())["events"]
    assert len(calls) == stated["n_annotations"]

    out = tmp_path / "out"
    config = tmp_path / "whaled.toml"
    config.write_text("evidence = false\n")  # detections only
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{span}", "--speed", f"{speed:g}",
                          "--metrics-port", "0", "--out", str(out), "--config", str(config)],
                         cwd=tmp_path, env=subprocess_env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stderr
    started = re.search(r" model=(\S+) model_hash=(\w+)", run.stderr)
    assert started, run.stderr
    assert Path(started[1]).resolve() == MODEL.resolve()  # the default: the shipped model
    assert started[2] == hashlib.sha256(MODEL.read_bytes()).hexdigest()[:len(started[2])]

    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    detections = [d for d in lines if d["type"] == "detection"]
    reach = timedelta(seconds=meta.window_samples / meta.sample_rate_hz / 2)
    found, false_alarms = set(), 0
    for d in detections:
        start = datetime.fromisoformat(d["start_utc"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(d["end_utc"].replace("Z", "+00:00"))
        # stream time and UTC agree: the span's name stamp plus the detection's offset
        assert abs(start - (span_start + timedelta(seconds=d["start_seconds"]))) < \
            timedelta(milliseconds=2), d
        hits = {i for i, (b, e) in enumerate(calls) if start - reach < e and b < end + reach}
        found |= hits
        false_alarms += not hits
    print(f"{len(found)}/{len(calls)} held-out calls found, {false_alarms} false alarm(s)")
    assert len(found) >= stated["n_found"] >= 1
    assert false_alarms <= stated["n_false_alarms"]
