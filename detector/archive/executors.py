"""Where ``whaled detect`` scans: here, one recording after another, or on a Dask cluster.

An executor takes the recordings to scan and yields their results as each ends; this
process writes every output either way (:mod:`detector.archive.outputs`). On Dask, each
worker process loads the model once and returns plain results.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from detector.archive.outputs import RecordingResult
from detector.archive.plan import Recording
from detector.archive.scan import scan_recording
from detector.core.config import Settings
from detector.core.progress import Progress
from detector.model.artifact import LoadedModel, rate_refusal

log = logging.getLogger("whaled.detect")
Executor = Callable[[list[Recording]], Iterator[RecordingResult]]


def local_executor(loaded: LoadedModel, settings: Settings, progress: Progress,
                   save_scores: bool = False, stop: threading.Event | None = None) -> Executor:
    """Here, one after another; ``stop`` ends the recording in progress at its next block."""
    def run(recordings: list[Recording]) -> Iterator[RecordingResult]:
        for recording in recordings:
            progress.start_file(recording.key)
            yield scan_in_band(recording.path, loaded, settings, progress.within_file,
                               save_scores, stop)
    return run


def scan_in_band(path: Path, loaded: LoadedModel, settings: Settings,
                 on_progress: Callable[[float], None] | None = None,
                 save_scores: bool = False,
                 stop: threading.Event | None = None) -> RecordingResult:
    """:func:`scan_recording`, but a recording too slow for the model's band is failed, not
    scanned (a 1 kHz file gave 3 detections of 7, late, without a word)."""
    import soundfile

    try:
        refusal = rate_refusal(int(soundfile.info(str(path)).samplerate), loaded)
    except (RuntimeError, OSError, soundfile.LibsndfileError):
        refusal = ""  # unreadable: scan_recording says why
    if refusal:
        return RecordingResult(str(path), error=refusal)
    return scan_recording(path, loaded, settings, on_progress, save_scores, stop)


def dask_executor(client: Any, model_path: Path, settings: Settings,
                  save_scores: bool = False) -> Executor:
    """Fan recordings out over a Dask cluster; results come back here to be written."""
    from dask.distributed import as_completed

    def run(recordings: list[Recording]) -> Iterator[RecordingResult]:
        futures = client.map(scan_on_worker, [str(r.path) for r in recordings],
                             model_path=str(model_path), settings=settings,
                             save_scores=save_scores, pure=False)
        for future in as_completed(futures):
            yield future.result()
    return run


@functools.lru_cache(maxsize=2)
def worker_model(model_path: str, device: str) -> LoadedModel:
    """The model of a Dask worker process, loaded at its first task."""
    from detector.model.artifact import load_model

    return load_model(Path(model_path), device)


def scan_on_worker(path: str, model_path: str, settings: Settings,
                   save_scores: bool = False) -> RecordingResult:
    """A Dask task: the model is loaded once per worker process."""
    import torch

    from detector.model.artifact import pick_torch_device

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    loaded = worker_model(model_path, str(pick_torch_device(settings.torch_device)))
    return scan_in_band(Path(path), loaded, settings, save_scores=save_scores)


def open_dask(address: str, workers: int | None = None) -> Any:
    """A client of the cluster at ``address``; ``local``: one worker process per core (or
    ``workers``), one thread each."""
    from dask.distributed import Client, LocalCluster

    if log.getEffectiveLevel() > logging.DEBUG:  # dask's INFO lines would bury whaled's own
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if address == "local":
        return Client(LocalCluster(n_workers=workers or os.cpu_count() or 1,
                                   threads_per_worker=1, processes=True,
                                   silence_logs=logging.WARNING, dashboard_address=None))
    return Client(address)
