from dataclasses import fields
from pathlib import Path

import pytest
from conftest import REPO

from detector.core import config
from detector.core.config import ConfigError, Settings

EXAMPLE = REPO / "deploy" / "whaled.example.toml"


def test_example_documents_every_key_with_its_default() -> None:
    import tomllib

    doc = tomllib.loads(EXAMPLE.read_text())
    names = {f.name for f in fields(Settings)}
    assert set(doc) == names
    loaded = config.load(EXAMPLE, {})
    assert loaded == Settings()


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('hop_seconds = 0.5\ndevice = "pulse"\nchannels = [1, 3]\n')
    settings = config.load(path, {"device": "synthetic", "hop_seconds": None})
    assert settings.device == "synthetic"
    assert settings.hop_seconds == 0.5
    assert settings.channels == (1, 3)


@pytest.mark.parametrize(("text", "message"), [
    ("hopp_seconds = 1", "unknown config key 'hopp_seconds'"),
    ('hop_seconds = "fast"', "config key 'hop_seconds': expected float"),
    ("hop_seconds = 0", "config key 'hop_seconds': 0.0 is invalid"),
    ("metrics_port = 70000", "config key 'metrics_port'"),
    ("on_threshold = 0.3\noff_threshold = 0.6", "config key 'off_threshold'"),
    ('origin_utc = "yesterday"', "config key 'origin_utc'"),
    ("channels = [0]", "config key 'channels'"),
    ("hop_seconds = [", "is not valid TOML"),
    ("duration_seconds = inf", "config key 'duration_seconds': inf is not a finite number"),
    ("queue_seconds = inf", "config key 'queue_seconds': inf is not a finite number"),
    ("on_threshold = nan", "config key 'on_threshold': nan is not a finite number"),
    ("speed = -inf", "config key 'speed': -inf is not a finite number"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config.load(path, {})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml", {})
