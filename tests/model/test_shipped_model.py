"""The shipped model: the daemon's contract, its card's cross-validation figures measured
again, and the daemon's own path end to end with it.

The card leads with leave-one-day-out figures: each held-out day scored by a model trained on
the other day only. Those fold models ship beside the model (``upcall.fold-DAY.pt``), so this
test re-measures each day's figures with ``whaled evaluate`` (the detect path, not the
training code that produced them) and compares them with what the model's metadata states.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detector.model.artifact import load_model, read_metadata

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
DCLDE = SHARED_DATA / "dclde2013"
DAY_FOLDERS = (SHARED_DATA / "dclde2013", SHARED_DATA / "dclde2013-20090328")
BACKGROUND = SHARED_DATA / "background"
MODEL = REPO / "models" / "upcall.pt"
AUC_TOLERANCE = 2e-3  # the fold was scored in eager mode, evaluate runs the frozen archive
LISTEN_SPAN_SECONDS = 300.0  # the last 5 minutes of the 2009-03-29 recording


def cross_validation() -> dict[str, object]:
    doc: dict[str, object] = read_metadata(MODEL).extra["cross_validation"]
    return doc


def calibrated(raw_score: float) -> float:
    """A raw out-of-fold score as the shipped models give it: through the Platt map that
    cross-validated training folded into them (the identity for a model without one)."""
    from detector.model.platt import of_metadata

    fit = of_metadata(read_metadata(MODEL).extra)
    return fit.probability(raw_score) if fit else raw_score


def test_model_loads_with_the_daemon_contract() -> None:
    loaded = load_model(MODEL)
    meta = loaded.metadata
    assert (meta.sample_rate_hz, meta.window_samples, meta.labels) == (2000, 4000, ("upcall",))
    assert meta.extra["command"].startswith("whaled train ")
    cv = cross_validation()
    assert cv["by"] == "day"
    assert meta.thresholds.on == pytest.approx(calibrated(cv["on"]))  # the out-of-fold one
    held = cv["held_out"]
    assert isinstance(held, list)
    assert sorted(h["group"] for h in held) == ["2009-03-28", "2009-03-29"]
    for fold in held:  # every fold model trained without its day's recordings
        assert not set(fold["recordings"]) & set(fold["trained_on"])
    assert sorted(meta.extra["recordings"]) == sorted(r for h in held for r in h["recordings"])


@pytest.mark.slow
@pytest.mark.parametrize("day", ["2009-03-28", "2009-03-29"])
def test_each_held_out_days_figures_are_measured_again(day: str) -> None:
    """The fold model that never heard ``day`` (nor the background it holds out), run through
    ``whaled evaluate`` on that day and that background: the card's figures at the shipped
    threshold, and at the fold's own nested threshold (chosen on its training day only)."""
    from conftest import require_shared_data
    from labelled import app

    require_shared_data()
    (fold,) = [h for h in cross_validation()["held_out"] if h["group"] == day]  # type: ignore[union-attr]
    recordings = [str(folder / name) for folder in DAY_FOLDERS for name in fold["recordings"]
                  if (folder / name).exists()]
    assert len(recordings) == len(fold["recordings"])
    background = [str(BACKGROUND / name) for name in fold["background"]]
    assert background  # every fold counts false alarms on background it never trained on
    fold_model = MODEL.with_name(f"upcall.fold-{day}.pt")
    assert read_metadata(fold_model).extra["fold"]["held_out"] == day
    for stated, flags in ((fold["at_threshold"], []),
                          (fold["nested"]["held_out_at_on"],
                           ["--on-threshold", str(calibrated(fold["nested"]["on"]))])):
        result = CliRunner().invoke(app, ["evaluate", str(fold_model), *recordings,
                                          *background, "--json", "--no-progress", *flags])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        measured = doc["pooled"]["events"]
        (row,) = [d for d in doc["days"] if d["name"] == day]
        print(f"{day} {flags}: measured {measured['n_found']}/{measured['n_annotations']} with "
              f"{measured['n_false_alarms']} false alarms; stated {stated['n_found']}/"
              f"{stated['n_annotations']}, {stated['n_false_alarms']}")
        assert measured["n_annotations"] == stated["n_annotations"]
        assert measured["n_found"] == stated["n_found"]
        assert measured["n_false_alarms"] == stated["n_false_alarms"]
        assert row["clips"]["roc_auc"] == pytest.approx(fold["clip_roc_auc"], abs=AUC_TOLERANCE)


