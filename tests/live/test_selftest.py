"""The self-test: a reference upcall mixed into recent live audio, scored in a side path
(issue 12). It passes with a working model, fails with one that outputs zeros, and never
writes a detection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DCLDE_WAV, require_shared_data
from conftest import WHALED as WHALED_CMD
from helpers import RATE_HZ, WINDOW_SAMPLES
from prometheus_client import CollectorRegistry
from torch import nn

from detector.core.config import Settings
from detector.live.selftest import SELFTEST_MARGIN_LOGIT, SELFTEST_PLACES, SelfTest, logit
from detector.model.artifact import ModelMetadata, load_model, save_model
from detector.outputs.metrics import Metrics
from detector.sources.replay import FileSource, ListSource
from detector.sources.synthetic import SyntheticHydrophone, ocean_noise
from detector.stream.blocks import Block, StreamInfo, utc_now
from detector.stream.events import Thresholds
from detector.stream.pipeline import Pipeline

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "upcall.pt"


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
    assert selftest.run(pipeline.status()) is True
    assert pipeline.summary.detection_count == 0  # the reference call stays in the side path
    assert value(metrics, "whaled_selftest_last_success_timestamp_seconds") > 1.7e9
    assert value(metrics, "whaled_selftest_score") >= pipeline.thresholds.on
    assert value(metrics, "whaled_selftest_failures_total") == 0
    assert value(metrics, "whaled_selftest_runs_total") == 1


def test_a_model_that_outputs_zeros_fails(tmp_path: Path) -> None:
    pipeline, selftest, metrics = noise_pipeline(zeros_model(tmp_path / "zeros.pt"))
    assert selftest.run(pipeline.status()) is False
    assert value(metrics, "whaled_selftest_last_success_timestamp_seconds") == 0
    assert value(metrics, "whaled_selftest_score") == 0.0
    assert value(metrics, "whaled_selftest_failures_total") == 1


def test_not_enough_audio_yet_waits(centre_model: Path) -> None:
    pipeline, selftest, metrics = noise_pipeline(centre_model, seconds=5.0)
    selftest._next_monotonic = 0.0  # due now
    selftest(pipeline.status())
    assert value(metrics, "whaled_selftest_runs_total") == 0


def test_the_shipped_model_passes_on_real_ocean_noise() -> None:
    require_shared_data()
    if not SHIPPED_MODEL.exists():
        pytest.skip("models/upcall.pt is not built")
    source = FileSource(DCLDE_WAV, block_frames=200)  # no call in its first 30 s
    loaded = load_model(SHIPPED_MODEL)
    metrics = Metrics(CollectorRegistry(), (1,), loaded.metadata.labels)
    pipeline = Pipeline(source, loaded, Settings(duration_seconds=30.0), [], metrics)
    selftest = SelfTest(metrics, 600.0, source.info.rate_hz)
    pipeline.taps.append(selftest)
    pipeline.run(threading.Event())
    source.close()
    assert selftest.run(pipeline.status()) is True, value(metrics, "whaled_selftest_score")


def selftests_on_simulated_station(model: Path, runs: int) -> Metrics:
    """``runs`` self-tests, each on a different 12 s of the simulated station (ocean noise,
    calls, ship tones, clicks, downsweeps), at the model's own threshold."""
    pipeline, selftest, metrics = noise_pipeline(model, seconds=12.0)
    rate = pipeline.loaded.metadata.sample_rate_hz
    station = SyntheticHydrophone(rate, runs * 97.0 + 20, seed=1)
    status = pipeline.status()
    reference = selftest.calibrate(status)
    assert reference.passes, reference
    assert logit(reference.worst_score) - logit(status.thresholds.on) >= SELFTEST_MARGIN_LOGIT
    for k in range(runs):
        selftest._ring.clear()
        selftest._expected = None
        selftest.push(0, station.chunk(int(k * 97 * rate), int(12 * rate))[:, None])
        selftest.run(status)
    return metrics


