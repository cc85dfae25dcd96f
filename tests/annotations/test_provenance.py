"""A model records what it was trained on, and ``whaled evaluate`` says when it scores that."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detector.annotations import provenance
from detector.annotations.datasets import LoadOptions, load_dataset
from detector.cli.main import app
from detector.model.artifact import ModelMetadata, read_metadata, save_model
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, build_network
from detector.stream.events import Thresholds

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CALLS = [(5.0, 6.0), (15.0, 16.2), (30.0, 31.0)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_with(extra: dict[str, object], path: Path) -> Path:
    """An untrained tiny network whose metadata says it was trained on ``extra``."""
    import torch

    torch.manual_seed(3)
    metadata = ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",), Thresholds(0.5, 0.4),
                             extra=extra)
    save_model(build_network("upcall", 4), metadata, path)
    return path


def test_training_data_is_recorded_by_relative_path_hash_and_how_far_it_was_read(
        tmp_path: Path) -> None:
    from labelled import raven_recording

    first = raven_recording(tmp_path / "data" / "a", 40.0, CALLS)
    second = raven_recording(tmp_path / "data" / "b", 40.0, CALLS[:1])
    dataset = load_dataset(tmp_path / "data", LoadOptions(holdout_after_seconds=25.0))
    entries = provenance.trained_on(dataset)
    assert [e["path"] for e in entries] == ["a/REC_20090329_121500.wav",
                                            "b/REC_20090329_121500.wav"]
    assert [e["sha256"] for e in entries] == [sha256(first), sha256(second)]
    assert [e["bytes"] for e in entries] == [first.stat().st_size, second.stat().st_size]
    assert all(20.0 < float(str(e["until_seconds"])) <= 25.0 for e in entries)  # the holdout


def test_evaluate_warns_for_each_recording_the_model_trained_on(tmp_path: Path) -> None:
    from labelled import raven_recording

    heard = raven_recording(tmp_path / "train", 12.0, [(3.0, 4.0)])
    unheard = raven_recording(tmp_path / "test", 12.0, [(5.0, 6.0)])
    copy = tmp_path / "test" / "renamed_20090330_000000.wav"
    shutil.copy(heard, copy)  # the same bytes under another name still match
    shutil.copy(heard.with_suffix(".Table.1.selections.txt"),
                copy.with_suffix(".Table.1.selections.txt"))
    model = model_with({"trained_on": [{"path": "train/REC_20090329_121500.wav",
                                        "sha256": sha256(heard), "bytes": heard.stat().st_size,
                                        "until_seconds": 10.0}]}, tmp_path / "m.pt")
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(model), str(tmp_path / "test"), str(heard),
                                 "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2, result.stderr
    assert any(str(copy) in w and "the same bytes as train/REC_20090329_121500.wav" in w
               for w in warnings)
    assert any(w.startswith(f"whaled: warning: {heard}:") for w in warnings)
    assert all("not out-of-sample" in w and str(unheard) not in w for w in warnings)
    assert len(json.loads(result.stdout)["not_out_of_sample"]) == 2
    after = runner.invoke(app, ["evaluate", str(model), str(copy), "--from-seconds", "10",
                                "--json", "--no-progress"])
    assert after.exit_code == 0, after.output
    assert "warning" not in after.stderr  # scored only past what training read
    assert "not_out_of_sample" not in json.loads(after.stdout)


def test_models_that_record_only_names_are_matched_by_name(tmp_path: Path) -> None:
    shipped = {k: v for k, v in read_metadata(REPO / "models" / "upcall.pt").extra.items()
               if k != "trained_on"}  # as written before hashes were recorded
    held = SHARED / "dclde2013-20090328" / "NOPP6_EST_20090328_000000.wav"
    other = tmp_path / "NOPP6_EST_20090401_000000.wav"
    lines = provenance.overlap_warnings(shipped, [held, other])
    assert len(lines) == 1 and lines[0].startswith(f"{held}: ")
    fold = read_metadata(REPO / "models" / "upcall.fold-2009-03-28.pt").extra
    assert provenance.overlap_warnings(fold, [held]) == []  # its held-out day
    trained = SHARED / "dclde2013" / "NOPP6_EST_20090329_121500.wav"
    assert len(provenance.overlap_warnings(fold, [trained])) == 1


def test_a_fold_model_keeps_the_hashes_of_all_but_its_held_out_recordings() -> None:
    entries = [{"path": "a/X.wav", "sha256": "1"}, {"path": "b/Y.wav", "sha256": "2"},
               {"path": "noise/Z.wav", "sha256": "3"}]
    assert [e["sha256"] for e in provenance.without(entries, ["X.wav"])] == ["2", "3"]


def test_only_files_of_a_size_trained_on_are_hashed(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    same, other = tmp_path / "same.wav", tmp_path / "other.wav"
    same.write_bytes(b"x" * 10)
    other.write_bytes(b"y" * 11)
    hashed: list[str] = []
    real = provenance.content_sha256

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(provenance, "content_sha256", counting)
    extra = {"trained_on": [{"path": "a/same.wav", "sha256": sha256(same), "bytes": 10}]}
    assert len(provenance.overlap_warnings(extra, [same, other])) == 1
    assert hashed == ["same.wav"]


@pytest.mark.parametrize("missing", [{}, {"trained_on": []}])
def test_a_model_that_records_nothing_warns_about_nothing(missing: dict[str, object],
                                                          tmp_path: Path) -> None:
    path = tmp_path / "X.wav"
    path.write_bytes(b"x")
    assert provenance.overlap_warnings(missing, [path]) == []
