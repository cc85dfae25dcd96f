"""detect --evidence N: the top N and a seeded sample of the rest, in listen's clip format."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile
from conftest import WHALED
from helpers import calls_recording

from detector.annotations.datasets import evidence_call
from detector.archive.evidence_sample import SAMPLE_NAME
from detector.outputs.sinks import JSONL_NAME
from detector.review.items import evidence_index

LOUD = [(5.0, 1.0), (25.0, 1.0)]  # peak ~1.0
FAINT = [(15.0, 1.0), (35.0, 1.0), (45.0, 1.0), (52.0, 1.0)]  # peak ~0.7


def two_level_recording(path: Path) -> Path:
    loud = calls_recording(path.with_name("loud.tmp.wav"), 2000, 60, LOUD, seed=1)
    faint = calls_recording(path.with_name("faint.tmp.wav"), 2000, 60, FAINT, snr_db=7.0,
                            seed=2)
    a, rate = soundfile.read(str(loud), dtype="float32")
    b, _ = soundfile.read(str(faint), dtype="float32")
    soundfile.write(str(path), (a + b) / np.sqrt(2), rate, subtype="FLOAT")
    loud.unlink()
    faint.unlink()
    return path


def detect(archive: Path, out: Path, model: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WHALED, "detect", str(archive), "--model", str(model), "--out",
                           str(out), "--no-progress", *extra], capture_output=True, text=True,
                          timeout=120)


def test_top_n_and_a_seeded_sample_as_listen_clips(tmp_path: Path, centre_model: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    two_level_recording(archive / "site_20090329_120000.wav")
    out = tmp_path / "out"
    run = detect(archive, out, centre_model, "--evidence", "1")
    assert run.returncode == 0, run.stderr
    assert "evidence: 2 clips written" in run.stderr
    detections = [json.loads(line) for line in (out / JSONL_NAME).read_text().splitlines()
                  if '"detection"' in line]
    assert len(detections) == 6
    best = max(detections, key=lambda d: d["peak_score"])
    clips = sorted((out / "evidence" / "upcall").glob("*.json"))
    assert len(clips) == 2 and len(list((out / "evidence" / "upcall").glob("*.wav"))) == 2
    metas = [json.loads(p.read_text()) for p in clips]
    peaks = {m["peak_utc"] for m in metas}
    assert best["peak_utc"] in peaks  # the top one, and one of the other five
    by_peak = {d["peak_utc"]: d for d in detections}
    for meta, path in zip(metas, clips, strict=True):
        d = by_peak[meta["peak_utc"]]
        assert (meta["start_utc"], meta["end_utc"], meta["channel"], meta["peak_score"]) == \
            (d["start_utc"], d["end_utc"], d["channel"], d["peak_score"])
        wav = soundfile.info(str(path.with_suffix(".wav")))
        assert wav.samplerate == 2000
        expected = d["end_seconds"] - d["start_seconds"] + 2 * 5.0  # 5 s padding each side
        assert abs(wav.frames / 2000 - min(expected, 60 - d["start_seconds"] + 5.0)) < 0.01
        start, end = evidence_call(path.with_suffix(".wav"))  # how train places the call
        assert abs(start - 5.0) < 0.01 and abs(end - start - (d["end_seconds"] -
                                                               d["start_seconds"])) < 0.01
        assert path.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    assert set(evidence_index(out)) == {(m["peak_utc"], 1) for m in metas}  # review finds them
    draw = json.loads((out / SAMPLE_NAME).read_text())  # what threshold guidance weighs
    by_start = {d["start_seconds"]: d for d in detections}
    assert (draw["recording"], draw["per_recording"], draw["detections"]) == \
        ("site_20090329_120000.wav", 1, 6)
    assert [by_start[s]["peak_utc"] for _, s, _ in draw["top"]] == [best["peak_utc"]]
    assert {by_start[s]["peak_utc"] for _, s, _ in draw["top"] + draw["random"]} == peaks

    again = detect(archive, tmp_path / "again", centre_model, "--evidence", "1")
    assert again.returncode == 0
    assert sorted(p.name for p in (tmp_path / "again" / "evidence" / "upcall").glob("*.json")) \
        == [p.name for p in clips]  # the same sample: seeded by the recording's path

    everything = detect(archive, tmp_path / "all", centre_model, "--evidence", "10")
    assert "evidence: 6 clips written" in everything.stderr


def test_negative_evidence_is_one_error_line(tmp_path: Path, centre_model: Path) -> None:
    calls_recording(tmp_path / "a.wav", 2000, 10, [])
    run = detect(tmp_path / "a.wav", tmp_path / "out", centre_model, "--evidence", "-1")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "whaled: error: --evidence -1: give 0 or more clips per recording"]
