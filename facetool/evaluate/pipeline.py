"""Everything `facetool eval` does, callable from Python: model file + data + pairs -> report and files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facetool.cache import open_cache
from facetool.config.evaluate import EvalConfig
from facetool.device import resolve_device
from facetool.errors import UsageError
from facetool.evaluate.data import default_pairs, faces_for_pairs
from facetool.evaluate.pairs import read_pairs
from facetool.evaluate.report import write_report
from facetool.evaluate.run import EvalReport, Progress, evaluate_on_pairs
from facetool.files import make_dir
from facetool.models import ModelInfo, load_embedding_model


@dataclass(frozen=True)
class EvalOutcome:
    """The report, the model that was evaluated, and the files written."""

    report: EvalReport
    model: ModelInfo
    cache_path: Path
    report_path: Path
    roc_path: Path


def evaluate_checkpoint(
    checkpoint: str | Path,
    config: EvalConfig,
    *,
    detect_progress: Callable[[object], None] | None = None,
    embed_progress: Progress | None = None,
) -> EvalOutcome:
    """Load `checkpoint`, get faces for the pairs (detecting a folder if needed), evaluate, write the files."""
    if config.data is None:
        raise UsageError("no data given: pass --data with a face cache (.h5) or an LFW image folder")
    make_dir(config.out)
    pairs_path = config.pairs or default_pairs(config.data)
    pairs = [read_pairs(pairs_path)]
    if config.train_pairs is not None:
        pairs.append(read_pairs(config.train_pairs))
    device = resolve_device(config.device)
    model, info = load_embedding_model(checkpoint, device)
    detect = config.detect.model_copy(update={"image_size": info.image_size})
    cache_path = faces_for_pairs(config.data, pairs, config.out, detect, detect_progress)
    with open_cache(cache_path) as cache:
        report = evaluate_on_pairs(
            model,
            cache,
            pairs_path,
            train_pairs_path=config.train_pairs,
            flip=config.flip,
            distance=config.distance,
            batch_size=config.batch_size,
            device=device,
            progress=embed_progress,
            image_size=info.image_size,
            fold=config.fold,
        )
    report_path, roc_path = write_report(report, config.out)
    return EvalOutcome(report, info, cache_path, report_path, roc_path)
