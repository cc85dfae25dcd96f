"""The command line a person meets first: version, help width, errors that name the flag,
inputs that cannot make sense, and warnings about slow settings (issue 10)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import REPO, WHALED

SHIPPED_MODEL = REPO / "models" / "upcall.pt"


def whaled(*args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WHALED, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def one_error_line(run: subprocess.CompletedProcess[str], status: int) -> str:
    assert run.returncode == status, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("whaled: error: "), lines[0]
    return lines[0]


def test_version() -> None:
    from detector import __version__

    run = whaled("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"whaled {__version__}\n"


def test_help_is_not_cut_when_piped() -> None:
    """Piped (no terminal), rich used 80 columns and cut option names with an ellipsis."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    for command in ("listen", "detect", "train", "evaluate", "inspect"):
        run = whaled(command, "--help", env=env)
        assert run.returncode == 0, run.stderr
        assert "…" not in run.stdout, (command, run.stdout)
    assert "--max-false-alarms-per-hour" in whaled("train", "--help", env=env).stdout


def test_flag_errors_name_the_flag_typed(tmp_path: Path) -> None:
    line = one_error_line(whaled("listen", "--device", "synthetic", "--hop", "-1"), 2)
    assert line == ("whaled: error: --hop: -1.0 is invalid (between 0.01 and 60) "
                    "(config key 'hop_seconds')")
    line = one_error_line(whaled("detect", str(tmp_path), "--threads", "-2"), 2)
    assert line.startswith("whaled: error: --threads: -2 is invalid")
    line = one_error_line(whaled("listen", "--device", "synthetic", "--on-threshold", "0.3",
                                 "--off-threshold", "0.6"), 2)
    assert line.startswith("whaled: error: --off-threshold: 0.6 is above on_threshold 0.3")
    config = tmp_path / "c.toml"  # a bad value from the file still names the key
    config.write_text("hop_seconds = 0\n")
    line = one_error_line(whaled("listen", "--device", "synthetic", "--config", str(config)), 2)
    assert line == "whaled: error: config key 'hop_seconds': 0.0 is invalid (between 0.01 and 60)"


@pytest.mark.parametrize("argv", [
    ("listen", "--device", "synthetic", "--duration", "inf"),
    ("listen", "--device", "synthetic", "--duration", "1e999"),
    ("detect", ".", "--on-threshold", "nan"),
    ("evaluate", str(SHIPPED_MODEL), ".", "--from-seconds", "inf"),
    ("train", ".", "--learning-rate", "-inf"),
    ("inspect", str(SHIPPED_MODEL), "--at", "nan"),
])
def test_a_non_finite_number_flag_is_one_line_and_exit_2(argv: tuple[str, ...]) -> None:
    """Issue 17.11: ``--duration inf`` was a traceback and exit 1; every command's number
    flags are checked."""
    flag, number = argv[-2], argv[-1]
    shown = {"1e999": "inf", "nan": "nan", "inf": "inf", "-inf": "-inf"}[number]
    line = one_error_line(whaled(*argv), 2)
    assert line == f"whaled: error: {flag}: {shown} is not a finite number"


def test_a_non_finite_config_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("duration_seconds = inf\nqueue_seconds = inf\n")
    line = one_error_line(whaled("listen", "--device", "synthetic", "--config", str(config)), 2)
    assert line == "whaled: error: config key 'duration_seconds': inf is not a finite number"


def test_listen_without_a_device_is_refused(tmp_path: Path) -> None:
    """Never the simulated hydrophone unasked: a service must not report fake upcalls."""
    out = tmp_path / "out"
    line = one_error_line(whaled("listen", "--duration", "1", "--out", str(out)), 2)
    assert "no input device: give --device" in line
    config = tmp_path / "c.toml"
    config.write_text("hop_seconds = 0.5\n")
    line = one_error_line(whaled("listen", "--config", str(config), "--out", str(out)), 2)
    assert "no input device" in line
    assert not out.exists()  # refused before anything was opened or written
    example = (REPO / "deploy" / "whaled.example.toml").read_text()
    assert '\ndevice = ""\n' in example
    assert "whaled listen --device synthetic" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("kind", ["empty", "mistyped"])
