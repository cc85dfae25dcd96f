"""Evidence clips: each detection's audio at the capture rate, a spectrogram, its metadata;
kept within size and age limits; a folder layout that ``whaled train`` reads back."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import WHALED
from helpers import calls_recording
from prometheus_client import CollectorRegistry

from detector.annotations.layouts import Layout, detect_layout, labelled_clips
from detector.core.config import Settings
from detector.model.artifact import load_model
from detector.outputs.evidence import EvidenceRecorder
from detector.outputs.metrics import Metrics
from detector.outputs.sinks import JsonlSink
from detector.sources.replay import FileSource
from detector.stream.blocks import StreamInfo
from detector.stream.detector_stage import longest_emission_delay_seconds
from detector.stream.events import Detection
from detector.stream.pipeline import Pipeline

CAPTURE_RATE_HZ = 8000  # not the model's 2 kHz: clips keep the capture rate
PADDING_SECONDS = 1.5
CALLS = [(3.0, 1.0), (9.0, 1.0), (15.0, 1.0)]


def run_with_evidence(model: Path, tmp_path: Path, **limits: float) -> tuple[
        Pipeline, EvidenceRecorder, Path]:
    wav = calls_recording(tmp_path / "NOPP_20090329_120000.wav", CAPTURE_RATE_HZ, 19.0, CALLS)
    source = FileSource(wav, block_frames=800, speed=0.0)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    recorder = EvidenceRecorder(tmp_path / "evidence", source.info, metrics,
                                padding_seconds=PADDING_SECONDS, max_event_seconds=10.0,
                                delay_seconds=longest_emission_delay_seconds(Settings()),
                                max_bytes=int(limits.get("max_bytes", 10**9)),
                                max_age_days=limits.get("max_age_days", 0.0))
    pipeline = Pipeline(source, load_model(model), Settings(), [recorder], metrics)
    pipeline.taps.append(recorder)
    pipeline.run(threading.Event())
    recorder.flush()
    source.close()
    return pipeline, recorder, wav


def test_each_detection_saves_padded_audio_a_spectrogram_and_metadata(
        centre_model: Path, tmp_path: Path) -> None:
    pipeline, _, wav = run_with_evidence(centre_model, tmp_path)
    detections = pipeline.summary.detections
    assert len(detections) == len(CALLS)
    original, _ = soundfile.read(str(wav), dtype="float32")
    for d in detections:
        stem = tmp_path / "evidence" / "upcall" / (
            d.peak_utc.strftime("%Y%m%dT%H%M%S") + f"{d.peak_utc.microsecond // 1000:03d}Z_ch1")
        audio, rate = soundfile.read(str(stem.with_suffix(".wav")), dtype="float32")
        assert rate == CAPTURE_RATE_HZ
        first = round((d.start_seconds - PADDING_SECONDS) * rate)
        assert len(audio) == round((d.end_seconds + PADDING_SECONDS) * rate) - first
        assert np.array_equal(audio, original[first:first + len(audio)])  # the very samples
        png = stem.with_suffix(".png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", png[16:24])
        assert width > 50 and height > 50
        meta = json.loads(stem.with_suffix(".json").read_text())
        assert meta["peak_score"] == round(d.peak_score, 4)
        assert meta["rate_hz"] == CAPTURE_RATE_HZ
        assert meta["clip_start_utc"].startswith("2009-03-29T12:00:")
    assert pipeline.metrics.registry.get_sample_value("whaled_evidence_clips_total") == 3


def test_oldest_clips_go_first_beyond_the_size_limit(centre_model: Path,
                                                    tmp_path: Path) -> None:
    one_clip_bytes = 2 * 5 * CAPTURE_RATE_HZ + 12_000  # ~5 s of 16-bit audio, PNG and JSON
    pipeline, recorder, _ = run_with_evidence(centre_model, tmp_path,
                                              max_bytes=int(one_clip_bytes * 1.5))
    kept = sorted((tmp_path / "evidence" / "upcall").glob("*.wav"))
    newest = pipeline.summary.detections[-1].peak_utc
    assert len(kept) == 1 and kept[0].name.startswith(newest.strftime("%Y%m%dT%H%M%S"))
    assert len(list((tmp_path / "evidence").rglob("*"))) == 4  # upcall/ and one clip's 3 files
    registry = pipeline.metrics.registry
    assert registry.get_sample_value("whaled_evidence_removed_total") == 2
    used = sum(p.stat().st_size for p in (tmp_path / "evidence").rglob("*") if p.is_file())
    assert registry.get_sample_value("whaled_evidence_bytes") == used <= recorder.max_bytes


def test_clips_older_than_the_age_limit_are_removed(centre_model: Path,
                                                    tmp_path: Path) -> None:
    _, recorder, _ = run_with_evidence(centre_model, tmp_path, max_age_days=1.0)
    clips = sorted((tmp_path / "evidence" / "upcall").glob("*.wav"))
    two_days_ago = time.time() - 2 * 86_400
    for path in clips[0].parent.glob(clips[0].stem + ".*"):
        os.utime(path, (two_days_ago, two_days_ago))
    recorder.enforce_limits()
    assert sorted((tmp_path / "evidence" / "upcall").glob("*.wav")) == clips[1:]
    assert not list(clips[0].parent.glob(clips[0].stem + ".*"))


def test_a_reviewed_evidence_folder_is_a_training_dataset(centre_model: Path,
                                                         tmp_path: Path) -> None:
    run_with_evidence(centre_model, tmp_path)
    evidence = tmp_path / "evidence"
    false_alarm = sorted((evidence / "upcall").glob("*.wav"))[0]
    (evidence / "noise").mkdir()
    for path in false_alarm.parent.glob(false_alarm.stem + ".*"):  # the reviewer's move
        path.rename(evidence / "noise" / path.name)
    assert detect_layout(evidence) is Layout.FOLDERS
    labels = {p.name: label for p, label in labelled_clips(evidence, Layout.FOLDERS, "upcall")}
    assert labels[false_alarm.name] == 0
    assert sorted(labels.values()) == [0, 1, 1]


def test_evidence_switched_off_writes_nothing(tmp_path: Path) -> None:
    from detector.live.daemon import open_evidence
    from detector.stream.blocks import StreamInfo

    info = StreamInfo(2000, (1,), datetime(2026, 1, 1, tzinfo=UTC), "flag", "test")
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    settings = Settings(evidence=False, out=str(tmp_path / "out"))
    assert open_evidence(settings, info, metrics) is None
    assert not (tmp_path / "out").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real full disk: a tmpfs of 160 KiB, room for about one and a half clips."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a size-limited tmpfs needs root and mount(8): full-disk test skipped")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({result.stderr.strip()}): full-disk test skipped")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_evidence_disk_is_counted_logged_and_survived(
        centre_model: Path, tmp_path: Path, small_disk: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    wav = calls_recording(tmp_path / "NOPP_20090329_120000.wav", CAPTURE_RATE_HZ, 19.0, CALLS)
    source = FileSource(wav, block_frames=800, speed=0.0)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    recorder = EvidenceRecorder(small_disk, source.info, metrics,
                                padding_seconds=PADDING_SECONDS, max_event_seconds=10.0,
                                delay_seconds=longest_emission_delay_seconds(Settings()),
                                max_bytes=10**9, max_age_days=0.0)
    out = tmp_path / "out"
    pipeline = Pipeline(source, load_model(centre_model), Settings(),
                        [JsonlSink(out), recorder], metrics)
    pipeline.taps.append(recorder)
    caplog.set_level("INFO")
    try:
        pipeline.run(threading.Event())  # libsndfile's RuntimeError once killed the daemon
        recorder.flush()
    finally:
        source.close()
    lines = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert [round(line["start_seconds"]) for line in lines] == [3, 9, 15]  # nothing lost
    errors = metrics.registry.get_sample_value("whaled_sink_errors_total", {"sink": "evidence"})
    assert errors is not None and errors >= 2
    assert any("evidence clip" in r.getMessage() and r.levelname == "ERROR"
               for r in caplog.records)
    saved = metrics.registry.get_sample_value("whaled_evidence_clips_total")
    files = sorted(p.name for p in small_disk.rglob("*") if p.is_file())
    # the disk holds one or two clips (their size depends on the PNG and audio encoders): at
    # least one clip is lost, and each one kept is whole (wav, json, png), no torn or .tmp file
    assert saved is not None and 1 <= saved < 3 and len(files) == 3 * saved, files
    assert not [name for name in files if name.endswith(".tmp")]
    audio, rate = soundfile.read(str(next(small_disk.rglob("*.wav"))), dtype="float32")
    assert rate == CAPTURE_RATE_HZ and len(audio) > 3 * CAPTURE_RATE_HZ


def test_torn_files_a_crash_left_are_removed_at_start(tmp_path: Path) -> None:
    from detector.live.daemon import open_evidence
    from detector.stream.blocks import StreamInfo

    info = StreamInfo(2000, (1,), datetime(2026, 1, 1, tzinfo=UTC), "flag", "test")
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    folder = tmp_path / "out" / "evidence" / "upcall"
    folder.mkdir(parents=True)
    (folder / "20260101T000000000Z_ch1.wav.tmp").write_bytes(b"RIFF")  # killed mid-write
    (folder / "20260101T000001000Z_ch1.wav").write_bytes(b"RIFF....")  # a whole clip stays
    assert open_evidence(Settings(out=str(tmp_path / "out")), info, metrics) is not None
    assert [p.name for p in folder.iterdir()] == ["20260101T000001000Z_ch1.wav"]


def test_a_backlogged_replay_saves_the_real_audio_not_silence(
        centre_model: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """``--speed 0`` scores a full batch (256 windows, 64 s) before any event closes, so a
    detection is emitted a minute after its audio arrived; the clip must still hold it."""
    calls = [(10.0, 1.0), (70.0, 1.0), (110.0, 1.0)]
    wav = calls_recording(tmp_path / "NOPP_20090329_120000.wav", CAPTURE_RATE_HZ, 120.0, calls)
    out = tmp_path / "out"
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{wav}", "--speed", "0",
                          "--model", str(centre_model), "--metrics-port", "0", "--out",
                          str(out)], capture_output=True, text=True, env=subprocess_env,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    original, _ = soundfile.read(str(wav), dtype="float32")
    metas = sorted((out / "evidence" / "upcall").glob("*.json"))
    assert len(metas) == len(calls)
    for meta_path, (call_start, _) in zip(metas, calls, strict=True):
        meta = json.loads(meta_path.read_text())
        audio, _ = soundfile.read(str(meta_path.with_suffix(".wav")), dtype="float32")
        first = round((meta["start_seconds"] - 5.0) * CAPTURE_RATE_HZ)  # default padding 5 s
        assert abs(meta["start_seconds"] - call_start) < 1.0
        assert len(audio) == round(meta["clip_seconds"] * CAPTURE_RATE_HZ) > 10 * 8000
        silent = float(np.mean(audio == 0.0))
        assert silent < 0.01, f"{meta_path.name}: {silent:.0%} of the clip is silence"
        assert np.allclose(audio, original[first:first + len(audio)], atol=1 / 32768)


def test_retention_does_not_walk_the_tree_after_every_clip(
        centre_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walks: list[Path] = []
    real_rglob = Path.rglob

    def counting_rglob(self: Path, pattern: str) -> Iterator[Path]:
        walks.append(self)
        return real_rglob(self, pattern)

    monkeypatch.setattr(Path, "rglob", counting_rglob)
    one_clip_bytes = 2 * 5 * CAPTURE_RATE_HZ + 12_000
    pipeline, recorder, _ = run_with_evidence(centre_model, tmp_path,
                                              max_bytes=int(one_clip_bytes * 1.5))
    assert len([w for w in walks if w == recorder.folder]) == 1  # at start, not per clip
    kept = sorted((tmp_path / "evidence" / "upcall").glob("*.wav"))
    assert len(kept) == 1  # the limit still holds, from what the recorder wrote itself
    used = sum(p.stat().st_size for p in (tmp_path / "evidence").rglob("*") if p.is_file())
    assert pipeline.metrics.registry.get_sample_value("whaled_evidence_bytes") == used


def test_retraining_on_evidence_places_the_call_from_the_clip_metadata(
        centre_model: Path, tmp_path: Path) -> None:
    """A clip is the call with padding either side: a positive is the window around the
    call, not any 2 s of the clip (most of which is the padding)."""
    from detector.annotations.datasets import LoadOptions, load_dataset
    from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
    from detector.model.scoring import centre_crop
    from detector.train.batches import random_crop

    run_with_evidence(centre_model, tmp_path)
    evidence = tmp_path / "evidence"
    false_alarm = sorted((evidence / "upcall").glob("*.wav"))[0]
    (evidence / "noise").mkdir()
    for path in false_alarm.parent.glob(false_alarm.stem + ".*"):
        path.rename(evidence / "noise" / path.name)
    dataset = load_dataset(evidence, LoadOptions(validation_fraction=0.0))
    positives = [e for e in dataset.train if e.label == 1]
    assert len(positives) == 2
    rng = np.random.default_rng(0)
    for example in positives:
        meta = json.loads(Path(example.source).with_suffix(".json").read_text())
        clip_start = meta["start_seconds"] - (
            datetime.fromisoformat(meta["start_utc"].replace("Z", "+00:00"))
            - datetime.fromisoformat(meta["clip_start_utc"].replace("Z", "+00:00"))
        ).total_seconds()  # the clip's first sample, in stream seconds
        call = next((s, s + d) for s, d in CALLS if s < meta["end_seconds"]
                    and meta["start_seconds"] < s + d)
        rate = SAMPLE_RATE_HZ
        true_start = round((call[0] - clip_start - example.start_seconds) * rate)
        true_end = round((call[1] - clip_start - example.start_seconds) * rate)
        assert example.call_samples is not None
        lo, hi = example.call_samples
        assert abs(lo - true_start) <= 0.5 * rate and abs(hi - true_end) <= 0.5 * rate
        for _ in range(50):  # every training window holds the call
            window = random_crop(example, rng)
            offset = next(i for i in range(len(example.audio) - WINDOW_SAMPLES + 1)
                          if np.array_equal(example.audio[i:i + WINDOW_SAMPLES], window))
            assert offset <= lo and hi <= offset + WINDOW_SAMPLES
        centre = centre_crop(example)
        c_off = (len(example.audio) - WINDOW_SAMPLES) // 2
        assert np.array_equal(centre, example.audio[c_off:c_off + WINDOW_SAMPLES])
        assert c_off <= lo and hi <= c_off + WINDOW_SAMPLES  # validation sees the call too


def test_evidence_png_has_axes_and_the_call_band(tmp_path: Path) -> None:
    """0-500 Hz at 3 rows per bin, a tick and label per 100 Hz, the 50-250 Hz band bracketed,
    a second mark per second and the detection bar over its own span."""
    import matplotlib.image

    from detector.outputs import evidence

    rate = 2000
    t = np.arange(rate * 10) / rate
    audio = (0.01 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)
    call = (t >= 4) & (t < 5)  # a 100 -> 200 Hz upcall from 4 s to 5 s
    audio[call] += np.sin(2 * np.pi * (100 * (t[call] - 4) + 50 * (t[call] - 4) ** 2))
    path = tmp_path / "e.png"
    path.write_bytes(evidence.spectrogram_png(audio, rate, (0.4, 0.5)))
    image = np.round(matplotlib.image.imread(path) * 255).astype(int)
    n_fft = 256  # 0.128 s at 2 kHz: 7.8125 Hz per bin, 65 bins to 500 Hz
    rows = 65 * evidence.ROW_SCALE
    top = evidence.MARK_ROWS + 2
    assert image.shape == (top + rows + evidence.BOTTOM_MARGIN,
                           evidence.LEFT_MARGIN + 1 + (len(audio) - n_fft) // 32)
    left = evidence.LEFT_MARGIN
    bar = np.flatnonzero(image[0, left:] == 255)
    assert (bar[0], bar[-1]) == (int(0.4 * (image.shape[1] - left)),
                                 int(0.5 * (image.shape[1] - left)) - 1)
    ticks = np.flatnonzero(image[top:top + rows, left - 1] == evidence.AXIS_GREY)
    assert len(ticks) == 6  # 0, 100, ... 500 Hz
    band = np.flatnonzero(image[top:top + rows, left - 2] == 255)
    hz = (rows - 1 - band) * rate / n_fft / evidence.ROW_SCALE
    assert 45 <= hz.min() <= 55 and 245 <= hz.max() <= 255
    seconds = np.flatnonzero(image[top + rows + 1, left:] == evidence.AXIS_GREY)
    assert len(seconds) == 10 and seconds[1] - seconds[0] == round(rate / 32)  # 0 .. 9 s
    column = image[top:top + rows, left + int(4.5 * rate / 32)]  # frame centred at 4.56 s
    loud = np.flatnonzero(column == column.max()).mean()  # the call, 156 Hz there
    call_hz = (rows - 1 - loud) * rate / n_fft / evidence.ROW_SCALE
    assert 145 <= call_hz <= 168


def test_close_saves_the_clip_still_waiting_for_audio(tmp_path: Path) -> None:
    """A detection whose padding reaches past the last block waits; close() at the end of
    the stream saves it with the audio there is, so nothing detected goes without a clip."""
    rate_hz = 1000
    origin = datetime(2009, 3, 29, 12, tzinfo=UTC)
    info = StreamInfo(rate_hz, (1,), origin, "flag", "test")
    registry = CollectorRegistry()
    recorder = EvidenceRecorder(tmp_path, info, Metrics(registry, (1,), ("upcall",)),
                                padding_seconds=PADDING_SECONDS, max_event_seconds=10.0,
                                delay_seconds=0.0, max_bytes=10**9, max_age_days=0.0)
    recorder.push(0, np.full((4 * rate_hz, 1), 0.1, np.float32))  # 4 s of audio
    start_s, end_s = 2.0, 3.0  # padded to 0.5-4.5 s: 0.5 s of it not yet heard
    recorder.write(Detection(origin + timedelta(seconds=start_s),
                             origin + timedelta(seconds=end_s),
                             origin + timedelta(seconds=2.5), start_s, end_s, 0.9, 1,
                             "upcall", "abc123", 0.5, 0.35, "test"))
    assert registry.get_sample_value("whaled_evidence_clips_total") == 0
    recorder.close()
    assert registry.get_sample_value("whaled_evidence_clips_total") == 1
    (clip,) = (tmp_path / "upcall").glob("*.wav")
    assert clip.name == "20090329T120002500Z_ch1.wav"
    assert soundfile.info(str(clip)).frames == round((4.0 - (start_s - PADDING_SECONDS))
                                                     * rate_hz)
