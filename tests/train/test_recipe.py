"""The recipe file: one TOML file holds the data, network and every training setting; it
round-trips into the model's metadata, and a bad key is one error line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import typer
from conftest import REPO
from test_crossval import CALLS, recording
from typer.testing import CliRunner

from detector.cli import evaluate as evaluate_command
from detector.cli import train as train_command
from detector.model.artifact import load_model, read_metadata
from detector.train.recipe import RecipeError, load_recipe

app = typer.Typer()
app.command("train")(train_command.train)
app.command("evaluate")(evaluate_command.evaluate)  # two commands: "train" stays a word


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("days")
    recording(root / "a", "SITE_20090328_000000", 1, CALLS)
    recording(root / "b", "SITE_20090329_121500", 3, CALLS)
    recording(root / "noise", "OTHER_site_quiet", 4, [])
    return root


def write_recipe(folder: Path, body: str) -> Path:
    path = folder / "r.toml"
    path.write_text(body)
    return path


TINY_RECIPE = """
[data]
folders = ["{days}/a", "{days}/b"]
noise = ["{days}/noise"]

[selection]
cross_validate = "day"
max_false_alarms_per_hour = 3.0

[network]
architecture = "contrast"
width = 4
mean_span_seconds = 0.5
window_mean_too = true
extra_layers = 1

[training]
epochs = 1
batches_per_epoch = 2
batch_size = 8
augment = true
mask_bins = 6
mask_frames = 5
seed = 7

[augmentation]
tilt_probability = 0.25
upcall_seconds = [0.6, 1.2]
"""


def test_the_shipped_recipe_is_the_shipped_model_s() -> None:
    recipe = load_recipe(REPO / "models" / "upcall.toml")
    meta = read_metadata(REPO / "models" / "upcall.pt")
    shipped = meta.extra["recipe"]
    assert shipped["sha256"] == hashlib.sha256(recipe.text.encode()).hexdigest()
    assert shipped["file"] == "models/upcall.toml"
    config = meta.extra["config"]
    assert config["architecture"] == recipe.config.architecture
    assert config["width"] == recipe.config.width
    assert config["epochs"] == recipe.config.epochs
    assert tuple(config["augmentation"]["upcall_seconds"]) == \
        recipe.config.augmentation.upcall_seconds
    assert recipe.cross_validate == meta.extra["cross_validation"]["by"]


def test_a_recipe_round_trips_into_the_model(tmp_path: Path, two_days: Path) -> None:
    recipe = write_recipe(tmp_path, TINY_RECIPE.format(days=two_days))
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, ["train", "--recipe", str(recipe), "--out", str(out),
                                      "--no-progress", "--torch-device", "cpu"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta.extra["recipe"]["text"] == recipe.read_text()
    config = meta.extra["config"]
    assert (config["architecture"], config["width"], config["epochs"], config["seed"],
            config["mask_bins"], config["mask_frames"], config["batches_per_epoch"]) == \
        ("contrast", 4, 1, 7, 6, 5, 2)
    assert config["augmentation"]["tilt_probability"] == 0.25
    assert config["augmentation"]["upcall_seconds"] == [0.6, 1.2]
    assert config["mean_span_seconds"] == 0.5
    module = load_model(out).module
    assert (module.mean_span_frames, module.window_mean_too) == (10, True)  # pools as trained
    assert (config["extra_layers"], module.extra_layers) == (1, 1)  # and is as deep
    cv = meta.extra["cross_validation"]
    assert cv["by"] == "day" and cv["max_false_alarms_per_hour"] == 3.0


@pytest.mark.parametrize(("body", "expected"), [
    ("[training]\nepochz = 3\n", "unknown key 'training.epochz'"),
    ("[trainig]\nepochs = 3\n", "unknown section [trainig]"),
    ("[training]\nepochs = 2.5\n", "'training.epochs': 2.5 is not a whole number"),
    ("[augmentation]\ngain_db = [1]\n", "'augmentation.gain_db': [1] is not a list of 2"),
    ("[selection]\ncross_validate = \"week\"\n", "must be day or recording"),
    ("[network\n", "is not valid TOML"),
])
def test_a_bad_recipe_is_one_error_line(tmp_path: Path, body: str, expected: str) -> None:
    recipe = write_recipe(tmp_path, body)
    with pytest.raises(RecipeError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_recipe(recipe)
    result = CliRunner().invoke(app, ["train", "data", "--recipe", str(recipe)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("whaled: error: recipe ")
    assert expected in lines[0]


def test_a_network_the_recipe_cannot_build_is_refused_before_training(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "[network]\narchitecture = \"contrast\"\n"
                                    "mean_span_seconds = 5.0\n")
    result = CliRunner().invoke(app, ["train", "data", "--recipe", str(recipe)])
    assert result.exit_code == 2
    assert result.output.strip() == ("whaled: error: mean_span_seconds 5.0 must be between "
                                      f"0.05 and 1.3 s (recipe {recipe})")


def test_a_training_flag_beside_a_recipe_is_refused(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "[training]\nepochs = 3\n")
    result = CliRunner().invoke(app, ["train", "data", "--recipe", str(recipe),
                                      "--epochs", "5"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"whaled: error: --epochs cannot be combined with "
                                      f"--recipe: edit {recipe} instead")
