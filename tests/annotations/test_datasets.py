"""Every data layout loads from tiny generated fixtures; corrupt files are skipped and listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from labelled import clip, raven_recording, write

from detector.annotations import datasets
from detector.annotations.datasets import LoadOptions, load_dataset
from detector.annotations.layouts import DatasetError, Layout
from detector.core.intervals import overlaps_any
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.sources import synthetic
from detector.train import examples


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"FORM\x00\x00\x00\x10AIFFnot really audio")
    return path


def test_kaggle_layout_reads_csv_and_aiff(tmp_path: Path) -> None:
    rows = ["clip_name,label"]
    for i in range(10):
        name = f"train{i + 1}.aiff"
        write(tmp_path / "train" / name, clip(2000, i % 2 == 1, i), 2000, format="AIFF",
              subtype="PCM_16")
        rows.append(f"{name},{i % 2}")
    corrupt(tmp_path / "train" / "train11.aiff")
    rows.append("train11.aiff,1")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(tmp_path, LoadOptions(validation_fraction=0.2))
    assert data.layout == Layout.KAGGLE
    assert len(data.train) + len(data.validation) == 10
    assert sorted(Path(e.source).name for e in data.validation) == ["train10.aiff", "train9.aiff"]
    assert len(data.skipped) == 1 and data.skipped[0].startswith("train11.aiff")
    assert data.summary()["skipped"] == 1


def test_icml_layout_labels_from_names_and_resamples(tmp_path: Path) -> None:
    for i in range(8):
        write(tmp_path / f"20090328_0000{i:02d}_TRAIN{i}_{i % 2}.aif", clip(4000, i % 2 == 1, i),
              4000, format="AIFF", subtype="PCM_16")
    data = load_dataset(tmp_path, LoadOptions(validation_fraction=0.25))
    assert data.layout == Layout.ICML
    examples = data.train + data.validation
    assert sorted(e.label for e in examples) == [0] * 4 + [1] * 4
    assert all(len(e.audio) == WINDOW_SAMPLES for e in examples)  # 4 kHz -> 2 kHz


def test_folder_layout_with_configurable_positive(tmp_path: Path) -> None:
    for i in range(6):
        write(tmp_path / "whale" / f"a{i}.wav", clip(8000, True, i), 8000)
        write(tmp_path / "other" / f"b{i}.flac", clip(8000, False, 10 + i), 8000)
    with pytest.raises(DatasetError, match="no folder named 'upcall'"):
        load_dataset(tmp_path)
    data = load_dataset(tmp_path, LoadOptions(positive_label="whale"))
    assert data.layout == Layout.FOLDERS
    labels = {Path(e.source).parent.name: e.label for e in data.train + data.validation}
    assert labels == {"whale": 1, "other": 0}


def test_short_clips_are_padded_to_a_window(tmp_path: Path) -> None:
    for i in range(4):
        write(tmp_path / "upcall" / f"a{i}.wav", clip(2000, True, i, seconds=1.5), 2000)
        write(tmp_path / "noise" / f"b{i}.wav", clip(2000, False, i, seconds=1.5), 2000)
    data = load_dataset(tmp_path)
    assert {len(e.audio) for e in data.train + data.validation} == {WINDOW_SAMPLES}


def test_a_short_positive_is_centred_once_in_noise_not_wrapped() -> None:
    """Issue 17.13: the "reflection" padding wrapped, so a 0.5-s positive became a window
    holding its call four times."""
    rng = np.random.default_rng(4)
    noise = synthetic.ocean_noise(SAMPLE_RATE_HZ // 2, SAMPLE_RATE_HZ, rng)
    call = synthetic.upcall(SAMPLE_RATE_HZ, rng, duration_seconds=0.3) * 0.1
    short = noise.copy()
    short[200:200 + len(call)] += call  # the call in the clip's middle, its edges noise
    window = datasets.fit_window(short)
    assert window.shape == (WINDOW_SAMPLES,) and window.dtype == np.float32
    at = (WINDOW_SAMPLES - len(short)) // 2
    assert at == 1500
    np.testing.assert_array_equal(window[at:at + len(short)], short)  # the clip, untouched
    padding = np.concatenate([window[:at], window[at + len(short):]])
    edge = np.concatenate([short[:100], short[-100:]])  # PAD_EDGE_FRACTION
    assert np.std(padding) == pytest.approx(np.sqrt(np.mean(edge.astype(np.float64) ** 2)),
                                            rel=0.05)
    # the call is heard once: nothing in the padding correlates with it
    match = np.abs(np.correlate(window, call, "valid")) / float(np.sum(call**2))
    assert match.max() > 0.9
    assert np.ptp(np.flatnonzero(match > 0.5)) < 50  # one place, at 1700 samples
    assert abs(int(np.argmax(match)) - (at + 200)) <= 2
    assert np.array_equal(datasets.fit_window(short), window)  # seeded: the same each time
    assert not datasets.fit_window(np.zeros(0, np.float32)).any()  # nothing: silence


def test_raven_layout_cuts_positives_around_calls_and_splits_by_time(tmp_path: Path) -> None:
    calls = [(5.0, 6.2), (20.0, 21.0), (33.0, 34.5), (52.0, 53.0)]
    raven_recording(tmp_path, 60.0, calls, rate_hz=4000)
    write(tmp_path / "unannotated.wav", clip(2000, False, 1, seconds=10), 2000)  # no table
    data = load_dataset(tmp_path, LoadOptions(validation_fraction=0.25))
    assert data.layout == Layout.RAVEN
    assert "by time" in data.split
    train_pos = [e for e in data.train if e.label == 1]
    val_pos = [e for e in data.validation if e.label == 1]
    assert len(train_pos) == 3 and len(val_pos) == 1
    for example in train_pos:
        lo, hi = example.call_samples or (0, 0)
        assert 0 <= lo < hi <= len(example.audio)
    cut_seconds = 45.0
    assert all(e.start_seconds + len(e.audio) / SAMPLE_RATE_HZ <= cut_seconds + 1e-9
               for e in data.train)
    assert all(e.start_seconds >= cut_seconds for e in data.validation)
    for e in data.train + data.validation:  # negatives keep the guard band
        if e.label == 0:
            end = e.start_seconds + len(e.audio) / SAMPLE_RATE_HZ
            assert not overlaps_any((e.start_seconds, end), calls, examples.GUARD_SECONDS)


def test_holdout_span_is_never_read(tmp_path: Path) -> None:
    raven_recording(tmp_path, 60.0, [(5.0, 6.0), (20.0, 21.0), (30.0, 31.0), (50.0, 51.0)])
    data = load_dataset(tmp_path, LoadOptions(holdout_after_seconds=40.0))
    ends = [e.start_seconds + len(e.audio) / SAMPLE_RATE_HZ for e in data.train + data.validation]
    assert max(ends) <= 40.0 + 1e-9


def test_unknown_layout_names_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"train\.csv.*_1\.aif.*folder.*selections"):
        load_dataset(tmp_path)


def test_nothing_usable_is_one_clear_error(tmp_path: Path) -> None:
    corrupt(tmp_path / "upcall" / "a.wav")
    corrupt(tmp_path / "noise" / "b.wav")
    with pytest.raises(DatasetError, match=r"no usable examples.*2 file\(s\) skipped"):
        load_dataset(tmp_path)


def test_time_blocked_folds_hold_out_one_block_and_never_read_the_holdout(
        tmp_path: Path) -> None:
    calls = [(5.0, 6.0), (15.0, 16.0), (25.0, 26.0), (35.0, 36.0), (50.0, 51.0)]
    raven_recording(tmp_path / "data", 60.0, calls)
    noise = write(tmp_path / "noise.wav", clip(8000, False, 3, seconds=12), 8000)
    recordings, skipped = datasets.load_fold_recordings(
        tmp_path / "data", LoadOptions(holdout_after_seconds=45.0), [noise])
    assert skipped == [] and [r.end_seconds for r in recordings] == [45.0, 12.0]
    assert examples.fold_blocks(45.0, 3) == [(0.0, 15.0), (15.0, 30.0), (30.0, 45.0)]
    for fold, (lo, hi) in enumerate(examples.fold_blocks(45.0, 3)):
        data = examples.fold_dataset(recordings, 3, fold)
        # no training audio from the held-out block, nor past the holdout
        for e in (e for e in data.train if "REC_" in e.source):
            end = e.start_seconds + len(e.audio) / SAMPLE_RATE_HZ
            assert end <= lo + 1e-9 or e.start_seconds >= hi - 1e-9
            assert end <= 45.0 + 1e-9
        held = [e for e in data.validation if "REC_" in e.source]
        assert all(lo - 1e-9 <= e.start_seconds <= hi for e in held)
        assert any(e.source == str(noise) for e in data.validation)
    everything = examples.fold_dataset(recordings, 3, None)
    assert sum(e.label for e in everything.train) == 4 and everything.validation == ()
    with pytest.raises(DatasetError, match="Raven"):
        datasets.load_fold_recordings(folder_of_clips(tmp_path), LoadOptions())


def folder_of_clips(root: Path) -> Path:
    for i in range(2):
        write(root / "clips" / "upcall" / f"a{i}.wav", clip(2000, True, i), 2000)
        write(root / "clips" / "noise" / f"b{i}.wav", clip(2000, False, i), 2000)
    return root / "clips"


@pytest.mark.parametrize("rate_hz", [8000, 44100])
def test_training_hears_the_audio_the_pipeline_serves(tmp_path: Path, rate_hz: int) -> None:
    """A recording read for training equals, sample for sample, what the streaming resampler
    gives the pipeline from the same file read in blocks (one filter for both)."""
    from detector.sources.replay import FileSource
    from detector.stream.blocks import Block
    from detector.stream.resample import Resampler

    rng = np.random.default_rng(rate_hz)
    audio = (0.1 * rng.standard_normal((round(7.3 * rate_hz), 2))).astype(np.float32)
    path = tmp_path / "r.wav"
    soundfile.write(str(path), audio, rate_hz, subtype="FLOAT")
    trained_on = datasets.read_audio(path)
    source = FileSource(path, block_frames=12_345, channels=(1,))
    resampler = Resampler(source.info.rate_hz, SAMPLE_RATE_HZ, 1)
    served = []
    while items := [i for i in source.read(1.0) if isinstance(i, Block)]:
        served += [resampler.push(i.samples) for i in items]
    source.close()
    served.append(resampler.flush())
    assert np.array_equal(trained_on, np.concatenate(served)[:, 0])
    assert len(trained_on) == 7.3 * SAMPLE_RATE_HZ


def test_training_reads_the_annotated_channel(tmp_path: Path) -> None:
    """Calls annotated on channel 2 of a 3-channel file are trained on channel 2's audio;
    channel 1's annotation on channel 1's."""
    from helpers import channel_two_recording

    from detector.annotations.layouts import recordings_with_tables

    path = channel_two_recording(tmp_path)
    recordings, skipped = datasets.read_recordings(recordings_with_tables(tmp_path),
                                                   LoadOptions())
    assert skipped == []
    assert [len(r.calls) for r in recordings] == [1, 4]
    for channel, rec in zip((1, 2), recordings, strict=True):
        assert np.array_equal(rec.audio, datasets.read_audio(path, channel))
    assert recordings[1].calls[0] == (5.0, 6.0)
    assert not np.array_equal(recordings[0].audio, recordings[1].audio)
