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
from facetool.errors import FacetoolError, UsageError
from facetool.evaluation.report import write_report
from facetool.evaluation.run import EvalReport, evaluate_on_pairs
from facetool.models import build_backbone, load_embedding_model
from facetool.training.loop import TrainResult, train
from facetool.training.progress import TrainProgress
from facetool.training.recipe import check_plugins

VALIDATION_FRACTION = 0.1
"""Training identities held out for the per-epoch validation curve (never the pairs' people)."""
VALIDATION_PAIRS = 100
EXTRAS_HINT = (
    "the demo's default network and loss come from facetool-extras: install it, or choose facetool's own with "
    "--set backbone=inception_resnet_v1 --set image_size=96 --set loss=triplet"
)


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


def train_settings(config: DemoConfig, faces: Path, run_dir: Path) -> TrainConfig:
    """The demo's training run: `config`'s network, loss and sizes, a cosine schedule with one warm-up epoch,
    and a few training identities held out for the per-epoch validation curve."""
    return TrainConfig(
        data_dir=faces,
        checkpoint_dir=run_dir,
        image_size=config.image_size,
        backbone=config.backbone,
        loss=config.loss,
        alpha=config.alpha,
        embedding_dim=config.embedding_dim,
        num_epochs=config.num_epochs,
        epoch_size=config.epoch_size,
        people_per_batch=config.people_per_batch,
        images_per_person=config.images_per_person,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_schedule="cosine",
        warmup_epochs=1 if config.num_epochs > 1 else 0,
        checkpoint_every=config.num_epochs,
        device=config.device,
        seed=config.seed,
        validation=ValidationConfig(fraction=VALIDATION_FRACTION, num_pairs=VALIDATION_PAIRS),
    )


def run_demo(
    config: DemoConfig,
    *,
    say: Callable[[str], None] = lambda _text: None,
    train_progress: TrainProgress | None = None,
) -> DemoResult:
    """Run the pipeline as `config` says, reporting each step through `say`."""
    out = Path(config.out)
    synthetic = config.data is None
    data_dir = out / "data" if synthetic else Path(config.data)
    if not synthetic and not data_dir.is_dir():
        raise UsageError(f"{data_dir}: not a folder (expected DATA_DIR/<identity>/<image>)")
    pairs = data_dir / "pairs.txt"
    cache = out / "faces.h5"
    train_cache = out / "train-faces.h5" if synthetic or pairs.is_file() else cache
    settings = train_settings(config, train_cache, out / "run")
    try:
        check_plugins(settings)
    except FacetoolError as exc:
        defaults = DemoConfig()
        if (config.backbone.name, config.loss.name) != (defaults.backbone.name, defaults.loss.name):
            raise
        raise type(exc)(f"{exc} ({EXTRAS_HINT})") from None

    out.mkdir(parents=True, exist_ok=True)
    if synthetic and not pairs.is_file():
        say(f"drawing a synthetic data set of {config.identities} face-like identities in {data_dir}")
        write_synthetic_dataset(
            data_dir,
            identities=config.identities,
            images_per_identity=config.images_per_identity,
            test_identities=config.test_identities,
            folds=config.folds,
            pairs_per_fold=config.pairs_per_fold,
            seed=config.seed,
        )
    detection = resolve_faces(data_dir, cache, DetectConfig(image_size=config.image_size), say=say).detection
    if train_cache != cache:
        train_cache.unlink(missing_ok=True)
        report = filter_cache(cache, train_cache, FilterSettings(exclude_pairs=[pairs]))
        say(f"kept {report.kept_identities} identities for training; the people of {pairs.name} are left out")

    say(
        f"training {config.backbone.label} with the {config.loss.label} loss for {counted(config.num_epochs, 'epoch')} of {counted(config.epoch_size, 'batch', 'batches')}"
    )
    training = train(settings, resume="auto", progress=train_progress)

    untrained = trained = None
    report_path = None
    if pairs.is_file():
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        baseline = build_backbone(
            config.backbone.name,
            config.backbone.settings,
            embedding_dim=config.embedding_dim,
            image_size=config.image_size,
        )
        baseline = baseline.to(device).eval()
        with open_cache(cache) as faces:
            untrained = evaluate_on_pairs(baseline, faces, pairs, device=device, image_size=config.image_size)
            model, _ = load_embedding_model(training.last_checkpoint, device)
            trained = evaluate_on_pairs(model, faces, pairs, device=device, image_size=config.image_size)
        report_path, _ = write_report(trained, out / "eval")
    else:
        say(f"{data_dir} has no pairs.txt: evaluation skipped")
    return DemoResult(data_dir, synthetic, detection, training, untrained, trained, report_path)
