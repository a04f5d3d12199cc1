"""The LFW verification protocol end to end, with the test people never seen in training.

View 1: train on the people not named in pairsDevTest.txt, choose the threshold on pairsDevTrain.txt, score
pairsDevTest.txt once. View 2: for each fold k, train on the people not in fold k of pairs.txt and score
fold k with thresholds from the other nine folds; the result is the mean over the folds run.
With `threshold_holdout`, a seeded share of the training people is left out of training as well, and the
threshold is chosen on pairs drawn among them (`threshold-pairs.txt` in the split's folder) instead.

Everything lands in `out`: the detector cache of the LFW folder (made once, reused), and per split a filtered
training cache, the training run and the evaluation report. A rerun with the same settings and faces (by
content) continues where the last one stopped (detection skips done images, training resumes from its last
checkpoint); a rerun with other ones is refused before any work, since it would mix two recipes.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from facetool.cache import lock_path, open_cache
from facetool.cache.digest import content_digest
from facetool.config.base import CONFIG_READ_LIMIT, format_validation_error
from facetool.config.dataset import FilterSettings
from facetool.config.protocol import ProtocolConfig, changed_keys, recipe_settings, upgraded_recipe
from facetool.curation import filter_cache, select_faces
from facetool.detection.resolve import resolve_faces
from facetool.device import resolve_device
from facetool.errors import ConfigError, FacetoolError, UsageError
from facetool.evaluation.holdout import hold_out_pairs, images_by_person
from facetool.evaluation.pairs import read_pairs
from facetool.evaluation.pipeline import with_training_overlap
from facetool.evaluation.report import warning_line, write_report
from facetool.evaluation.run import EvalReport, evaluate_on_pairs
from facetool.files import atomic_write_bytes, check_output_not_input, make_dir, read_text_limited
from facetool.inference import as_one, load_embedder
from facetool.training.loop import TrainResult, train
from facetool.training.progress import TrainProgress
from facetool.training.recipe import check_plugins
from facetool.training.run_folder import epoch_copy_name
from facetool.training.side_by_side import scheduled_seconds, train_side_by_side

RECIPE_FILE = "protocol-recipe.json"
RESULT_FILE = "result.json"
THRESHOLD_PAIRS_FILE = "threshold-pairs.txt"
THRESHOLD_PEOPLE_FILE = "threshold-people.txt"
FACES_KEY = "faces_digest"


@dataclass(frozen=True)
class Split:
    """One train/test split: the people left out of training and the pairs scored."""

    name: str
    exclude: FilterSettings
    pairs: Path
    train_pairs: Path | None = None
    fold: int | None = None


@dataclass(frozen=True)
class SplitResult:
    """What one split's model scored, and what it was trained on and for how long.

    With several models, `checkpoints` lists them all (`checkpoint` is the first), the figures are the
    ensemble's, and `train_seconds` is the set's wall time: the slowest model's when all train at once, the
    models' times laid out `jobs` at a time otherwise.
    """

    name: str
    fold: int | None
    accuracy: float
    threshold: float
    val: float
    auc: float
    test_pairs: int
    train_identities: int
    train_images: int
    epochs: int
    train_seconds: float
    checkpoint: str
    report: str
    checkpoints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProtocolResult:
    """The splits' results; `accuracy` is their mean and `accuracy_std` the population std over them."""

    view: int
    splits: list[SplitResult]
    accuracy: float
    accuracy_std: float
    path: Path

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def protocol_splits(config: ProtocolConfig, pairs_dir: Path) -> list[Split]:
    """The splits of the configured view, with the pairs files they need (which must exist); with extra
    negatives the training people include those with a single image."""
    min_images = 1 if config.train.extra_negatives else 2
    if config.view == 1:
        test, dev_train = pairs_dir / "pairsDevTest.txt", pairs_dir / "pairsDevTrain.txt"
        _need(test, dev_train)
        exclude = FilterSettings(exclude_pairs=[test], min_images=min_images)
        return [Split("view1", exclude, test, train_pairs=dev_train)]
    pairs = pairs_dir / "pairs.txt"
    _need(pairs)
    return [
        Split(
            f"fold-{k:02d}",
            FilterSettings(exclude_pairs=[pairs], fold=k, min_images=min_images),
            pairs,
            fold=k,
        )
        for k in config.folds
    ]


