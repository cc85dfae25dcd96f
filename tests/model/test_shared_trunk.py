"""SharedTrunkNet: its trunk run once over a span scores every window as the window alone does.

Small random-initialised models (batch-norm statistics and the classifier drawn wide enough
that scores spread over (0, 1)), so the checks are exact arithmetic, not trained behaviour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import detector.model.scoring as scoring
from detector.archive.scan import detect_recording
from detector.core.config import Settings
from detector.model.artifact import ModelMetadata, load_model, save_model, span_grid_samples
from detector.model.network import (
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
    ContrastNet,
    FloorNet,
    SharedTrunkNet,
    build_network,
)
from detector.stream.events import Detection, Thresholds

SCORE_TOLERANCE = 1e-4
HOP_SAMPLES = 500  # 0.25 s, the default hop
WIDTH = 4  # channels of the first convolution: small and fast
LOGIT_SPREAD = 3.0  # the random model's logits are scaled to this standard deviation
BURST_SAMPLES = 1500  # tone bursts in the test audio, so windows differ
RECORDING_SECONDS = 40.0
N_REFERENCE_WINDOWS = 40  # windows per channel scored one at a time by the plain module


def random_net(seed: int = 0, architecture: type[SharedTrunkNet] = SharedTrunkNet,
               mean_span_frames: int = 0, window_mean_too: bool = False,
               extra_layers: int = 0) -> SharedTrunkNet:
    torch.manual_seed(seed)
    net = architecture(width=WIDTH).eval()
    if extra_layers:
        net.deepen(extra_layers)
    net.mean_span_frames = mean_span_frames
    if window_mean_too:  # as build_network(window_mean_too=True) makes it
        net.window_mean_too = True
        net.classifier = torch.nn.Linear(6 * WIDTH, 1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.2, 0.2)
        logits = net.logits(varied_audio(64, WINDOW_SAMPLES, seed))
        gain = LOGIT_SPREAD / logits.std()  # logits' = gain x (logits - their mean)
        net.classifier.weight.mul_(gain)
        net.classifier.bias.sub_(logits.mean()).mul_(gain)
    return net


def varied_audio(channels: int, samples: int, seed: int = 1) -> torch.Tensor:
    """White noise with tone bursts of random pitch and level at random times."""
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((channels, samples)) * 0.01
    times = np.arange(BURST_SAMPLES) / SAMPLE_RATE_HZ
    for channel in range(channels):
        for at in rng.integers(0, max(1, samples - BURST_SAMPLES), samples // 2000 + 1):
            tone = np.sin(2 * np.pi * rng.uniform(50, 400) * times) * rng.uniform(0, 0.1)
            audio[channel, at:at + BURST_SAMPLES] += tone[:samples - at]
    return torch.from_numpy(audio.astype(np.float32))


def windows_of(span: torch.Tensor, hop: int, n: int) -> torch.Tensor:
    return torch.stack([span[:, k * hop:k * hop + WINDOW_SAMPLES] for k in range(n)], dim=1)


@pytest.mark.parametrize(("architecture", "mean_span_frames", "window_mean_too", "extra_layers"),
                         [(SharedTrunkNet, 0, False, 0), (FloorNet, 0, False, 0),
                          (ContrastNet, 10, False, 0), (SharedTrunkNet, 1, False, 0),
                          (ContrastNet, 10, True, 0), (ContrastNet, 10, True, 2)])
@pytest.mark.parametrize(("channels", "n_windows", "tail_samples", "hop"),
                         [(1, 1, 0, 500), (1, 9, 499, 500), (2, 33, 17, 500),
                          (3, 12, 250, 1000), (2, 5, 0, 100)])
def test_score_span_equals_forward_on_each_window(channels: int, n_windows: int,
                                                  tail_samples: int, hop: int,
                                                  architecture: type[SharedTrunkNet],
                                                  mean_span_frames: int,
                                                  window_mean_too: bool,
                                                  extra_layers: int) -> None:
    """Also with the mean pooled over each window's best span (``mean_span_seconds``), with
    the whole window's mean beside it (``window_mean_too``), and with a deeper trunk."""
    scripted = torch.jit.script(random_net(architecture=architecture,
                                           mean_span_frames=mean_span_frames,
                                           window_mean_too=window_mean_too,
                                           extra_layers=extra_layers))
    span = varied_audio(channels, WINDOW_SAMPLES + (n_windows - 1) * hop + tail_samples)
    with torch.inference_mode():
        shared = scripted.score_span(span, hop)
        alone = scripted(windows_of(span, hop, n_windows).reshape(-1, WINDOW_SAMPLES))
    assert shared.shape == (channels, n_windows, 1)
    assert n_windows == 1 or float(shared.std()) > 0.02  # spread: the comparison means something
    assert float((shared.reshape(-1, 1) - alone).abs().max()) <= SCORE_TOLERANCE


