"""The self-test: a reference upcall mixed into recent live audio, scored in a side path
(issue 12). It passes with a working model, fails with one that outputs zeros, and never
writes a detection."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DCLDE_WAV, require_shared_data
from helpers import RATE_HZ, WINDOW_SAMPLES
from prometheus_client import CollectorRegistry
from torch import nn

from detector.blocks import Block, StreamInfo, utc_now
from detector.config import Settings
from detector.metrics import Metrics
from detector.model import ModelMetadata, Thresholds, load_model, save_model
from detector.pipeline import Pipeline
from detector.selftest import SelfTest
from detector.sources import FileSource, ListSource
from detector.synthetic import ocean_noise

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "upcall.pt"


class Zeros(nn.Module):
    """A scoring path broken the quiet way: audio in, nothing ever detected."""

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.zeros(audio.shape[0], 1)


def zeros_model(path: Path) -> Path:
    save_model(Zeros(), ModelMetadata(RATE_HZ, WINDOW_SAMPLES, ("upcall",),
                                      Thresholds(on=0.5, off=0.5), version="zeros"), path)
    return path


def noise_pipeline(model: Path, seconds: float = 20.0) -> tuple[Pipeline, SelfTest, Metrics]:
    audio = ocean_noise(int(seconds * RATE_HZ), RATE_HZ, np.random.default_rng(5))
    info = StreamInfo(RATE_HZ, (1,), utc_now(), "clock", "test")
    blocks = [Block(i, audio[i:i + 200, None]) for i in range(0, len(audio), 200)]
    registry = CollectorRegistry()
    metrics = Metrics(registry, (1,), ("upcall",))
    pipeline = Pipeline(ListSource(info, blocks, per_read=10), load_model(model), Settings(),
                        [], metrics)
    selftest = SelfTest(metrics, 600.0, RATE_HZ)
    pipeline.taps.append(selftest)
    pipeline.run(threading.Event())
    return pipeline, selftest, metrics


def value(metrics: Metrics, name: str) -> float:
    got = metrics.registry.get_sample_value(name)
    assert got is not None, name
    return got


def test_a_working_model_passes_and_nothing_reaches_the_outputs(centre_model: Path) -> None:
    pipeline, selftest, metrics = noise_pipeline(centre_model)
    assert pipeline.summary.detection_count == 0  # noise only
    assert selftest.run(pipeline) is True
    assert pipeline.summary.detection_count == 0  # the reference call stays in the side path
    assert value(metrics, "whaled_selftest_last_success_timestamp_seconds") > 1.7e9
    assert value(metrics, "whaled_selftest_score") >= pipeline.thresholds.on
    assert value(metrics, "whaled_selftest_failures_total") == 0
    assert value(metrics, "whaled_selftest_runs_total") == 1


def test_a_model_that_outputs_zeros_fails(tmp_path: Path) -> None:
    pipeline, selftest, metrics = noise_pipeline(zeros_model(tmp_path / "zeros.pt"))
    assert selftest.run(pipeline) is False
    assert value(metrics, "whaled_selftest_last_success_timestamp_seconds") == 0
    assert value(metrics, "whaled_selftest_score") == 0.0
    assert value(metrics, "whaled_selftest_failures_total") == 1


def test_not_enough_audio_yet_waits(centre_model: Path) -> None:
    pipeline, selftest, metrics = noise_pipeline(centre_model, seconds=5.0)
    selftest._next_monotonic = 0.0  # due now
    selftest(pipeline)
    assert value(metrics, "whaled_selftest_runs_total") == 0


def test_the_shipped_model_passes_on_real_ocean_noise() -> None:
    require_shared_data()
    if not SHIPPED_MODEL.exists():
        pytest.skip("models/upcall.pt is not built")
    source = FileSource(DCLDE_WAV, block_frames=200, duration_seconds=30.0)  # no call in it
    loaded = load_model(SHIPPED_MODEL)
    metrics = Metrics(CollectorRegistry(), (1,), loaded.metadata.labels)
    pipeline = Pipeline(source, loaded, Settings(), [], metrics)
    selftest = SelfTest(metrics, 600.0, source.info.rate_hz)
    pipeline.taps.append(selftest)
    pipeline.run(threading.Event())
    source.close()
    assert selftest.run(pipeline) is True, value(metrics, "whaled_selftest_score")
