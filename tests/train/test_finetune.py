"""Fine-tuning from a model archive (``whaled train --init``) and plain training on several
folders, on tiny fixtures: a few batches of the shipped network keep each run to seconds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from detector.annotations.datasets import LoadOptions, read_recordings
from detector.annotations.layouts import expert_tables
from detector.annotations.reviewed import ReviewedLabel, append_reviewed, table_name
from detector.cli import model as model_commands
from detector.cli import train as train_command
from detector.model.artifact import load_model, read_metadata
from detector.train import finetune

app = typer.Typer()
app.command("train")(train_command.train)
app.command("inspect")(model_commands.inspect)

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "upcall.pt"
QUICK = ["--epochs", "1", "--batches-per-epoch", "2", "--batch-size", "8", "--no-progress",
         "--torch-device", "cpu", "--threads", "1"]


def deployment(folder: Path, seconds: float, every_seconds: float) -> Path:
    """One recording with a 1.2-s call every ``every_seconds`` from 4 s, and its table."""
    from labelled import raven_recording

    calls = [(t, t + 1.2) for t in range(4, int(seconds) - 3, int(every_seconds))]
    return raven_recording(folder, seconds, [(float(a), float(b)) for a, b in calls])


def test_init_from_the_shipped_model_keeps_its_hash_network_and_reviewed_counts(
        tmp_path: Path) -> None:
    recording = deployment(tmp_path / "new", 60.0, 6.0)  # 2 calls start in its last 18 s: too few
    review = recording.parent / table_name(recording)
    append_reviewed(review, ReviewedLabel(40.0, 41.2, "not-upcall", reviewer="t"))  # a call
    append_reviewed(review, ReviewedLabel(25.0, 26.0, "upcall", reviewer="t"))  # a new one
    out = tmp_path / "tuned.pt"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "new"), "--init", str(SHIPPED),
                                      "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    parent = meta.extra["parent"]
    assert parent["sha256"] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert (parent["architecture"], parent["width"]) == ("contrast", 16)
    assert (meta.extra["config"]["architecture"], meta.extra["config"]["width"]) == \
        ("contrast", 16)
    assert meta.extra["config"]["mask_bins"] == 8  # the parent's settings, kept
    assert meta.extra["epochs_run"] == 1
    tuned = meta.extra["fine_tune"]
    assert tuned["reviewed"] == {"upcall": 1, "not-upcall": 1, "unsure": 0}
    assert tuned["annotated_calls"] == 9  # 9 expert calls, one struck, one added
    assert tuned["held_out_calls"] == 2 and not tuned["threshold_from_held_out"]
    shipped = read_metadata(SHIPPED).thresholds
    assert meta.thresholds == shipped  # too few held-out calls: the parent's kept, and said
    fit = read_metadata(SHIPPED).extra["calibration"]  # trained raw, the parent's map put back,
    assert (meta.extra["calibration"]["scale"], meta.extra["calibration"]["bias"]) == \
        (fit["scale"], fit["bias"])  # so the kept thresholds mean what they meant
    assert "2 call(s) in the last 30% of the recordings and 7 before it" in result.output
    assert "kept the parent's thresholds" in result.output
    assert meta.extra["data"]["train_pos"] == 9 and meta.extra["data"]["validation_pos"] == 0
    heard = {e["path"] for e in meta.extra["trained_on"]}
    assert recording.name in heard
    before = load_model(SHIPPED).module.state_dict()
    after = load_model(out).module.state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if before[k].is_floating_point()
               and not torch.equal(before[k], after[k])]
    assert "features.0.weight" in changed  # it learned from the parent, not from scratch
    torch.testing.assert_close(before["features.0.weight"], after["features.0.weight"],
                               atol=0.05, rtol=0.0)
    shown = CliRunner().invoke(app, ["inspect", str(out)])
    assert shown.exit_code == 0, shown.output
    assert f"sha256 {parent['sha256']}" in shown.output
    assert "1 reviewed upcall, 1 not-upcall" in shown.output


def test_the_threshold_is_chosen_on_the_held_out_part_when_it_has_calls(
        tmp_path: Path) -> None:
    recording = deployment(tmp_path / "new", 100.0, 5.0)  # 5 calls start in 56-80 s
    parent = finetune.read_parent(SHIPPED)
    recordings, _ = read_recordings([(recording, expert_tables(recording))],
                                    LoadOptions(holdout_after_seconds=80.0))  # 84-94 s unread
    config = finetune.finetune_config(parent, epochs=1, batches_per_epoch=2, batch_size=8,
                                      device="cpu")
    said: list[str] = []
    tuned = finetune.fine_tune(parent, recordings, config, 2.0, say=said.append)
    assert tuned.from_held_out and tuned.held_out_calls == 5
    choice = tuned.result.metadata.extra["threshold_choice"]["chosen"]
    assert choice["n_annotations"] == 5
    assert choice["hours"] == pytest.approx(24 / 3600, rel=0.05)
    assert tuned.result.metadata.thresholds.on == choice["threshold"]
    summary = tuned.result.metadata.extra["data"]
    assert "train 0-56 s, threshold 56-80 s" in summary["split"]
    # the call at 79 s is a held-out call to find, but no whole window around it fits by 80 s
    assert summary["train_pos"] == 11 and summary["validation_pos"] == 4
    assert said == [tuned.message] and "held-out" in said[0]


def test_init_refuses_another_network_and_a_foreign_archive_in_one_line(
        tmp_path: Path, centre_model: Path) -> None:
    deployment(tmp_path / "new", 60.0, 6.0)
    runner = CliRunner()
    for flags, expected in (
            (["--init", str(SHIPPED), "--architecture", "upcall"],
             f"whaled: error: --init {SHIPPED} is a contrast network of width 16, but "
             "architecture upcall was asked for: fine-tuning keeps the parent's network (drop "
             "--architecture), or train afresh without --init"),
            (["--init", str(SHIPPED), "--width", "8"], "but width 8 was asked for"),
            (["--init", str(centre_model)], "records no architecture whaled can build"),
            (["--init", str(tmp_path / "none.pt")], "model file not found"),
            (["--init", str(SHIPPED), "--cross-validate", "day"],
             "--init does not combine with --resume, --recipe")):
        result = runner.invoke(app, ["train", str(tmp_path / "new"), *flags,
                                     "--out", str(tmp_path / "m.pt"), *QUICK])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.output
    assert not (tmp_path / "m.pt").exists()


def test_several_folders_train_without_cross_validation(tmp_path: Path) -> None:
    from labelled import folder_data

    first = folder_data(tmp_path / "site-a", 4)
    second = deployment(tmp_path / "site-b", 60.0, 6.0).parent
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, [
        "train", str(first), str(second), "--out", str(out), "--epochs", "1", "--batch-size",
        "8", "--width", "4", "--validation-fraction", "0.34", "--no-progress",
        "--torch-device", "cpu"])
    assert result.exit_code == 0, result.output
    data = read_metadata(out).extra["data"]
    assert data["layout"] == "folders+raven"
    assert f"{first}: clips in name (time) order" in data["split"]
    assert f"{second}: recordings split by time" in data["split"]
    # the recording's last 34 % (from 39.6 s) validates: its calls at 40, 46 and 52 s
    assert data["validation_pos"] == 3 + 1  # and the last of the four positive clips
    heard = {Path(e["path"]).name for e in read_metadata(out).extra["trained_on"]}
    assert "REC_20090329_121500.wav" in heard and "a00.wav" in heard


def test_a_recording_with_only_reviewed_labels_is_trained_on(tmp_path: Path) -> None:
    """A new deployment reviewed in `whaled review` has no expert table, only its verdicts."""
    from labelled import raven_recording

    from detector.annotations.datasets import load_dataset

    recording = raven_recording(tmp_path, 60.0, [(10.0, 11.2), (30.0, 31.2), (50.0, 51.2)])
    for table in expert_tables(recording):
        table.unlink()
    review = recording.parent / table_name(recording)
    for begin, verdict in ((10.0, "upcall"), (30.0, "upcall"), (50.0, "upcall"),
                           (20.0, "not-upcall")):
        append_reviewed(review, ReviewedLabel(begin, begin + 1.2, verdict, reviewer="t"))
    data = load_dataset(tmp_path, LoadOptions(validation_fraction=0.25))
    # the first 45 s train (calls at 10 and 30 s), the last 15 s validate (the call at 50 s)
    assert [e.label for e in data.train].count(1) == 2
    assert [e.label for e in data.validation].count(1) == 1
    assert "reviewed labels on 1 recording(s): 3 upcall, 1 not-upcall" in data.split
    centred = [e for e in data.train if e.label == 0 and abs(e.start_seconds - 19.35) < 1e-6]
    assert len(centred) == 1  # the not-upcall's own negative, centred on it (2.5 s long)