def test_the_best_span_mean_is_not_diluted_by_a_short_event() -> None:
    """A feature lit in 10 of the window's map frames: the whole-window mean is diluted by
    the quiet rest, the best 0.5-s span's mean is the event's own."""
    net = build_network("contrast", WIDTH, mean_span_seconds=0.5).eval()
    assert net.mean_span_frames == 10 and net.window_map_frames == 26
    maps = torch.zeros(1, 2 * WIDTH, 3, net.window_map_frames)
    maps[:, :, :, 8:18] = 1.0
    net.features = torch.nn.Identity()  # type: ignore[assignment]
    net.spectrogram = torch.nn.Identity()
    net.input_dropout = torch.nn.Identity()  # type: ignore[assignment]
    net.classifier = torch.nn.Identity()  # type: ignore[assignment]
    pooled = net.logits(maps)
    assert torch.allclose(pooled[0, :2 * WIDTH], torch.ones(2 * WIDTH))
    net.mean_span_frames = 0
    assert torch.allclose(net.logits(maps)[0, :2 * WIDTH], torch.full((2 * WIDTH,), 10 / 26))
    net.mean_span_frames, net.window_mean_too = 10, True  # both: best span, max, window
    both = net.logits(maps)[0]
    assert both.shape == (6 * WIDTH,)
    assert torch.allclose(both[:4 * WIDTH], torch.ones(4 * WIDTH))
    assert torch.allclose(both[4 * WIDTH:], torch.full((2 * WIDTH,), 10 / 26))


@pytest.mark.parametrize("seconds", [-0.5, 0.01, 1.4])
def test_a_best_span_outside_the_window_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"mean_span_seconds .* must be between 0.05 and 1.3 s"):
        build_network("contrast", WIDTH, mean_span_seconds=seconds)
    with pytest.raises(ValueError, match="needs a shared-trunk network"):
        build_network("upcall", WIDTH, mean_span_seconds=0.5)


def test_the_window_mean_beside_a_span_widens_the_head_and_needs_a_span() -> None:
    net = build_network("contrast", WIDTH, mean_span_seconds=0.5, window_mean_too=True)
    assert net.window_mean_too and net.classifier.in_features == 6 * WIDTH
    assert build_network("contrast", WIDTH).classifier.in_features == 4 * WIDTH
    with pytest.raises(ValueError, match="window_mean_too needs mean_span_seconds"):
        build_network("contrast", WIDTH, window_mean_too=True)


def test_extra_layers_deepen_the_trunk_and_shorten_its_map() -> None:
    """Each extra 3x3 convolution trims 2 map frames (0.2 s of the window's 26 frames) and
    adds one conv layer of 2 x width maps; the count is bounded by the 12 rows left."""
    for extra, frames in ((0, 26), (1, 24), (2, 22)):
        net = build_network("contrast", WIDTH, mean_span_seconds=0.5, window_mean_too=True,
                            extra_layers=extra)
        convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
        assert (len(convs), net.window_map_frames, net.extra_layers) == (3 + extra, frames, extra)
        assert all(c.in_channels == c.out_channels == 2 * WIDTH for c in convs[2:])
        assert convs[0].in_channels == 2  # the contrast front's two channels are kept
        maps = net.features(net.spectrogram(varied_audio(1, WINDOW_SAMPLES)))
        assert maps.shape[1:] == (2 * WIDTH, 12 - 2 * extra, frames)
    with pytest.raises(ValueError, match="extra_layers 5 must be between 0 and 4"):
        build_network("contrast", WIDTH, extra_layers=5)


def test_score_span_refuses_a_hop_off_its_grid() -> None:
    with pytest.raises(ValueError, match="multiple"):
        random_net().score_span(torch.zeros(1, WINDOW_SAMPLES + 480), 480)


@pytest.fixture(scope="module")
def model_and_audio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("shared")
    stereo = varied_audio(2, int(RECORDING_SECONDS * SAMPLE_RATE_HZ), seed=7).numpy().T
    audio = folder / "stereo_20200101_000000.wav"
    soundfile.write(str(audio), stereo, SAMPLE_RATE_HZ, subtype="FLOAT")
    meta = ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",), Thresholds(0.5, 0.4))
    model = folder / "shared.pt"
    save_model(random_net(), meta, model)
    return model, audio


