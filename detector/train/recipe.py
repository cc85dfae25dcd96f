"""A training recipe: the data, the network and every training setting in one TOML file.

``whaled train --recipe models/upcall.toml`` reads it, and the model's metadata carries it
whole (its text and hash), so two recipes are one ``diff`` apart and the shipped model is
reproduced by one command. Sections and keys (each optional; absent keys keep
:class:`~detector.train.loop.TrainConfig`'s and :class:`~detector.train.augment.Augmentation`'s
defaults):

- ``[data]``: ``folders`` (annotated recordings), ``noise`` (negatives only), ``reviewed``
  (reviewed-label folders), ``out`` (the model archive); paths relative to the directory
  ``whaled train`` runs in (the repository root for the shipped recipe);
- ``[selection]``: ``cross_validate`` (``day`` or ``recording``), ``nested`` (true: each
  held-out group judged at a threshold chosen inside its training data),
  ``max_false_alarms_per_hour``;
- ``[network]``: ``architecture``, ``width``, ``mean_span_seconds``, ``window_mean_too``,
  ``extra_layers``;
- ``[training]``: any other :class:`~detector.train.loop.TrainConfig` field but ``device``;
- ``[augmentation]``: any :class:`~detector.train.augment.Augmentation` field.

An unknown section or key, or a value of the wrong kind, is a :class:`RecipeError` naming it.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from detector.core.errors import WhaledError
from detector.train.augment import Augmentation
from detector.train.loop import TrainConfig

NETWORK_KEYS = ("architecture", "width", "mean_span_seconds", "window_mean_too",
                "extra_layers")
NOT_IN_RECIPE = ("device", "augmentation", *NETWORK_KEYS)  # machine settings, or own sections
SELECTION_DEFAULTS: dict[str, Any] = {"cross_validate": None, "nested": False,
                                      "max_false_alarms_per_hour": 2.0}
DATA_KEYS = ("folders", "noise", "reviewed", "out")


class RecipeError(WhaledError):
    """A recipe file that cannot be used; the message is one line naming the key."""


@dataclass(frozen=True)
class Recipe:
    path: Path
    text: str  # the file as written
    config: TrainConfig
    folders: tuple[Path, ...]
    noise: tuple[Path, ...]
    reviewed: tuple[Path, ...]
    out: Path | None
    cross_validate: str | None
    nested: bool
    max_false_alarms_per_hour: float

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def as_dict(self) -> dict[str, object]:
        """What the model's metadata carries: where the recipe was, its hash and its text."""
        return {"file": str(self.path), "sha256": self.sha256, "text": self.text}


def _coerce(where: str, value: Any, default: Any) -> Any:
    """``value`` as the kind of ``default`` (TOML arrays become tuples of floats)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: {value!r} is not true or false")
        return value
    if isinstance(default, tuple):
        if not (isinstance(value, list) and len(value) == len(default)
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            raise RecipeError(f"{where}: {value!r} is not a list of {len(default)} numbers")
        return tuple(float(v) for v in value)
    if isinstance(default, int | float) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"{where}: {value!r} is not a number")
        if isinstance(default, int) and not isinstance(value, int):
            raise RecipeError(f"{where}: {value!r} is not a whole number")
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise RecipeError(f"{where}: {value!r} is not a string")
    return value


def _section(doc: dict[str, Any], name: str, defaults: dict[str, Any], path: Path
             ) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise RecipeError(f"recipe {path}: [{name}] is not a table")
    out = {}
    for key, value in table.items():
        if key not in defaults:
            raise RecipeError(f"recipe {path}: unknown key '{name}.{key}' (known: "
                              f"{', '.join(sorted(defaults))})")
        out[key] = _coerce(f"recipe {path}: '{name}.{key}'", value, defaults[key])
    return out


def _paths(doc: dict[str, Any], key: str, path: Path) -> tuple[Path, ...]:
    value = doc.get("data", {}).get(key, [])
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise RecipeError(f"recipe {path}: 'data.{key}' is not a list of paths")
    return tuple(Path(v) for v in value)


def load_recipe(path: Path) -> Recipe:
    """Read and check ``path``; every error is one :class:`RecipeError` line."""
    try:
        text = Path(path).read_text()
        doc = tomllib.loads(text)
    except FileNotFoundError:
        raise RecipeError(f"recipe not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
        raise RecipeError(f"recipe {path} is not valid TOML: {error}") from None
    sections = ("data", "selection", "network", "training", "augmentation")
    for name in doc:
        if name not in sections:
            raise RecipeError(f"recipe {path}: unknown section [{name}] (known: "
                              f"{', '.join(sections)})")
    config_defaults = {f.name: getattr(TrainConfig(), f.name) for f in fields(TrainConfig)}
    network = _section(doc, "network", {k: config_defaults[k] for k in NETWORK_KEYS}, path)
    training = _section(doc, "training", {k: v for k, v in config_defaults.items()
                                          if k not in NOT_IN_RECIPE}, path)
    augmentation = _section(doc, "augmentation", {f.name: getattr(Augmentation(), f.name)
                                                  for f in fields(Augmentation)}, path)
    selection = _section(doc, "selection", {**SELECTION_DEFAULTS, "cross_validate": "",
                                            "max_false_alarms_per_hour": 2.0}, path)
    _section(doc, "data", {"folders": [], "noise": [], "reviewed": [], "out": ""}, path)
    out = doc.get("data", {}).get("out")
    if out is not None and not isinstance(out, str):
        raise RecipeError(f"recipe {path}: 'data.out' is not a path")
    by = selection.get("cross_validate") or None
    if by not in (None, "day", "recording"):
        raise RecipeError(f"recipe {path}: 'selection.cross_validate' must be day or recording")
    config = TrainConfig(**network, **training, augmentation=Augmentation(**augmentation))
    return Recipe(Path(path), text, config, _paths(doc, "folders", path),
                  _paths(doc, "noise", path), _paths(doc, "reviewed", path),
                  None if out is None else Path(out), by, bool(selection.get("nested", False)),
                  float(selection.get("max_false_alarms_per_hour", 2.0)))