def _need(*paths: Path) -> None:
    for path in paths:
        if not path.is_file():
            raise UsageError(
                f"{path}: pairs file not found (set pairs_dir to the folder of the LFW pairs files)"
            )


def _read_json(path: Path, what: str) -> Any:
    """The JSON in `path` (at most CONFIG_READ_LIMIT bytes); one ConfigError naming it when it is not JSON."""
    try:
        text = read_text_limited(path, limit=CONFIG_READ_LIMIT, what=what)
        return json.loads(text)
    except (FacetoolError, ValueError) as exc:
        why = "it is empty" if isinstance(exc, ValueError) and not text.strip() else str(exc)
        raise ConfigError(f"{path}: not a readable {what} ({why}); give another out folder") from None


def _stored_recipe(out: Path) -> dict[str, Any] | None:
    """The recipe an earlier run stored in `out` (None when there is none)."""
    path = out / RECIPE_FILE
    if not path.is_file():
        return None
    stored = _read_json(path, "protocol recipe")
    if not isinstance(stored, dict):
        raise ConfigError(
            f"{path}: not a protocol recipe (a JSON {type(stored).__name__}, expected an object); "
            "give another out folder"
        )
    return stored


def _check_recipe(config: ProtocolConfig, out: Path, stored: dict[str, Any] | None) -> None:
    """Refuse a rerun with other settings than the run stored in `out`; the face cache is checked later."""
    if stored is None:
        return
    before = {key: value for key, value in stored.items() if key != FACES_KEY}
    changed = sorted(changed_keys(upgraded_recipe(before), recipe_settings(config)))
    if changed:
        raise ConfigError(
            f"{out}: holds a run with other settings ({', '.join(changed[:5])} differ); "
            "give another out folder"
        )


def _check_faces(out: Path, faces: Path, recipe: dict[str, Any]) -> None:
    """Refuse faces other than those the splits in `out` were made from (by content, not by path); record them
    in the stored `recipe` when it has none yet (a new run, or one made before the faces were recorded)."""
    digest = content_digest(faces)
    before = recipe.get(FACES_KEY)
    if before is None:
        _write_json(out / RECIPE_FILE, {**recipe, FACES_KEY: digest})
    elif before != digest:
        raise ConfigError(
            f"{faces}: other faces than the run in {out} was made from (content digest {digest[:12]} vs "
            f"{str(before)[:12]}); its splits' caches and models come from those: give another out folder"
        )


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, text)


def _faces_cache(config: ProtocolConfig, out: Path, say: Callable[[str], None]) -> Path:
    if config.faces is None and config.lfw_dir is None:
        raise ConfigError("lfw_dir: not set (the LFW image folder, e.g. lfw/lfw-deepfunneled)")
    data, what = (config.faces, "face cache") if config.faces is not None else (config.lfw_dir, "lfw_dir")
    resolved = resolve_faces(data, out / "faces.h5", config.detect, what=what, missing=UsageError, say=say)
    summary = resolved.detection
    if summary is not None:
        say(
            f"{summary.images} images, {summary.skipped} already in the cache; this run: {summary.faces} "
            f"faces, {summary.fallbacks} fallbacks, {summary.failures} failures"
        )
    return resolved.cache


def _training_cache(faces: Path, split: Split, split_dir: Path, say: Callable[[str], None]) -> Path:
    """The faces of the people the split may train on; written once, atomically, then reused."""
    path = split_dir / "train-faces.h5"
    if path.is_file():
        return path
    tmp = split_dir / "train-faces.partial.h5"
    tmp.unlink(missing_ok=True)
    report = filter_cache(faces, tmp, split.exclude)
    os.replace(tmp, path)
    lock_path(tmp).unlink(missing_ok=True)
    dropped = ", ".join(f"{count} {reason}" for reason, count in report.dropped_identities.items())
    say(
        f"{split.name}: training on {report.kept_identities} identities ({report.kept_images} images); "
        f"identities left out: {dropped or 'none'}"
    )
    return path