def test_detect_on_an_empty_or_mistyped_folder_exits_2(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "recordings"
    if kind == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no audio here")
    run = whaled("detect", str(folder), "--out", str(tmp_path / "out"), "--no-progress")
    line = one_error_line(run, 2)
    if kind == "empty":
        from detector.sources.formats import readable_suffixes

        assert line == (f"whaled: error: no recordings ({' '.join(readable_suffixes())}) in "
                        f"{folder}")
        assert ".wav .flac" in line
    else:
        assert line == f"whaled: error: {folder}: not found"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_on_an_empty_or_mistyped_folder_exit_2(
        tmp_path: Path, command: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    model = [str(SHIPPED_MODEL)] if command == "evaluate" else []
    line = one_error_line(whaled(command, *model, str(empty)), 2)
    assert f"{empty}: no known data layout" in line
    line = one_error_line(whaled(command, *model, str(tmp_path / "typo")), 2)
    assert "not found" in line and str(tmp_path / "typo") in line


def test_devices_with_no_input_device_says_so_and_exits_1(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from detector.cli.main import app
    from detector.sources import devices

    monkeypatch.setattr(devices, "list_input_devices", lambda: [])
    result = CliRunner().invoke(app, ["devices"])
    assert result.exit_code == 1
    assert result.output.strip() == ("whaled: error: no input devices found (PortAudio lists "
                                     "none: is a sound server running?)")


def test_off_grid_hop_warns_that_it_is_slower(tmp_path: Path) -> None:
    from detector.model.artifact import load_model, off_grid_hop_warning, span_grid_samples

    loaded = load_model(SHIPPED_MODEL)
    assert span_grid_samples(loaded) == 100  # 0.05 s at 2 kHz
    assert off_grid_hop_warning(loaded, 0.25) is None
    assert off_grid_hop_warning(loaded, 0.5) is None
    warning = off_grid_hop_warning(loaded, 0.33)
    assert warning is not None
    assert warning.startswith("hop 0.33 s is not a multiple of the model's 0.05 s span grid")
    assert "several times slower; --hop 0.35 keeps the fast path" in warning
    wav = tmp_path / "site_20090329_121500.wav"
    soundfile.write(wav, np.zeros(2000 * 4, np.float32), 2000)
    run = whaled("detect", str(wav), "--out", str(tmp_path / "out"), "--hop", "0.33",
                 "--no-progress", "--threads", "1")
    assert run.returncode == 0, run.stderr
    assert f"WARNING whaled {warning}" in run.stderr
    run = whaled("detect", str(wav), "--out", str(tmp_path / "out2"), "--hop", "0.25",
                 "--no-progress", "--threads", "1")
    assert run.returncode == 0 and "span grid" not in run.stderr, run.stderr


def test_quick_start_output_folder_is_ignored_by_git() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    run = subprocess.run(["git", "check-ignore", "-q", "detections/detections.jsonl"],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, "detections/ (the quick start's output) is not git-ignored"


def test_dask_local_prints_whaled_lines_only(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    wav = tmp_path / "rec" / "site_20090329_121500.wav"
    wav.parent.mkdir()
    soundfile.write(wav, np.zeros(2000 * 4, np.float32), 2000)
    run = whaled("detect", str(wav.parent), "--out", str(tmp_path / "out"), "--dask", "local",
                 "--no-progress", "--threads", "1", timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert "distributed" not in run.stderr, run.stderr
    assert lines[0].startswith("INFO whaled.detect detect model=")
    assert any(line.startswith("detect: 1 recording (") for line in lines), run.stderr


def test_inspect_saliency_rests_on_the_synthetic_call(tmp_path: Path) -> None:
    """The shipped model's score over a synthetic 90 -> 180 Hz upcall (0.5-1.5 s of the
    window, with harmonics as real upcalls have) rests on tiles of the call, its fundamental
    or its second harmonic (180 -> 360 Hz), not on the noise around it."""
    import json

    import matplotlib.image

    from detector.model import inspection
    from detector.model.artifact import load_model

    loaded = load_model(SHIPPED_MODEL)
    result = inspection.occlusion_saliency(loaded, inspection.synthetic_window(loaded), "x")
    assert result.drop.shape == (20, 16)  # 0-500 Hz in 25 Hz, 2 s in 0.125 s tiles
    assert result.score > 0.5  # called a call (0.9997 by the model shipped now)
    fi, ti = np.unravel_index(int(np.argmax(result.drop)), result.drop.shape)
    assert 75 <= fi * 25 < 375 and 0.5 <= ti * 0.125 < 1.5
    on_call = np.zeros(result.drop.shape, bool)
    on_call[3:15, 4:12] = True  # 75-375 Hz (fundamental and second harmonic), 0.5-1.5 s
    assert result.drop[on_call].max() > 1.0 > np.abs(result.drop[~on_call]).max()
    png = tmp_path / "saliency.png"
    run = whaled("inspect", str(SHIPPED_MODEL), "--saliency", str(png), "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)["saliency"]
    assert doc["source"] == "synthetic upcall, 0 dB SNR" and doc["png"] == str(png)
    assert doc["top_tile_hz"] == [fi * 25.0, (fi + 1) * 25.0]
    assert matplotlib.image.imread(png).shape[:2] == (440, 1100)  # 11 x 4.4 in at 100 dpi


def test_inspect_saliency_window_outside_the_recording_is_one_line(tmp_path: Path) -> None:
    wav = tmp_path / "short.wav"
    soundfile.write(wav, np.zeros(8000 * 3, np.float32), 8000)
    line = one_error_line(whaled("inspect", str(SHIPPED_MODEL), "--saliency",
                                 str(tmp_path / "s.png"), "--audio", str(wav), "--at", "2"), 2)
    assert line == (f"whaled: error: --at 2: the 2 s window must start between 0 and 1 s in "
                    f"{wav} (3 s long)")
    assert not (tmp_path / "s.png").exists()


def test_inspect_saliency_over_a_real_call() -> None:
    """PAMGuard's right whale example: an upcall 0.1-1.25 s into the window at 0 s, its
    fundamental rising 75-135 Hz, its second harmonic 150-270 Hz; the score rests on the
    call, in the 50-250 Hz call band, not on the noise after it. (The window at 0.5 s cuts
    the call's start off: the shipped models score it 0.000, so its saliency means nothing.)"""
    from conftest import SHARED_DATA

    from detector.model import inspection
    from detector.model.artifact import load_model

    wav = SHARED_DATA / "pamguard" / "right_whale_example.wav"
    if not wav.exists():
        pytest.skip(f"real recording not found: {wav} is absent (../shared/data)")
    loaded = load_model(SHIPPED_MODEL)
    window, source = inspection.saliency_window(loaded, wav, 0.0)
    assert source == "right_whale_example.wav at 0 s" and len(window) == 4000
    result = inspection.occlusion_saliency(loaded, window, source)
    fi, ti = np.unravel_index(int(np.argmax(result.drop)), result.drop.shape)
    assert 50 <= fi * 25 < 250 and 0.1 <= ti * 0.125 < 1.25
