import numpy as np
import pytest

from detector.stream.windows import RingBuffer, Windower


def test_ring_reads_across_the_wrap() -> None:
    ring = RingBuffer(10, 1)
    ring.write(np.arange(7, dtype=np.float32)[:, None])
    ring.write(np.arange(7, 14, dtype=np.float32)[:, None])
    assert ring.read(5, 9)[:, 0].tolist() == list(range(5, 14))
    with pytest.raises(IndexError):
        ring.read(3, 2)  # overwritten


@pytest.mark.parametrize("block", [1, 333, 500, 4000, 50_000])
def test_windows_start_on_the_hop_grid_whatever_the_blocks(block: int) -> None:
    x = np.arange(30_000, dtype=np.float32)[:, None] * np.array([[1.0, -1.0]], np.float32)
    w = Windower(window_samples=4000, hop_samples=500, channels=2)
    starts, windows = [], []
    for lo in range(0, len(x), block):
        s, win = w.push(x[lo:lo + block])
        starts += s.tolist()
        windows += list(win)
    assert starts == list(range(0, 30_000 - 4000 + 1, 500))
    for start, window in zip(starts, windows, strict=True):
        assert window.shape == (2, 4000)
        assert window[0, 0] == start and window[0, -1] == start + 3999
        assert window[1, 10] == -(start + 10)