def _held_out_threshold(
    config: ProtocolConfig, faces: Path, split: Split, split_dir: Path, say: Callable[[str], None]
) -> Split:
    """`split` with a share of its training people left out and their pairs choosing the threshold.

    The people and pairs are drawn once from the recipe's seed and kept in the split's folder (the people as
    an identity list, the pairs as a View 1 pairs file), so a rerun trains and scores on the same ones.
    """
    people, pairs = split_dir / THRESHOLD_PEOPLE_FILE, split_dir / THRESHOLD_PAIRS_FILE
    if not (people.is_file() and pairs.is_file()):
        with open_cache(faces) as cache:
            kept, _, _ = select_faces(cache, split.exclude)
            images = images_by_person(cache.paths[i] for i in kept)
        held = hold_out_pairs(images, config.threshold_holdout, config.threshold_pairs, config.train.seed)
        atomic_write_bytes(people, ("\n".join(held.people) + "\n").encode("utf-8"))
        atomic_write_bytes(pairs, held.to_text().encode("utf-8"))
        say(
            f"{split.name}: {len(held.people)} training people held out to choose the threshold on "
            f"{2 * len(held.matched)} pairs among them ({pairs})"
        )
    exclude = split.exclude.model_copy(update={"exclude": [*split.exclude.exclude, people]})
    return replace(split, exclude=exclude, train_pairs=pairs)


def member_runs(models: int) -> list[str]:
    """The run folders of a split's models: `run`, then `run-2`, `run-3`, ..."""
    return ["run", *(f"run-{i}" for i in range(2, models + 1))]


def ensemble_checkpoints(members: list[TrainResult], snapshots: list[int]) -> list[Path]:
    """The checkpoints a split scores as one: each model's last, then its checkpoints of the `snapshots`
    epochs (which its run folder must hold)."""
    found = [m.last_checkpoint for m in members]
    for epoch in snapshots:
        for member in members:
            path = member.run_dir / epoch_copy_name(epoch)
            if not path.is_file():
                raise UsageError(f"{path}: snapshot of epoch {epoch} not found (was it deleted?)")
            found.append(path)
    return found


def run_split(
    config: ProtocolConfig,
    faces: Path,
    split: Split,
    *,
    say: Callable[[str], None] = lambda _text: None,
    train_progress: TrainProgress | None = None,
) -> tuple[SplitResult, EvalReport]:
    """Train the split's model or models (resuming any left unfinished) and score its pairs."""
    split_dir = Path(config.out) / split.name
    split_dir.mkdir(parents=True, exist_ok=True)
    if config.threshold_holdout:
        split = _held_out_threshold(config, faces, split, split_dir, say)
    train_cache = _training_cache(faces, split, split_dir, say)
    recipes = [
        config.train.model_copy(
            update={"data_dir": train_cache, "checkpoint_dir": split_dir / run, "seed": config.train.seed + i}
        )
        for i, run in enumerate(member_runs(config.models))
    ]
    recipe = recipes[0]
    say(
        f"{split.name}: training {recipe.backbone.label} for {recipe.num_epochs} epochs of {recipe.epoch_size} steps"
        + (
            f", {len(recipes)} models side by side"
            + (f", {config.jobs} at a time" if 0 < config.jobs < len(recipes) else "")
            + " (each run folder's train.log shows its progress)"
            if len(recipes) > 1
            else ""
        )
    )
    if len(recipes) == 1:
        members = [train(recipe, resume="auto", progress=train_progress)]
    else:
        members = train_side_by_side(recipes, jobs=config.jobs)
    trained = members[0]
    device = resolve_device(config.device)
    checkpoints = ensemble_checkpoints(members, config.snapshots)
    embedder = as_one([load_embedder(c, device=device, flip=config.flip)[0] for c in checkpoints])
    with open_cache(faces) as cache:
        report = evaluate_on_pairs(
            embedder,
            cache,
            split.pairs,
            train_pairs_path=split.train_pairs,
            fold=split.fold,
            distance=config.distance,
        )
    report = with_training_overlap(
        report,
        read_pairs(split.pairs),
        embedder.info.train_identities,
        threshold_pairs=read_pairs(split.train_pairs) if split.train_pairs is not None else None,
        fold=split.fold,
    )
    report_path, _ = write_report(report, split_dir / "eval")
    with open_cache(train_cache) as cache:
        train_images = len(cache)
    result = SplitResult(
        name=split.name,
        fold=split.fold,
        accuracy=report.accuracy,
        threshold=report.fold_threshold[0],
        val=report.val,
        auc=report.auc,
        test_pairs=report.num_pairs,
        train_identities=trained.train_identities + trained.val_identities,
        train_images=train_images,
        epochs=trained.epochs,
        train_seconds=round(
            scheduled_seconds([sum(r["time_s"] for r in m.history) for m in members], config.jobs), 1
        ),
        checkpoint=str(trained.last_checkpoint),
        report=str(report_path),
        checkpoints=[str(c) for c in checkpoints] if len(checkpoints) > 1 else [],
    )
    _write_json(split_dir / RESULT_FILE, asdict(result))
    note = warning_line(report)
    say(
        f"{split.name}: accuracy {result.accuracy:.4f} on {result.test_pairs} pairs"
        + (f"; {note}" if note else "")
    )
    return result, report