def read_calls(table: Path) -> list[tuple[float, float]]:
    """(begin, end) seconds of the expert's upcalls in a Raven selection table."""
    import csv

    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle, dialect="excel-tab"))
    return [(float(r["Begin Time (s)"]), float(r["End Time (s)"])) for r in rows
            if r.get("Annotation", "upcall") == "upcall"]


@pytest.mark.slow
@pytest.mark.parametrize("speed", [0.0, 60.0])
def test_listen_with_the_shipped_model_detects_as_evaluate_does_at_the_right_utc_times(
        speed: float, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The daemon's own path, end to end, with the real model and no --model: the last five
    minutes of the real 2009-03-29 recording replayed through `listen --device file:`. It
    must find, at the expert's UTC times, every call `whaled evaluate` finds there (the model
    trained on this day, so this checks the daemon's path, not generalisation). At --speed 0
    the model sees full batches; paced (60 x real time, 5 s) it scores the small live batches
    a sound card gives, through the shared-span scoring."""
    import hashlib
    import re
    import subprocess
    from datetime import UTC, datetime, timedelta

    import soundfile
    from conftest import WHALED, require_shared_data
    from labelled import app

    require_shared_data()
    wav = DCLDE / "NOPP6_EST_20090329_121500.wav"
    table = DCLDE / "NOPP6_EST_20090329_121500.Table.1.selections.txt"
    recording_start = datetime(2009, 3, 29, 12, 15, tzinfo=UTC)  # the name's stamp
    meta = read_metadata(MODEL)
    audio, rate = soundfile.read(str(wav), dtype="float32")
    skip = len(audio) / rate - LISTEN_SPAN_SECONDS
    span_start = recording_start + timedelta(seconds=skip)
    span = tmp_path / f"NOPP6_EST_{span_start:%Y%m%d_%H%M%S}.wav"  # a recorder's own name
    soundfile.write(str(span), audio[round(skip * rate):], rate, subtype="FLOAT")
    calls = [(recording_start + timedelta(seconds=b), recording_start + timedelta(seconds=e))
             for b, e in read_calls(table) if b >= skip]
    (tmp_path / f"{span.stem}.Table.1.selections.txt").write_text(
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation\n" + "".join(
            f"{i + 1}\tSpectrogram 1\t1\t{(b - span_start).total_seconds():.3f}\t"
            f"{(e - span_start).total_seconds():.3f}\tupcall\n" for i, (b, e) in enumerate(calls)))
    evaluated = CliRunner().invoke(app, ["evaluate", str(MODEL), str(span), "--json",
                                         "--no-progress"])
    assert evaluated.exit_code == 0, evaluated.output
    expected = json.loads(evaluated.stdout)["pooled"]["events"]
    assert expected["n_annotations"] == len(calls) >= 10
    assert expected["n_found"] >= len(calls) // 2  # calls to compare (8 of 14 when written)

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
    print(f"{len(found)}/{len(calls)} calls found, {false_alarms} false alarm(s); evaluate: "
          f"{expected['n_found']}, {expected['n_false_alarms']}")
    assert len(found) >= expected["n_found"]
    assert false_alarms <= expected["n_false_alarms"]


DEMO_SECONDS = 1800.0  # the README's demo figure is measured over 30 minutes
# The quality issue's target. Measured 62/62 on seed 1 (122/122 over seeds 1 and 2,
# models/upcall.md); the models before found 0.89 (recipe L), 0.66 (A) and 0.45.
DEMO_MIN_RECALL = 0.9


@pytest.mark.slow
def test_the_readme_demo_finds_most_upcalls_and_no_false_alarm(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """`whaled listen --device synthetic --speed 0 --duration 1800`, the shipped model at its
    own thresholds: most of the simulated upcalls at 5 dB SNR or more are found (the figure
    the README states), and nothing else is reported. Seed 1 is the README's default;
    training never draws from the simulator's seeds (its randomness is its own (seed, epoch)
    streams)."""
    import subprocess

    from conftest import WHALED

    from detector.evaluate.demo import score_demo

    out = tmp_path / "out"
    run = subprocess.run([*WHALED, "listen", "--device", "synthetic", "--speed", "0",
                          "--duration", f"{DEMO_SECONDS:g}", "--metrics-port", "0",
                          "--out", str(out), "--origin", "2026-01-01T00:00:00Z"],
                         cwd=tmp_path, env=subprocess_env, capture_output=True, text=True,
                         timeout=900, check=False)
    assert run.returncode == 0, run.stderr
    score = score_demo(out)
    print(score.as_dict())
    assert score.calls >= 50  # about one upcall every 26 s, most above 5 dB
    assert score.recall >= DEMO_MIN_RECALL
    assert score.false_alarms == 0