@pytest.mark.parametrize("model", ["shipped", "tiny"])
def test_a_healthy_simulated_station_never_fails_its_self_test(
        model: str, centre_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 17.8: 2 of 7 runs failed at 0.989 against on=0.990 with the shipped model; the
    reference is now chosen for the model, with margin, and mixed in at several places."""
    if model == "shipped" and not SHIPPED_MODEL.exists():
        pytest.skip("models/upcall.pt is not built")
    caplog.set_level("INFO", "whaled.selftest")
    metrics = selftests_on_simulated_station(
        SHIPPED_MODEL if model == "shipped" else centre_model, runs=8)
    assert value(metrics, "whaled_selftest_runs_total") == 8
    assert value(metrics, "whaled_selftest_failures_total") == 0, caplog.text
    assert value(metrics, "whaled_selftest_reference_unfit_total") == 0
    assert "self-test reference:" in caplog.text
    assert f"of {SELFTEST_PLACES} reference calls" in caplog.text


def test_a_model_that_cannot_pass_its_reference_is_named_at_start_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pipeline, selftest, metrics = noise_pipeline(zeros_model(tmp_path / "zeros.pt"))
    caplog.set_level("INFO", "whaled.selftest")
    reference = selftest.calibrate(pipeline.status())
    assert not reference.passes
    assert reference.worst_score == 0.0
    assert value(metrics, "whaled_selftest_reference_unfit_total") == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "cannot pass its own reference call with margin" in warnings[0].getMessage()
    assert "zeros.pt" in warnings[0].getMessage()


def scrape(port: int) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if not s.labels}


def test_a_zeros_model_swapped_in_by_sighup_fails_the_self_test_while_audio_flows(
        centre_model: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The failure "audio flows but nothing can be detected" becomes visible in /metrics."""
    import signal
    import socket
    import subprocess

    from conftest import WHALED

    zeros = zeros_model(tmp_path / "zeros.pt")
    config = tmp_path / "whaled.toml"
    config.write_text(f'model = "{centre_model}"\nselftest_interval_seconds = 1.0\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines: list[str] = []
    seen: dict[str, dict[str, float]] = {}
    with subprocess.Popen(
            [*WHALED, "listen", "--config", str(config), "--device", "synthetic", "--speed",
             "2", "--duration", "60", "--metrics-port", str(port), "--out",
             str(tmp_path / "out")],
            stderr=subprocess.PIPE, text=True, env=subprocess_env) as process:
        assert process.stderr is not None
        deadline = time.monotonic() + 120
        for line in process.stderr:
            lines.append(line.rstrip())
            if time.monotonic() > deadline:
                process.kill()
                break
            if "self-test passed" in line and "passed" not in seen:
                seen["passed"] = scrape(port)
                config.write_text(f'model = "{zeros}"\nselftest_interval_seconds = 1.0\n')
                process.send_signal(signal.SIGHUP)
            elif "self-test FAILED" in line and "failed" not in seen:
                seen["failed"] = scrape(port)
                process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, "\n".join(lines)
    assert set(seen) == {"passed", "failed"}, "\n".join(lines)
    passed, failed = seen["passed"], seen["failed"]
    assert passed["whaled_selftest_last_success_timestamp_seconds"] > 1.7e9
    assert passed["whaled_selftest_failures_total"] == 0
    assert failed["whaled_selftest_failures_total"] >= 1
    assert failed["whaled_selftest_score"] == 0.0
    assert failed["whaled_selftest_runs_total"] > passed["whaled_selftest_runs_total"]
    assert failed["whaled_audio_flowing"] == 1  # the audio metrics stay healthy
    assert failed["whaled_samples_captured_total"] > passed["whaled_samples_captured_total"]
    assert any("reloaded" in x for x in lines)
    assert any("self-test reference:" in x for x in lines)  # checked at start-up
    assert any("cannot pass its own reference call" in x for x in lines)  # and on reload


@pytest.mark.prometheus
@pytest.mark.slow
def test_real_prometheus_fires_the_self_test_alert_and_not_the_audio_ones(
        centre_model: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """A zeros model swapped in by SIGHUP: WhaledSelfTestFailing fires in a real Prometheus
    (its 30 minutes shortened to 3 s), while WhaledNoAudio stays quiet."""
    import re
    import signal
    import subprocess

    from test_alerts import PROMETHEUS, api, firing, free_port, short_rules, wait_for

    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; scripts/setup "
                    "does it): live self-test alert skipped")
    metrics_port, prometheus_port = free_port(), free_port()
    (tmp_path / "whaled.rules.yml").write_text(re.sub(r"> 1800\b", "> 3", short_rules()))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [whaled.rules.yml]\nscrape_configs:\n  - job_name: whaled\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    zeros = zeros_model(tmp_path / "zeros.pt")
    config = tmp_path / "whaled.toml"
    settings = "selftest_interval_seconds = 1.0\nevidence = false\n"
    config.write_text(f'model = "{centre_model}"\n{settings}')
    log_path = tmp_path / "whaled.log"
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [*WHALED_CMD, "listen", "--config", str(config), "--device", "synthetic",
             "--speed", "1", "--duration", "300", "--metrics-port", str(metrics_port),
             "--out", str(tmp_path / "out")], stderr=log, env=subprocess_env)
    prometheus = None
    try:
        wait_for("a self-test passed", lambda: "self-test passed" in log_path.read_text(), 90)
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("first scrape", lambda: any(
            r["value"][1] == "1" for r in api(prometheus_port, "query?query=up")["result"]), 30)
        time.sleep(6)  # longer than the shortened 3 s: a passing self-test does not fire
        assert not firing(prometheus_port, "WhaledSelfTestFailing")
        config.write_text(f'model = "{zeros}"\n{settings}')
        daemon.send_signal(signal.SIGHUP)
        wait_for("WhaledSelfTestFailing firing",
                 lambda: firing(prometheus_port, "WhaledSelfTestFailing"), 40)
        assert not firing(prometheus_port, "WhaledNoAudio")
        flowing = api(prometheus_port, "query?query=whaled_audio_flowing")["result"]
        assert [r["value"][1] for r in flowing] == ["1"]
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(10)
        daemon.send_signal(signal.SIGINT)
        daemon.wait(30)
    assert "self-test FAILED" in log_path.read_text()
