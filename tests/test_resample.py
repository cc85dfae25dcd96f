import numpy as np
import pytest

from detector.resample import Resampler

OUT_RATE_HZ = 2000


def tone(rate_hz: int, seconds: float, freq_hz: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)[:, None]


def in_blocks(resampler: Resampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, pos, i = [], 0, 0
    while pos < len(x):
        n = sizes[i % len(sizes)]
        out.append(resampler.push(x[pos:pos + n]))
        pos, i = pos + n, i + 1
    out.append(resampler.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("in_rate_hz", [48000, 44100, 8000, 96000])
def test_tone_keeps_frequency_level_and_time(in_rate_hz: int) -> None:
    freq_hz, amplitude = 137.0, 0.5
    y = in_blocks(Resampler(in_rate_hz, OUT_RATE_HZ, 1), tone(in_rate_hz, 4.0, freq_hz,
                                                               amplitude), [4096])
    assert len(y) == 4 * OUT_RATE_HZ
    k = np.arange(len(y))
    expected = amplitude * np.sin(2 * np.pi * freq_hz * k / OUT_RATE_HZ)
    steady = slice(200, len(y) - 200)  # away from the stream's own start and end
    assert np.max(np.abs(y[steady, 0] - expected[steady])) < 1e-4  # same phase: no delay
    spectrum = np.abs(np.fft.rfft(y[steady, 0] * np.hanning(len(y[steady]))))
    peak_hz = np.argmax(spectrum) * OUT_RATE_HZ / len(y[steady])
    assert abs(peak_hz - freq_hz) < 0.5
    rms = np.sqrt(np.mean(y[steady, 0] ** 2))
    assert abs(20 * np.log10(rms / (amplitude / np.sqrt(2)))) < 0.01


def test_alias_band_is_removed() -> None:
    # 1500 Hz is above the 1000 Hz output Nyquist: it must not fold back to 500 Hz.
    y = in_blocks(Resampler(48000, OUT_RATE_HZ, 1), tone(48000, 2.0, 1500.0, 0.5), [1000])
    assert np.sqrt(np.mean(y[200:-200] ** 2)) < 0.5 * 10 ** (-80 / 20)


@pytest.mark.parametrize("sizes", [[1], [7, 3000, 1], [480], [4800], [1234, 17]])
def test_no_block_edge_artefacts_for_any_block_size(sizes: list[int]) -> None:
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((48000 // 4, 2)) * 0.1).astype(np.float32)
    reference = in_blocks(Resampler(48000, OUT_RATE_HZ, 2), x, [len(x)])
    blocked = in_blocks(Resampler(48000, OUT_RATE_HZ, 2), x, sizes)
    assert blocked.shape == reference.shape
    assert np.max(np.abs(blocked - reference)) < 1e-6


def test_equal_rates_pass_through_unchanged() -> None:
    x = np.arange(10, dtype=np.float32)[:, None]
    r = Resampler(OUT_RATE_HZ, OUT_RATE_HZ, 1)
    assert r.push(x) is x
    assert len(r.flush()) == 0
