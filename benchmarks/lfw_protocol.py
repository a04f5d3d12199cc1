"""The LFW protocol from the shared images to the accuracy in one command, recorded in docs/benchmarks.md.

Runs `facetool.protocol.run_protocol` (detect once into --out, leave the test people out, train with the
recipe's fixed seed, score) and appends the recipe (every training setting that differs from facetool's
defaults) and the per-split table to the report.

    FACETOOL_SHARED=../shared python benchmarks/lfw_protocol.py --config recipe.toml --view 1 [--out DIR]
        [--fold K ...] [--faces CACHE] [--set train.num_epochs=20] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from report import add_report_options, append_section, report_file
from rich.console import Console

from facetool.cli.protocol import RESULT_HEADER, result_rows, result_table
from facetool.config.base import build_config, named_tables
from facetool.config.protocol import ProtocolConfig
from facetool.config.train import TrainConfig
from facetool.protocol import ProtocolResult, recipe_settings, run_protocol
from facetool.training.progress import RichProgress


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML: protocol settings and a [train] table"
    )
    parser.add_argument("--view", type=int, choices=(1, 2), default=None)
    parser.add_argument("--fold", type=int, action="append", dest="folds", help="View 2 fold (repeatable)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--faces", type=Path, default=None, help="an existing face cache of the LFW folder")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="key=value (repeatable)")
    add_report_options(parser)
    return parser.parse_args(argv)


def recipe_changes(config: ProtocolConfig) -> str:
    """The training settings, and the protocol settings a result depends on, that differ from facetool's
    defaults, as `key=value` items."""
    default = TrainConfig().model_dump(mode="json")
    chosen = config.train.model_dump(mode="json")
    items = []
    for key, value in chosen.items():
        if key in ("data_dir", "checkpoint_dir"):
            continue
        if key in named_tables(TrainConfig):  # a plugin and its settings: `backbone=tiny-cnn(head=gdc)`
            if default.get(key) != value:
                items.append(f"{key}={getattr(config.train, key).label}")
        elif isinstance(value, dict):
            items += [f"{key}.{k}={v}" for k, v in value.items() if default[key].get(k) != v]
        elif default.get(key) != value:
            items.append(f"{key}={value}")
    extra = [
        f"{k}={v}"
        for k, v in recipe_settings(config).items()
        if k not in ("detect", "train") and v != ProtocolConfig.model_fields[k].default
    ]
    if config.models > 1 and config.jobs:
        extra.append(f"jobs={config.jobs}")  # not the models, but their training time
    return ", ".join(items + extra) or "facetool's defaults"


def main(argv: list[str] | None = None) -> ProtocolResult:
    args = parse(argv)
    shared = Path(os.environ.get("FACETOOL_SHARED", "../shared"))
    given = {"view": args.view, "folds": args.folds, "out": args.out, "faces": args.faces}
    config = build_config(ProtocolConfig, args.config, args.sets, given)
    if config.lfw_dir is None:
        config = config.model_copy(update={"lfw_dir": shared / "lfw" / "lfw-deepfunneled"})
    console = Console(stderr=True)
    result = run_protocol(
        config, say=lambda text: console.print(f"› {text}"), train_progress=RichProgress(console)
    )
    Console().print(result_table(result))
    report = report_file(args)
    if report is not None:
        append_section(
            report,
            f"LFW View {result.view}: {config.train.backbone.label} at {config.train.image_size} px",
            RESULT_HEADER,
            result_rows(result),
            script=__file__,
            argv=argv,
            note=f"Recipe: {recipe_changes(config)}; seed {config.train.seed}; device {config.train.device}.",
        )
    return result


if __name__ == "__main__":
    main()
