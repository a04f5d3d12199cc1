"""The embedded default: detect → filter out the test people → train → evaluate, on data that needs no download.

With no data folder the demo draws a synthetic face-like data set (facetool.data.synthetic); with one it uses
that folder and its `pairs.txt` when present. Each step is the same library call the commands make.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from facetool.cache import open_cache
from facetool.config.dataset import FilterSettings
from facetool.config.demo import DemoConfig
from facetool.config.detect import DetectConfig
from facetool.config.train import TrainConfig, ValidationConfig
from facetool.curation import filter_cache
from facetool.data.synthetic import write_synthetic_dataset
from facetool.detection.resolve import resolve_faces
from facetool.detection.runner import DetectSummary
from facetool.device import resolve_device
from facetool.errors import UsageError
from facetool.evaluation.report import write_report
from facetool.evaluation.run import EvalReport, evaluate_on_pairs
from facetool.models import build_backbone, load_embedding_model
from facetool.training.loop import TrainResult, train
from facetool.training.progress import TrainProgress


@dataclass(frozen=True)
class DemoResult:
    """What each step produced."""

    data_dir: Path
    synthetic: bool
    detection: DetectSummary | None
    training: TrainResult
    untrained: EvalReport | None
    trained: EvalReport | None
    report_path: Path | None


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and `noun`, in the plural (`plural`, else `noun` + "s") unless the count is one: "1 epoch",
    "5 epochs", "2 batches"."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def run_demo(
    config: DemoConfig,
    *,
    say: Callable[[str], None] = lambda _text: None,
    train_progress: TrainProgress | None = None,
) -> DemoResult:
    """Run the pipeline as `config` says, reporting each step through `say`."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    synthetic = config.data is None
    if synthetic:
        data_dir = out / "data"
        if not (data_dir / "pairs.txt").is_file():
            say(f"drawing a synthetic data set of {config.identities} face-like identities in {data_dir}")
            write_synthetic_dataset(
                data_dir,
                identities=config.identities,
                images_per_identity=config.images_per_identity,
                test_identities=config.test_identities,
                pairs_per_fold=config.pairs_per_fold,
                seed=config.seed,
            )
    else:
        data_dir = Path(config.data)
        if not data_dir.is_dir():
            raise UsageError(f"{data_dir}: not a folder (expected DATA_DIR/<identity>/<image>)")
    pairs = data_dir / "pairs.txt"

    cache = out / "faces.h5"
    detection = resolve_faces(data_dir, cache, DetectConfig(image_size=config.image_size), say=say).detection

    train_cache = cache
    if pairs.is_file():
        train_cache = out / "train-faces.h5"
        train_cache.unlink(missing_ok=True)
        report = filter_cache(cache, train_cache, FilterSettings(exclude_pairs=[pairs]))
        say(f"kept {report.kept_identities} identities for training; the people of {pairs.name} are left out")

    settings = TrainConfig(
        data_dir=train_cache,
        checkpoint_dir=out / "run",
        image_size=config.image_size,
        backbone=config.backbone,
        num_epochs=config.num_epochs,
        epoch_size=config.epoch_size,
        people_per_batch=config.people_per_batch,
        images_per_person=config.images_per_person,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_step_size=max(config.num_epochs, 1),
        checkpoint_every=config.num_epochs,
        device=config.device,
        seed=config.seed,
        validation=ValidationConfig(fraction=0.2, num_pairs=40),
    )
    say(
        f"training {config.backbone} for {counted(config.num_epochs, 'epoch')} of {counted(config.epoch_size, 'batch', 'batches')}"
    )
    training = train(settings, resume="auto", progress=train_progress)

    untrained = trained = None
    report_path = None
    if pairs.is_file():
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        baseline = build_backbone(config.backbone, image_size=config.image_size).to(device).eval()
        with open_cache(cache) as faces:
            untrained = evaluate_on_pairs(baseline, faces, pairs, device=device, image_size=config.image_size)
            model, _ = load_embedding_model(training.last_checkpoint, device)
            trained = evaluate_on_pairs(model, faces, pairs, device=device, image_size=config.image_size)
        report_path, _ = write_report(trained, out / "eval")
    else:
        say(f"{data_dir} has no pairs.txt: evaluation skipped")
    return DemoResult(data_dir, synthetic, detection, training, untrained, trained, report_path)
