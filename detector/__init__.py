"""whaled: a streaming detector of North Atlantic right whale upcalls.

Importing this package does nothing beyond defining names: no thread settings, no device
scans, no model loads, not even ``import torch`` until a function below needs it. The data
flows through the subpackages in this order::

    sources -> stream (resample, windows, detector stage, events) -> outputs
    model scores the windows; live runs listen as a service; archive runs detect;
    train, evaluate, review and season are the analyst's side.

The public API, for a notebook or a script (the ``whaled`` commands call the same code)::

    import detector

    model = detector.load_model()                    # the shipped model, on the CPU
    found = detector.scan_file("NOPP6_EST_20090329_121500.wav", model)
    found = detector.scan_array(audio, rate_hz=2000, model=model)
    detector.write_raven("found.selections.txt", found)
    calls = detector.read_raven("NOPP6_EST_20090329_121500.Table.1.selections.txt")
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from detector.core.config import Settings
    from detector.model.artifact import LoadedModel
    from detector.outputs.raven import Selection
    from detector.stream.blocks import Item, StreamInfo
    from detector.stream.events import Detection
    from detector.stream.run_summary import RunSummary

from detector.core.version import VERSION as __version__

__all__ = ["Detection", "LoadedModel", "Selection", "Settings", "StreamInfo", "__version__",
           "load_model", "read_raven", "scan_array", "scan_file", "stream_blocks", "write_raven"]

_TYPES = {"Detection": "detector.stream.events", "LoadedModel": "detector.model.artifact",
          "Selection": "detector.outputs.raven", "Settings": "detector.core.config",
          "StreamInfo": "detector.stream.blocks"}


def __getattr__(name: str) -> Any:
    """The API's types, imported on first use so that ``import detector`` stays light."""
    if name in _TYPES:
        import importlib

        return getattr(importlib.import_module(_TYPES[name]), name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")


def load_model(path: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load a whaled model archive.

    Args:
        path: the ``.pt`` archive; None for the shipped model (``models/upcall.pt``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when present).

    Returns:
        The TorchScript module with its metadata: sample rate, window, labels, thresholds.

    Raises:
        detector.model.artifact.ModelError: a file that is not a whaled model.
    """
    from detector.core.config import default_model
    from detector.model.artifact import load_model as load
    from detector.model.artifact import pick_torch_device

    return load(Path(path) if path is not None else default_model(), pick_torch_device(device))


def _settings(settings: Settings | None, on_threshold: float | None) -> Settings:
    from dataclasses import replace

    from detector.core.config import Settings

    chosen = settings or Settings()
    return chosen if on_threshold is None else replace(chosen, on_threshold=on_threshold)


def scan_file(path: str | Path, model: LoadedModel | None = None, *,
              on_threshold: float | None = None, settings: Settings | None = None
              ) -> list[Detection]:
    """Detect upcalls in one recording, exactly as ``whaled detect`` does.

    Args:
        path: a WAV, FLAC, AIFF (or MP3/Ogg, where libsndfile has them) recording, any rate.
        model: from :func:`load_model`; None loads the shipped model.
        on_threshold: the score an event must reach; None keeps the model's own.
        settings: hop, channels, event rules (``detector.Settings``); None for the defaults.

    Returns:
        The detections in time order, with seconds from the start of the file and UTC times
        (from a time stamp in the file name, else the Unix epoch).
    """
    from detector.archive.scan import detect_recording

    loaded = model or load_model()
    return detect_recording(Path(path), loaded, _settings(settings, on_threshold))


def scan_array(audio: np.ndarray, rate_hz: int, model: LoadedModel | None = None, *,
               origin_utc: datetime | None = None, on_threshold: float | None = None,
               settings: Settings | None = None) -> list[Detection]:
    """Detect upcalls in audio held in memory.

    Args:
        audio: float samples, full scale 1.0: shape (frames,) or (frames, channels).
        rate_hz: its sample rate; it is resampled to the model's as a recording would be.
        model: from :func:`load_model`; None loads the shipped model.
        origin_utc: the UTC time of the first sample; None for the Unix epoch.
        on_threshold: the score an event must reach; None keeps the model's own.
        settings: as for :func:`scan_file`.

    Returns:
        The detections in time order, times counted from the first sample.
    """
    import numpy as np

    from detector.stream.blocks import Block, StreamInfo

    samples = np.asarray(audio, dtype=np.float32)
    samples = samples[:, None] if samples.ndim == 1 else samples
    if samples.ndim != 2 or rate_hz <= 0:
        raise ValueError("audio must be (frames,) or (frames, channels) at a positive rate")
    info = StreamInfo(rate_hz, tuple(range(1, samples.shape[1] + 1)),
                      origin_utc or datetime.fromtimestamp(0, tz=UTC),
                      "flag" if origin_utc else "none", "array", live=False)
    step = max(1, int(rate_hz))  # one-second blocks, as a recording is read
    blocks = [Block(lo, samples[lo:lo + step]) for lo in range(0, len(samples), step)]
    return stream_blocks(info, blocks, model, settings=_settings(settings, on_threshold)).detections


def stream_blocks(info: StreamInfo, items: Sequence[Item], model: LoadedModel | None = None, *,
           settings: Settings | None = None) -> RunSummary:
    """Stream blocks through the pipeline ``listen``, ``detect`` and ``evaluate`` share.

    Args:
        info: the stream's rate, channels and the UTC time of sample 0.
        items: ``detector.stream.blocks`` items in order: ``Block``, ``Gap``, ``ClockStep``.
        model: from :func:`load_model`; None loads the shipped model.
        settings: as for :func:`scan_file`.

    Returns:
        The run's summary: ``.detections``, ``.gaps`` and the counts.
    """
    import threading

    from detector.sources.replay import ListSource
    from detector.stream.pipeline import offline_pipeline

    source = ListSource(info, items, per_read=8)
    pipeline = offline_pipeline(source, model or load_model(), _settings(settings, None), [])
    return pipeline.run(threading.Event())


def read_raven(path: str | Path) -> list[Selection]:
    """Read a Raven selection table (an expert's, a reviewer's or whaled's own).

    Args:
        path: the ``.selections.txt`` file.

    Returns:
        One ``Selection`` (channel, begin and end seconds, low and high Hz, annotation) per
        selection; a selection's ``Waveform`` row beside its spectrogram row is left out.

    Raises:
        detector.outputs.raven.RavenError: a file that is not a readable Raven table.
    """
    from detector.outputs.raven import read_selections

    return read_selections(Path(path))


def write_raven(path: str | Path, detections: Sequence[Detection]) -> None:
    """Write detections as a Raven selection table, as ``whaled detect`` writes one.

    Args:
        path: the ``.selections.txt`` file to write (replaced whole).
        detections: from :func:`scan_file`, :func:`scan_array` or :func:`stream_blocks`.
    """
    from detector.core.durable import publish
    from detector.outputs.sinks import raven_table

    target = Path(path)
    staged = target.with_name(target.name + ".tmp")
    staged.write_text(raven_table(detections), encoding="utf-8")
    publish(staged, target)
