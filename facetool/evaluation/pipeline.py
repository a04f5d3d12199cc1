"""The `facetool eval` command as a function: files in, files out.

It resolves the files (model, face cache or image folder, pairs), refuses outputs that would touch an input,
calls the core, `facetool.evaluation.run.evaluate_on_pairs` (model + cache + pairs -> EvalReport, no files
written), adds whether the pairs' people were held out of the model's training, and writes the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from facetool.cache import FaceCache, open_cache
from facetool.config.evaluate import EvalConfig
from facetool.errors import UsageError
from facetool.evaluation.data import default_pairs, faces_for_pairs
from facetool.evaluation.identification import people_scores
from facetool.evaluation.packs import evaluate_pack
from facetool.evaluation.pairs import PairsFile, read_pairs
from facetool.evaluation.report import PACKS_REPORT, REPORT_FILES, write_pack_reports, write_report
from facetool.evaluation.run import EvalReport, Progress, evaluate_on_pairs
from facetool.files import check_output_not_input, make_dir
from facetool.identities import identity_digests, normalize_identity
from facetool.inference import Embedder, crop_for, embedder_for
from facetool.models import ModelInfo


@dataclass(frozen=True)
class EvalOutcome:
    """The report, the model that was evaluated, and the files written."""

    report: EvalReport
    model: ModelInfo
    cache_path: Path
    report_path: Path
    roc_path: Path


def with_training_overlap(
    report: EvalReport,
    test_pairs: PairsFile,
    train_identities: Sequence[str] | None,
    *,
    threshold_pairs: PairsFile | None = None,
    fold: int | None = None,
) -> EvalReport:
    """`report` with how many of its people the model was trained on (by identity digest); unchanged when the
    model does not record its people.

    `trained_identities_in_pairs` counts the scored pairs' people (fold `fold` alone when given) and `held_out`
    says none was trained on. `threshold_identities_trained` counts the people of the pairs that chose the
    threshold: `threshold_pairs` (View 1's training pairs), else the other folds, else the whole file.
    """
    if train_identities is None:
        return report
    scored = test_pairs.identities(fold - 1) if fold is not None else test_pairs.people
    if threshold_pairs is not None:
        choosing = threshold_pairs.people
    elif fold is not None and test_pairs.n_folds is not None:
        choosing = set().union(
            *(test_pairs.identities(k) for k in range(test_pairs.n_folds) if k != fold - 1)
        )
    else:
        choosing = scored
    trained = set(train_identities)
    overlap = sum(digest in trained for digest in identity_digests(scored))
    return replace(
        report,
        held_out=overlap == 0,
        trained_identities_in_pairs=overlap,
        threshold_identities_trained=sum(digest in trained for digest in identity_digests(choosing)),
    )


def with_people_scores(
    report: EvalReport, embedder: Embedder, cache: FaceCache, pairs: PairsFile, config: EvalConfig
) -> EvalReport:
    """The report with identification and clustering scores of the scored pairs' people; clusters are cut at
    the mean fold threshold, as `facetool cluster` cuts at the card's."""
    identification, clustering = people_scores(
        embedder,
        cache,
        {normalize_identity(name) for name in pairs.people},
        batch_size=config.batch_size,
        metric=config.distance,
        far=config.identification_far,
        cut=sum(report.fold_threshold) / len(report.fold_threshold),
        cluster_min_faces=config.clustering_min_faces,
    )
    return replace(report, identification=identification.to_dict(), clustering=clustering.to_dict())


def evaluate_checkpoint(
    checkpoint: str | Path | Sequence[str | Path],
    config: EvalConfig,
    *,
    detect_progress: Callable[[object], None] | None = None,
    embed_progress: Progress | None = None,
) -> EvalOutcome:
    """Load `checkpoint`, get faces for the pairs (detecting a folder if needed), evaluate, write the files.

    Several checkpoints are evaluated as one ensemble (`facetool.inference.EnsembleEmbedder`).
    """
    if config.data is None:
        raise UsageError("no data given: pass --data with a face cache (.h5) or an LFW image folder")
    checkpoints = [Path(checkpoint)] if isinstance(checkpoint, str | Path) else [Path(c) for c in checkpoint]
    if not checkpoints:
        raise UsageError("no model given")
    pairs_path = config.pairs or default_pairs(config.data)
    inputs = [
        *checkpoints,
        config.data,
        pairs_path,
        *([config.train_pairs] if config.train_pairs else []),
    ]
    if config.out.exists():
        make_dir(config.out)  # a file in the way of --out: one line naming it, before any other check
    check_output_not_input(config.out, inputs, option="--out")
    for name in REPORT_FILES:
        check_output_not_input(config.out / name, inputs, option="--out")
    test_pairs = read_pairs(pairs_path)
    threshold_pairs = read_pairs(config.train_pairs) if config.train_pairs is not None else None
    pairs = [test_pairs] if threshold_pairs is None else [test_pairs, threshold_pairs]
    embedder, _card = embedder_for(checkpoints, config)
    make_dir(config.out)
    photos = config.data.is_dir()
    detect = crop_for(embedder, config.detect) if photos else config.detect
    cache_path = faces_for_pairs(config.data, pairs, config.out, detect, detect_progress)
    with open_cache(cache_path) as cache:
        report = evaluate_on_pairs(
            embedder,
            cache,
            pairs_path,
            train_pairs_path=config.train_pairs,
            distance=config.distance,
            progress=embed_progress,
            fold=config.fold,
        )
        if config.identification:
            report = with_people_scores(report, embedder, cache, test_pairs, config)
    report = with_training_overlap(
        report,
        test_pairs,
        embedder.info.train_identities,
        threshold_pairs=threshold_pairs,
        fold=config.fold,
    )
    report_path, roc_path = write_report(report, config.out)
    return EvalOutcome(report, embedder.info, cache_path, report_path, roc_path)


def evaluate_packs(
    checkpoint: str | Path | Sequence[str | Path],
    config: EvalConfig,
    *,
    embed_progress: Progress | None = None,
) -> tuple[list[EvalReport], Path]:
    """Score each of `config.packs` as insightface does (flip sum always: it is the protocol) and write
    packs.json into `config.out`; returns the reports in the order given and the file written."""
    if config.data is not None or config.pairs is not None or config.train_pairs is not None:
        raise UsageError(
            "--pack scores verification packs on their own; leave out --data, --pairs, --train-pairs"
        )
    checkpoints = [Path(checkpoint)] if isinstance(checkpoint, str | Path) else [Path(c) for c in checkpoint]
    if not checkpoints:
        raise UsageError("no model given")
    inputs = [*checkpoints, *config.packs]
    if config.out.exists():
        make_dir(config.out)
    check_output_not_input(config.out, inputs, option="--out")
    check_output_not_input(config.out / PACKS_REPORT, inputs, option="--out")
    embedder, _card = embedder_for(checkpoints, config.model_copy(update={"flip": True}))
    reports = [
        evaluate_pack(embedder, pack, distance=config.distance, progress=embed_progress)
        for pack in config.packs
    ]
    return reports, write_pack_reports(reports, config.out)
