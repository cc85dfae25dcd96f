"""The model archive on disk: one read gives the metadata, the module and the hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from helpers import CentreBandModel, centre_band_model

from detector.model import artifact as model_module
from detector.model.artifact import HASH_HEX_CHARS, ModelMetadata, load_model, save_model
from detector.stream.events import Thresholds


class Constant(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.full((audio.shape[0], 1), self.value)


def test_a_file_replaced_while_loading_cannot_pair_one_model_with_another_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is swapped (as a deploy before a SIGHUP would) after the metadata was read:
    the loaded module, its metadata and its hash must still all be the first file's."""
    path = centre_band_model(tmp_path / "model.pt")
    first_bytes = path.read_bytes()
    other = tmp_path / "other.pt"
    save_model(Constant(0.25), ModelMetadata(2000, 4000, ("upcall",), Thresholds(0.9, 0.8),
                                             version="other"), other)
    real_load = torch.jit.load

    def load_after_a_swap(source: object, *args: object, **kwargs: object) -> object:
        other.replace(path)  # the deploy lands between the reads
        return real_load(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(model_module.torch.jit, "load", load_after_a_swap)
    loaded = load_model(path)
    assert loaded.content_hash == hashlib.sha256(first_bytes).hexdigest()[:HASH_HEX_CHARS]
    assert loaded.metadata.version == "test-centre-band"
    silent = torch.zeros(1, 4000)
    with torch.inference_mode():
        expected = CentreBandModel()(silent)
        assert float(loaded.module(silent)) == pytest.approx(float(expected))
        assert float(loaded.module(silent)) != pytest.approx(0.25)