def detections_and_scores(audio: Path, model: Path, settings: Settings
                          ) -> tuple[list[tuple[object, ...]], np.ndarray]:
    captured: list[np.ndarray] = []
    original = scoring.Scorer.score

    def capture(self: scoring.Scorer, windows: np.ndarray) -> np.ndarray:
        out = original(self, windows)
        captured.append(out[:, 0].copy())
        return out

    scoring.Scorer.score = capture  # type: ignore[method-assign]
    try:
        found = detect_recording(audio, load_model(model), settings)
    finally:
        scoring.Scorer.score = original  # type: ignore[method-assign]
    return [key(d) for d in found], np.concatenate(captured)


def key(d: Detection) -> tuple[object, ...]:
    return (d.start_utc, d.end_utc, d.peak_utc, round(d.peak_score, 4), d.channel, d.label)


def test_detect_shares_the_trunk_and_equals_the_per_window_path(
        model_and_audio: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    model, audio = model_and_audio
    loaded = load_model(model)
    assert span_grid_samples(loaded) == 100
    assert scoring.Scorer(loaded, 256, HOP_SAMPLES).span_hop_samples == HOP_SAMPLES
    assert scoring.Scorer(loaded, 256, 480).span_hop_samples == 0  # off the grid: per window
    runs = [detections_and_scores(audio, model, Settings(block_seconds=block,
                                                         max_batch_windows=batch))
            for block, batch in ((0.1, 256), (0.37, 64), (3.0, 1000))]
    monkeypatch.setattr(scoring, "span_grid_samples", lambda loaded: 0)
    per_window, per_window_scores = detections_and_scores(audio, model, Settings())
    assert len(per_window) >= 3, "the random model should detect at these thresholds"
    for found, scores in runs:
        assert found == per_window
        assert float(np.abs(scores - per_window_scores).max()) <= SCORE_TOLERANCE
    reference = naive_scores(model, audio, N_REFERENCE_WINDOWS)
    fast = runs[0][1][:len(reference)]
    assert float(np.abs(fast - reference).max()) <= SCORE_TOLERANCE


def naive_scores(model: Path, audio: Path, n_windows: int) -> np.ndarray:
    """The plain module on each window cut from the file, batch 1, window-major."""
    samples = torch.from_numpy(soundfile.read(str(audio), dtype="float32")[0].T.copy())
    module = torch.jit.load(str(model)).eval()
    scores = []
    with torch.inference_mode():
        for k in range(n_windows):
            for channel in samples:
                window = channel[k * HOP_SAMPLES:k * HOP_SAMPLES + WINDOW_SAMPLES]
                scores.append(float(module(window[None])[0, 0]))
    return np.array(scores)


def test_runs_break_where_windows_stop_overlapping() -> None:
    audio = varied_audio(2, 20_000).numpy()
    cut = np.stack([audio[:, k * HOP_SAMPLES:k * HOP_SAMPLES + WINDOW_SAMPLES]
                    for k in range(20)])
    jumped = np.concatenate([cut[:8], cut[9:]])  # window 8 missing: a new run at 8
    assert scoring.consecutive_runs(cut, HOP_SAMPLES) == [(0, 20)]
    assert scoring.consecutive_runs(jumped, HOP_SAMPLES) == [(0, 8), (8, 19)]
    span = scoring.span_of(cut, HOP_SAMPLES)
    assert np.array_equal(span, audio[:, :WINDOW_SAMPLES + 19 * HOP_SAMPLES])


def test_floor_front_end_removes_each_frequencys_own_noise_level() -> None:
    """A call over quiet water and the same call over water 20 dB louder at low frequencies
    give the same image where the call is (the floor is per frequency), and a tone that
    lasts the whole window becomes its own floor."""
    from detector.model.network import FloorSpectrogram

    front = FloorSpectrogram()
    rng = np.random.default_rng(3)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE_HZ
    white = rng.standard_normal(WINDOW_SAMPLES) * 0.01
    tone = np.sin(2 * np.pi * 150.0 * t)  # 150 Hz, the whole window
    with torch.inference_mode():
        quiet = front(torch.tensor(white[None], dtype=torch.float32))[0, 0]
        loud = front(torch.tensor(white[None] * 10, dtype=torch.float32))[0, 0]
        toned = front(torch.tensor((white + tone)[None], dtype=torch.float32))[0, 0]
    assert float((quiet - loud).abs().max()) < 1e-3  # gain does not change the image
    row = round(150.0 / (SAMPLE_RATE_HZ / 256)) - front.low_bin
    # the tone is 4 decades (40 dB) above the noise in its bin, yet no brighter than noise there
    assert float(toned[row].mean()) < float(quiet[row].mean()) + 0.25
    assert front(torch.zeros(1, WINDOW_SAMPLES)).shape[-1] == 150 - front.shrink_frames
