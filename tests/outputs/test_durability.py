"""A power cut (the likely fault on a buoy or in a shore hut) loses nothing already reported.

The kernel's page cache is not the disk: each detection line is fdatasync'ed before the write
returns, a file just created has its directory entry fsync'ed, and a model, checkpoint or
evidence clip is fsync'ed before the rename that publishes it. A power cut cannot be pulled in
a test, so these watch the system calls (``os.fsync``/``os.fdatasync``) and their order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detector.outputs.sinks import JsonlSink, RavenSink
from detector.stream.events import Detection

ORIGIN = datetime(2009, 3, 29, 12, 15, tzinfo=UTC)


class Calls:
    """(call, path) in order: fsync, fdatasync, write and replace, paths resolved from fds."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def synced(self, path: Path) -> list[int]:
        """Indices of the syncs of ``path``."""
        return [i for i, (call, p) in enumerate(self.log)
                if call in ("fsync", "fdatasync") and p == str(path)]

    def last(self, call: str, path: Path) -> int:
        return max(i for i, (c, p) in enumerate(self.log) if c == call and p == str(path))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    seen = Calls()

    def path_of(fd: int) -> str:
        return os.readlink(f"/proc/self/fd/{fd}")

    def spy(name: str, real):  # type: ignore[no-untyped-def]
        def wrapper(fd: int, *args):  # type: ignore[no-untyped-def]
            seen.log.append((name, path_of(fd)))
            return real(fd, *args)
        return wrapper

    real_replace = os.replace

    def replace(src, dst, **kwargs):  # type: ignore[no-untyped-def]
        seen.log.append(("replace", str(Path(dst).resolve())))
        return real_replace(src, dst, **kwargs)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to name the synced files")
    monkeypatch.setattr(os, "fsync", spy("fsync", os.fsync))
    monkeypatch.setattr(os, "fdatasync", spy("fdatasync", os.fdatasync))
    monkeypatch.setattr(os, "write", spy("write", os.write))
    monkeypatch.setattr(os, "replace", replace)
    yield seen


def detection(start: float) -> Detection:
    return Detection(ORIGIN + timedelta(seconds=start), ORIGIN + timedelta(seconds=start + 1),
                     ORIGIN + timedelta(seconds=start + 0.5), start, start + 1, 0.9, 1, "upcall",
                     "abc123", 0.5, 0.35, "file:x.wav")


def test_each_detection_line_is_on_disk_before_write_returns(tmp_path: Path,
                                                             calls: Calls) -> None:
    out = tmp_path.resolve() / "out"
    jsonl, raven = JsonlSink(out), RavenSink(out, "file:x.wav", ORIGIN)
    for start in (10.0, 20.0):
        jsonl.write(detection(start))
        raven.write(detection(start))
        for path in (out / "detections.jsonl", raven.file.path):
            syncs = calls.synced(path)
            assert syncs and syncs[-1] > calls.last("write", path), (path, calls.log)
    for path in (out / "detections.jsonl", raven.file.path):  # created: the name is durable too
        first_seen = min(i for i, (_, p) in enumerate(calls.log) if p == str(path))
        assert [i for i in calls.synced(out) if i > first_seen], (path, calls.log)


def test_a_model_is_synced_before_it_replaces_the_old_one(tmp_path: Path,
                                                          calls: Calls) -> None:
    from helpers import centre_band_model

    path = centre_band_model(tmp_path.resolve() / "models" / "m.pt")
    tmp = path.with_suffix(".pt.tmp")
    assert calls.synced(tmp) and max(calls.synced(tmp)) < calls.last("replace", path)
    assert [i for i in calls.synced(path.parent) if i > calls.last("replace", path)]


def test_a_checkpoint_is_synced_before_it_replaces_the_old_one(tmp_path: Path,
                                                               calls: Calls) -> None:
    import dataclasses

    from detector.train import loop as training

    fields = {f.name: None for f in dataclasses.fields(training.Checkpoint)}
    fields["best_key"] = (0.0,)
    state = training.Checkpoint(**fields)  # type: ignore[arg-type]
    path = tmp_path.resolve() / "run.ckpt"
    training.save_checkpoint(state, path)
    tmp = path.with_suffix(".ckpt.tmp")
    assert calls.synced(tmp) and max(calls.synced(tmp)) < calls.last("replace", path)
    assert [i for i in calls.synced(path.parent) if i > calls.last("replace", path)]


def test_an_evidence_clip_is_synced_before_it_is_published(tmp_path: Path,
                                                           calls: Calls) -> None:
    import numpy as np
    from prometheus_client import CollectorRegistry

    from detector.outputs.evidence import EvidenceRecorder
    from detector.outputs.metrics import Metrics
    from detector.stream.blocks import StreamInfo

    info = StreamInfo(2000, (1,), ORIGIN, "flag", "test")
    folder = tmp_path.resolve() / "evidence"
    recorder = EvidenceRecorder(folder, info, Metrics(CollectorRegistry(), (1,), ("upcall",)),
                                padding_seconds=1.0, max_event_seconds=10.0, delay_seconds=0.0,
                                max_bytes=10**9, max_age_days=0.0)
    recorder.push(0, np.random.default_rng(1).standard_normal((20 * 2000, 1)).astype(
        np.float32) * 0.01)
    recorder.write(detection(10.0))
    published = sorted((folder / "upcall").iterdir())
    assert [p.suffix for p in published] == [".json", ".png", ".wav"]
    for path in published:
        tmp = path.with_name(path.name + ".tmp")
        assert calls.synced(tmp) and max(calls.synced(tmp)) < calls.last("replace", path)
    last_publish = max(calls.last("replace", p) for p in published)
    assert [i for i in calls.synced(folder / "upcall") if i > last_publish]
