"""Tune a View 1 recipe on people held out of training, never on DevTest.

The recipe's `threshold_holdout` share of View 1's training people (drawn from the recipe's seed, the same people
`protocol` holds out for its threshold) is left out; each `--seed` trains a model on the rest, side by side, and
every model alone, and all of them as one, is scored on `--pairs` matched and as many mismatched pairs drawn among
the held-out people (10-fold accuracy, so every threshold comes from held-out pairs too). The models are the ones
the recipe's DevTest run trains when the seeds are the recipe's, so a test-time setting chosen here needs no
retraining. A rerun resumes the runs and only scores again.

    FACETOOL_SHARED=../shared python benchmarks/heldout_tuning.py --config RECIPE --faces CACHE --out DIR
        [--seed 0 --seed 1] [--set train.num_epochs=15] [--epoch 28] [--label TEXT] [--report FILE]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console

from facetool.cache import open_cache
from facetool.config.base import build_config
from facetool.config.dataset import FilterSettings
from facetool.config.protocol import ProtocolConfig
from facetool.curation import filter_cache, select_faces
from facetool.evaluation.holdout import hold_out_pairs, images_by_person
from facetool.evaluation.run import evaluate_on_pairs
from facetool.files import atomic_write_bytes
from facetool.inference import Embedder, as_one, load_embedder
from facetool.training.run_folder import epoch_copy_name
from facetool.training.side_by_side import train_side_by_side

HEADER = ["variant", "models", "epoch", "accuracy", "AUC", "train s (slowest)"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="a protocol recipe (TOML)")
    parser.add_argument("--faces", type=Path, required=True, help="face cache of the LFW folder")
    parser.add_argument("--out", type=Path, required=True, help="folder of the split and the runs")
    parser.add_argument("--seed", type=int, action="append", dest="seeds", help="a model's seed (repeatable)")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="key=value (repeatable)")
    parser.add_argument("--pairs", type=int, default=3000, help="matched pairs, as many mismatched")
    parser.add_argument(
        "--epoch", type=int, action="append", dest="epochs", help="also score this epoch's checkpoints"
    )
    parser.add_argument("--label", default=None, help="the variant's name in the table (default: the --set)")
    add_report_options(parser)
    return parser.parse_args(argv)


def held_out_split(config: ProtocolConfig, faces: Path, out: Path, pairs: int) -> tuple[Path, Path]:
    """The training cache without DevTest's people and the held-out ones, and the held-out pairs file;
    written once into `out` and reused."""
    pairs_dir = config.pairs_dir or Path(os.environ.get("FACETOOL_SHARED", "../shared")) / "lfw"
    base = FilterSettings(exclude_pairs=[pairs_dir / "pairsDevTest.txt"], min_images=2)
    people_file, pairs_file, train_cache = out / "people.txt", out / "pairs.txt", out / "train-faces.h5"
    out.mkdir(parents=True, exist_ok=True)
    if not pairs_file.is_file():
        with open_cache(faces) as cache:
            kept, _, _ = select_faces(cache, base)
            images = images_by_person(cache.paths[i] for i in kept)
        held = hold_out_pairs(images, config.threshold_holdout or 0.1, pairs, config.train.seed)
        atomic_write_bytes(people_file, ("\n".join(held.people) + "\n").encode("utf-8"))
        atomic_write_bytes(pairs_file, held.to_text().encode("utf-8"))
    if not train_cache.is_file():
        partial = out / "train-faces.partial.h5"
        partial.unlink(missing_ok=True)
        filter_cache(faces, partial, base.model_copy(update={"exclude": [people_file]}))
        partial.replace(train_cache)
    return train_cache, pairs_file


def ensembles(count: int) -> list[tuple[int, int]]:
    """Slices of the seeds scored as one: every prefix of two or more (`models = k` trains the first k), then
    the disjoint pairs after the first (a second sample of a pair's score)."""
    prefixes = [(0, k) for k in range(2, count + 1)]
    return prefixes + [(a, a + 2) for a in range(2, count - 1, 2)]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    config = build_config(ProtocolConfig, args.config, args.sets, {})
    train_cache, pairs_file = held_out_split(config, args.faces, args.out, args.pairs)
    seeds = args.seeds or [config.train.seed + i for i in range(config.models)]
    recipes = [
        config.train.model_copy(
            update={"data_dir": train_cache, "checkpoint_dir": args.out / f"seed-{seed}", "seed": seed}
        )
        for seed in seeds
    ]
    members = train_side_by_side(recipes, jobs=config.jobs)
    label = args.label or (", ".join(args.sets) if args.sets else "the recipe")
    slowest = round(max(m.duration_s for m in members))
    scored: list[tuple[str, str, list[Embedder]]] = []
    every: list[Embedder] = []
    for epoch in [None, *(args.epochs or [])]:
        checkpoints = [
            m.last_checkpoint if epoch is None else m.run_dir / epoch_copy_name(epoch) for m in members
        ]
        embedders = [load_embedder(c, device="cpu", flip=config.flip)[0] for c in checkpoints]
        when = str(epoch or members[0].epochs)
        scored += [(f"seed {s}", when, [e]) for s, e in zip(seeds, embedders, strict=True)]
        scored += [(" + ".join(map(str, seeds[a:b])), when, embedders[a:b]) for a, b in ensembles(len(seeds))]
        every += embedders
    if args.epochs:
        scored.append((" + ".join(map(str, seeds)), "all of these", every))
    rows = []
    with open_cache(args.faces) as cache:
        for name, when, chosen in scored:
            report = evaluate_on_pairs(as_one(chosen), cache, pairs_file, distance=config.distance)
            rows.append([label, name, when, f"{report.accuracy:.3f}", f"{report.auc:.3f}", slowest])
    title = f"Held-out tuning: {config.train.backbone}, {len(seeds)} seeds"
    Console().print(rich_table(title, HEADER, rows, left=2))
    report_path = report_file(args)
    if report_path is not None:
        append_section(report_path, title, HEADER, rows, script=__file__, argv=argv)


if __name__ == "__main__":
    main()
