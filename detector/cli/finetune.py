"""``whaled train DATA... --init MODEL``: the command side of :mod:`detector.train.finetune`.

Reads the parent, the new deployment's long recordings (Raven tables and reviewed labels, as
every training run reads them) and any ``--noise`` recordings, fine-tunes, and writes the
archive, its log and learning curve, with the parent's hash and the data in the metadata.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from detector.cli.model import report_skipped, versions
from detector.core.errors import WhaledError, fail

if TYPE_CHECKING:
    from detector.annotations.datasets import LoadOptions

# Flags that change the short schedule when typed; the rest of the settings are the parent's.
SCHEDULE_FLAGS = ("epochs", "batch_size", "learning_rate", "batches_per_epoch", "seed",
                  "synthetic", "augment")


def read_new_data(data: Sequence[Path], options: LoadOptions, noise: Sequence[Path]
                  ) -> list[Any]:
    """The readable recordings of every folder (tables or reviewed labels), then the noise."""
    from detector.annotations import datasets, layouts

    pairs: list[tuple[Path, list[Path]]] = []
    for folder in data:
        if layouts.detect_layout(folder) is not layouts.Layout.RAVEN:
            raise WhaledError(f"{folder}: fine-tuning reads long recordings with Raven tables "
                              "or reviewed labels (X.wav + X*.selections.txt)")
        pairs += layouts.recordings_with_tables(folder)
    pairs += [(f, []) for f in layouts.audio_in(noise)]
    recordings, skipped = datasets.read_recordings(pairs, options)
    report_skipped(skipped)
    if not any(r.calls for r in recordings):
        raise WhaledError(f"{', '.join(map(str, data))}: no readable recording with an "
                          "annotated or reviewed call")
    return recordings


def train_from_parent(init: Path, data: Sequence[Path], options: LoadOptions,
                      params: Mapping[str, Any], typed: set[str], command: str) -> None:
    """Fine-tune ``init`` on ``data``; ``params`` are the train command's, ``typed`` the
    names given on the command line."""
    from detector.model.artifact import pick_torch_device
    from detector.train import finetune
    from detector.train import loop as training

    out: Path = params["out"]
    try:
        parent = finetune.read_parent(init)
        finetune.check_network(parent, *(params[n] if n in typed else None
                                         for n in ("architecture", "width")))
        overrides = {name: params[name] for name in SCHEDULE_FLAGS if name in typed}
        config = finetune.finetune_config(parent, device=params["torch_device"], **overrides)
        if config.augment and config.batches_per_epoch < 1:
            raise WhaledError("--batches-per-epoch must be 1 or more: the parent model was "
                              "trained with augmentation")
        pick_torch_device(config.device)
        recordings = read_new_data(data, options, params["noise"] or [])
    except WhaledError as error:
        fail(str(error))
    typer.echo(f"fine-tuning {init} ({parent.config.architecture}, width "
               f"{parent.config.width}, sha256 {parent.sha256[:12]}): {config.epochs} epochs"
               + (f" of {config.batches_per_epoch} batches" if config.augment else "")
               + f" at learning rate {config.learning_rate:g}")
    if params["threads"]:
        import torch

        torch.set_num_threads(params["threads"])
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        tuned = finetune.fine_tune(
            parent, recordings, config, params["max_false_alarms_per_hour"],
            params["progress"], typer.echo,
            training.EpochLog(out.with_suffix(".log.jsonl"), config.epochs, typer.echo))
    except WhaledError as error:
        fail(str(error))
    seconds = time.monotonic() - started
    result = tuned.result
    extra = {**result.metadata.extra, "command": command, "versions": versions(),
             "training_seconds": round(seconds, 1),
             "noise": [str(p) for p in params["noise"] or []]}
    metadata = replace(result.metadata, extra=extra)
    written = training.write_artefacts(replace(result, metadata=metadata), out)
    data_summary = extra["data"]
    reviewed = extra["fine_tune"]["reviewed"]
    typer.echo(f"trained on {data_summary['train_pos']} positive / {data_summary['train_neg']} "
               f"negative windows ({reviewed['upcall']} reviewed upcall, "
               f"{reviewed['not-upcall']} not-upcall) in {seconds:.0f} s; threshold on "
               f"{metadata.thresholds.on:.3f} off {metadata.thresholds.off:.3f}")
    typer.echo("wrote " + ", ".join(str(p) for p in written))
