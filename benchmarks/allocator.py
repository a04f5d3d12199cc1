"""Page faults per step and seconds per epoch of a short `facetool train`, with the allocator's memory kept (as
facetool runs) and left alone, side by side (issue 36, item 3).

Each run is `facetool.training.loop.train` on a face cache with a recipe's [train] table (plus `--set KEY=JSON`
changes) in a fresh process, so glibc's malloc starts from its own state every time (its mmap threshold moves
with what the process freed last). In the "left alone" runs the child replaces
`facetool.training.loop.keep_memory` by a block that sets nothing (glibc's own thresholds, as before issue 36);
this switch exists only in this script's child, not in facetool's settings. The variants alternate (A B, B A,
...). Minor page faults per step come from getrusage around every `Engine.step`; the table gives medians over
runs: seconds per epoch (history.json's time_s, mean over the run's epochs, and over the epochs after the
first, whose steps are past the warm-up), the per-step faults (median of all steps; median of the first
epoch's and of the later epochs' steps; the largest) and the share of steps with more than 1,000 faults.
The first run's training losses are printed, to show both variants train the same bits.
Usage: python benchmarks/allocator.py --cache faces.h5 [--recipe benchmarks/recipes/lfw-view1-cpu-gdc.toml]
       [--set epoch_size=10 num_epochs=4] [--runs 3] [--work DIR] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report import add_report_options, append_section, report_file, rich_table
from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
SWITCH = "FACETOOL_BENCH_KEEP_MEMORY"
VARIANTS = {"memory kept (facetool)": "1", "left alone (glibc's own thresholds)": "0"}

DRIVER = r"""
import contextlib, json, os, resource, sys, time, tomllib
from pathlib import Path
from facetool.config.train import TrainConfig
from facetool.training import loop
from facetool.training.callbacks import Callback

if os.environ["FACETOOL_BENCH_KEEP_MEMORY"] == "0":
    @contextlib.contextmanager
    def left_alone(enabled=True):
        yield False

    loop.keep_memory = left_alone

recipe, cache, run_dir, changes = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
table = tomllib.loads(Path(recipe).read_text())["train"]
config = TrainConfig.model_validate({**table, **changes, "data_dir": cache, "checkpoint_dir": run_dir})
faults, epoch = [], [0]


class Faults(Callback):
    name = "faults"

    def on_train_start(self, trainer):
        step = trainer.engine.step

        def counted(*args, **kwargs):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            try:
                return step(*args, **kwargs)
            finally:
                faults.append((epoch[0], resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))

        trainer.engine.step = counted

    def on_epoch_end(self, trainer, record):
        epoch[0] += 1


loop.train(config, overwrite=True, callbacks=[Faults()])
history = json.loads((Path(run_dir) / "history.json").read_text())
records = history if isinstance(history, list) else history["epochs"]
print(json.dumps({"faults": faults, "epochs": [r["time_s"] for r in records],
                  "loss": [r["train_loss"] for r in records]}))
"""

HEADER = (
    "variant",
    "s/epoch",
    "s/epoch after the first",
    "faults/step, median",
    "mean",
    "mean, first epoch",
    "mean, later epochs",
    "largest",
    "steps > 1,000 faults",
)


def run_once(switch: str, args: argparse.Namespace, run_dir: Path) -> dict:
    """One training run in a fresh process, the allocator kept (`switch` "1") or left alone ("0")."""
    env = dict(os.environ, **{SWITCH: switch})
    changes = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    command = [
        sys.executable,
        "-P",  # the facetool on PYTHONPATH or installed, not one in the working directory
        "-c",
        DRIVER,
        str(args.recipe),
        str(args.cache),
        str(run_dir),
        json.dumps(changes),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"training failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(name: str, runs: list[dict]) -> list[str]:
    """One table row: medians over `runs` of each run's figures."""
    med = statistics.median

    def per_run(figure) -> float:
        return med([figure(r) for r in runs])

    def faults(r: dict, first: bool | None = None) -> list[int]:
        return [f for e, f in r["faults"] if first is None or (e == 0) == first] or [0]

    return [
        name,
        f"{per_run(lambda r: sum(r['epochs']) / len(r['epochs'])):.2f}",
        f"{per_run(lambda r: statistics.mean(r['epochs'][1:] or r['epochs'])):.2f}",
        f"{per_run(lambda r: med(faults(r))):,.0f}",
        f"{per_run(lambda r: statistics.mean(faults(r))):,.0f}",
        f"{per_run(lambda r: statistics.mean(faults(r, True))):,.0f}",
        f"{per_run(lambda r: statistics.mean(faults(r, False))):,.0f}",
        f"{per_run(lambda r: max(faults(r))):,.0f}",
        f"{per_run(lambda r: 100 * sum(f > 1000 for f in faults(r)) / len(faults(r))):.0f}%",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument(
        "--recipe", type=Path, default=REPO / "benchmarks" / "recipes" / "lfw-view1-cpu-gdc.toml"
    )
    parser.add_argument("--set", nargs="*", default=["epoch_size=10", "num_epochs=4"], metavar="KEY=JSON")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the run folders (default: a temp one)"
    )
    add_report_options(parser)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for run in range(args.runs):
            for i, name in enumerate(names if run % 2 == 0 else reversed(names)):
                results[name].append(run_once(VARIANTS[name], args, Path(tmp) / f"run-{run}-{i}"))
    rows = [row(name, runs) for name, runs in results.items()]
    title = (
        f"the allocator's memory kept or left alone: a short `facetool train` of {args.recipe.name} with "
        f"{' '.join(args.set)}, fresh process per run, median of {args.runs} alternated runs"
    )
    losses = "; ".join(
        f"{name}: train_loss {' '.join(f'{x:.6f}' for x in runs[0]['loss'])}"
        for name, runs in results.items()
    )
    Console().print(rich_table(title, HEADER, rows), losses)
    report = report_file(args)
    if report is not None:
        append_section(report, title, HEADER, rows, script=__file__, note=f"First runs' losses: {losses}.")


if __name__ == "__main__":
    main()
