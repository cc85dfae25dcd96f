"""Recordings too slow for the model's band are refused, not scanned (issue 17.9): a 1 kHz
recording gave 3 detections of 7, the first 250 ms late, without a word. The band comes
from the network's own spectrogram, not from a constant."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, WHALED
from helpers import calls_recording
from typer.testing import CliRunner

from detector.cli.main import app
from detector.model.artifact import (
    ModelMetadata,
    listening_band_hz,
    load_model,
    rate_refusal,
    save_model,
)
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, Spectrogram, UpcallNet
from detector.outputs.sinks import JSONL_NAME
from detector.stream.events import Thresholds

SHIPPED_MODEL = REPO / "models" / "upcall.pt"
CALLS = [(3.0 + 4 * k, 1.0) for k in range(7)]  # 7 calls in 30 s
REFUSED = ("sample rate 1000 Hz cannot hold the 23-523 Hz band the model listens to "
           "(at least 1047 Hz is needed)")


@pytest.fixture
def slow(tmp_path: Path) -> Path:
    """1 kHz audio with 7 loud upcalls and their Raven table."""
    (tmp_path / "rec").mkdir()
    path = calls_recording(tmp_path / "rec" / "SLOW_20090329_120000.wav", 1000, 30, CALLS)
    rows = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation"]
    rows += [f"{i + 1}\tSpectrogram 1\t1\t{a:.3f}\t{a + d:.3f}\tupcall"
             for i, (a, d) in enumerate(CALLS)]
    path.with_name(f"{path.stem}.Table.1.selections.txt").write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(autouse=True)
def _shipped() -> None:
    if not SHIPPED_MODEL.exists():
        pytest.skip("models/upcall.pt is not built")


def test_the_band_is_read_from_the_network(tmp_path: Path) -> None:
    bin_hz = SAMPLE_RATE_HZ / 256
    assert listening_band_hz(load_model(SHIPPED_MODEL)) == (3 * bin_hz, 67 * bin_hz)
    narrow = UpcallNet(width=2)
    narrow.spectrogram = Spectrogram(n_bins=32)  # up to 273 Hz: 1 kHz audio holds it
    path = tmp_path / "narrow.pt"
    save_model(narrow, ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",),
                                     Thresholds(0.5, 0.4)), path)
    loaded = load_model(path)
    assert listening_band_hz(loaded) == (3 * bin_hz, 35 * bin_hz)
    assert rate_refusal(1000, loaded) == ""
    assert rate_refusal(546, loaded).endswith("(at least 547 Hz is needed)")
    assert rate_refusal(1047, load_model(SHIPPED_MODEL)) == ""


def test_detect_fails_the_recording_with_one_line(slow: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["detect", str(slow.parent), "--model", str(SHIPPED_MODEL),
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 1, result.output
    docs = [json.loads(line) for line in (out / JSONL_NAME).read_text().splitlines()]
    status = [(d["status"], d["error"]) for d in docs if d["type"] == "recording"]
    assert status == [("failed", REFUSED)]
    assert not [d for d in docs if d["type"] == "detection"]


def test_evaluate_refuses_it(slow: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(SHIPPED_MODEL), str(slow)])
    assert result.exit_code == 2, result.output
    assert f"whaled: error: {slow}: {REFUSED}" in result.output
    assert "Traceback" not in result.output


def test_listen_refuses_it_before_capture(slow: Path, tmp_path: Path) -> None:
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{slow}", "--speed", "0",
                          "--model", str(SHIPPED_MODEL), "--out", str(tmp_path / "o"),
                          "--metrics-port", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [f"whaled: error: file:{slow.name}: {REFUSED}"]
    assert not (tmp_path / "o" / JSONL_NAME).exists()  # nothing was written
