"""The public API, used as the README shows: load the model, scan a file and an array, write
and read a Raven table; and importing the package loads nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile

import detector

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_importing_the_package_imports_no_torch_or_numpy() -> None:
    probe = ("import sys, detector; print(sorted({'torch', 'numpy', 'scipy', 'soundfile'} & "
             "{m.split('.')[0] for m in sys.modules}), sorted(detector.__all__)[:3])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split("] ")[0] + "]" == "[]"


def test_the_readme_example_finds_the_call_in_a_file_and_in_an_array(tmp_path: Path) -> None:
    model = detector.load_model()
    assert model.metadata.sample_rate_hz == 2000
    path = FIXTURES / "stereo_2khz_call_on_2.flac"
    found = detector.scan_file(path, model)
    assert [d.channel for d in found] == [2]  # the call is on channel 2 only
    assert 1.0 <= found[0].start_seconds <= 2.0 and 2.0 <= found[0].end_seconds <= 3.5

    audio, rate = soundfile.read(path, dtype="float32")
    start = datetime(2009, 3, 28, 0, 15, tzinfo=UTC)
    in_memory = detector.scan_array(audio[:, 1], rate, model, origin_utc=start)
    assert len(in_memory) == 1 and in_memory[0].channel == 1
    assert abs(in_memory[0].start_seconds - found[0].start_seconds) < 1e-6
    assert in_memory[0].start_utc == start + timedelta(seconds=in_memory[0].start_seconds)
    assert detector.scan_array(audio[:, 1], rate, model, on_threshold=1.0) == []

    table = tmp_path / "found.selections.txt"
    detector.write_raven(table, found)
    read = detector.read_raven(table)
    assert [(s.channel, s.begin_seconds) for s in read] == [
        (2, round(found[0].start_seconds, 3))]


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    import pytest

    from detector.outputs.raven import RavenError
    from detector.sources.replay import SourceError

    with pytest.raises(ValueError, match="frames"):
        detector.scan_array(np.zeros((2, 2, 2), np.float32), 2000)
    with pytest.raises(SourceError, match=r"cannot read .*missing\.wav"):
        detector.scan_file(tmp_path / "missing.wav")
    (tmp_path / "notes.txt").write_text("Selection\tNote\n1\thello\n")
    with pytest.raises(RavenError, match="not a Raven selection table"):
        detector.read_raven(tmp_path / "notes.txt")
