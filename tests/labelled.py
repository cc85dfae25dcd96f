"""Labelled audio built in code, shared by the tests of every subpackage that reads it
(annotations, train, evaluate, model): clips with and without a synthetic upcall, a recording
with a Raven table beside it, a folder-per-label dataset, and the train/evaluate/inspect app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import typer

from detector.cli import evaluate as evaluate_command
from detector.cli import model as model_commands
from detector.cli import train as train_command
from detector.sources import synthetic

CLIP_SECONDS = 2.0

app = typer.Typer()
app.command("train")(train_command.train)
app.command("evaluate")(evaluate_command.evaluate)
app.command("inspect")(model_commands.inspect)


def clip(rate_hz: int, call: bool, seed: int, seconds: float = CLIP_SECONDS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    audio = synthetic.ocean_noise(int(seconds * rate_hz), rate_hz, rng)
    if call:
        wave = synthetic.upcall(rate_hz, rng) * 0.05
        audio[len(audio) // 4:len(audio) // 4 + len(wave)] += wave
    return audio


def write(path: Path, audio: np.ndarray, rate_hz: int, **kwargs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, rate_hz, **kwargs)
    return path


def raven_recording(folder: Path, seconds: float, calls: list[tuple[float, float]],
                    rate_hz: int = 2000) -> Path:
    rng = np.random.default_rng(7)
    audio = synthetic.ocean_noise(int(seconds * rate_hz), rate_hz, rng)
    for start, end in calls:
        wave = synthetic.upcall(rate_hz, rng, duration_seconds=end - start) * 0.05
        audio[int(start * rate_hz):int(start * rate_hz) + len(wave)] += wave
    path = write(folder / "REC_20090329_121500.wav", audio, rate_hz)
    rows = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation"]
    rows += [f"{i + 1}\tSpectrogram 1\t1\t{a:.3f}\t{b:.3f}\tupcall" for i, (a, b) in
             enumerate(calls)]
    (folder / "REC_20090329_121500.Table.1.selections.txt").write_text("\n".join(rows) + "\n")
    return path


def folder_data(root: Path, n_per_class: int = 6) -> Path:
    for i in range(n_per_class):
        write(root / "upcall" / f"a{i:02d}.wav", clip(2000, True, i), 2000)
        write(root / "noise" / f"b{i:02d}.wav", clip(2000, False, 100 + i), 2000)
    return root