def run_protocol(
    config: ProtocolConfig,
    *,
    say: Callable[[str], None] = lambda _text: None,
    train_progress: TrainProgress | None = None,
) -> ProtocolResult:
    """Run the configured splits and write out/protocol-view{1,2}.json.

    The result covers every split of the view finished in `out` (earlier runs' folds included: the recipe
    check guarantees they were trained the same way), so folds can be run a few at a time.
    """
    out = Path(config.out)
    pairs_dir = config.pairs_dir or (config.lfw_dir.parent if config.lfw_dir else None)
    if pairs_dir is None:
        raise ConfigError(
            "pairs_dir: not set (the folder of the LFW pairs files), and no lfw_dir to look beside"
        )
    splits = protocol_splits(config, pairs_dir)
    check_plugins(config.train, prefix="train.")
    check_output_not_input(out, [p for p in (config.lfw_dir, config.faces) if p is not None], option="--out")
    stored = _stored_recipe(out)
    _check_recipe(config, out, stored)
    finished_splits(out, config.view)
    make_dir(out, "output folder")
    if stored is None:
        stored = recipe_settings(config)
        _write_json(out / RECIPE_FILE, stored)
    faces = _faces_cache(config, out, say)
    _check_faces(out, faces, stored)
    for split in splits:
        run_split(config, faces, split, say=say, train_progress=train_progress)
    results = finished_splits(out, config.view)
    accuracies = [r.accuracy for r in results]
    path = out / f"protocol-view{config.view}.json"
    result = ProtocolResult(
        view=config.view,
        splits=results,
        accuracy=statistics.fmean(accuracies),
        accuracy_std=statistics.pstdev(accuracies),
        path=path,
    )
    _write_json(path, {"config": config.model_dump(mode="json"), "result": result.to_dict()})
    return result


def finished_splits(out: str | Path, view: int) -> list[SplitResult]:
    """Every split of `view` finished in `out`, by this run or an earlier one with the same recipe."""
    pattern = "view1" if view == 1 else "fold-*"
    return [_read_result(path) for path in sorted(Path(out).glob(f"{pattern}/{RESULT_FILE}"))]


def _read_result(path: Path) -> SplitResult:
    """A split's result.json; one with keys this version does not know (a newer version's) is refused, since
    averaging it with the others would claim a recipe this version cannot check."""
    data = _read_json(path, "split result")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a split result (a JSON {type(data).__name__}, expected an object)")
    known = {f.name for f in fields(SplitResult)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r} (written by a newer facetool?); this version cannot summarise "
            "its split: use the version that wrote it, or give another out folder"
        )
    try:
        return TypeAdapter(SplitResult).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
