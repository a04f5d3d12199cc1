"""Where a real short `facetool train` run spends its time, per source tree, side by side (issue 36).

Each run is `facetool.train` on a face cache with a recipe's [train] table (plus `--set KEY=JSON` changes), in a
fresh process whose PYTHONPATH is one source tree (this repository by default; name another checkout with
`--trees` to compare before and after). The runs of the trees alternate (A B, B A, ...). A callback times the
parts of every epoch: the start-up (process start to the first step), the selection rounds (fetch, augment,
mine) and their embedding pass, the training steps, the step and round events (train.log, progress), and the
epoch's end (the scheduler, validation, checkpoint files, history, plots); "other" is the rest of the epochs'
wall time. Minor page faults per step come from getrusage around each step. The table gives medians over runs
of per-epoch means (seconds), and is appended to docs/benchmarks.md unless --no-report.
Usage: python benchmarks/train_epochs.py --cache faces.h5 --recipe benchmarks/recipes/lfw-view1-cpu-gdc.toml
       [--set epoch_size=20 num_epochs=3] [--trees DIR ...] [--runs 3] [--work DIR] [--report FILE | --no-report]
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

DRIVER = r"""
import json, resource, sys, time, tomllib
started = time.perf_counter()
from pathlib import Path
import facetool
from facetool.config.train import TrainConfig
from facetool.training.callbacks import Callback
from facetool.training.loop import train

recipe, cache, run_dir, changes = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
table = tomllib.loads(Path(recipe).read_text())["train"]
config = TrainConfig.model_validate({**table, **changes, "data_dir": cache, "checkpoint_dir": run_dir})
parts = {k: 0.0 for k in ("selection", "embedding", "steps", "step and round events", "epoch end")}
faults, marks = [], {}


def timed(name, fn, count_faults=False):
    def run(*args, **kwargs):
        t = time.perf_counter()
        f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        try:
            return fn(*args, **kwargs)
        finally:
            parts[name] += time.perf_counter() - t
            if count_faults:
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
    return run


class Calls:
    def __init__(self, target, call):
        self._target, self._call = target, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._target, name)


class Parts(Callback):
    name = "parts"

    def on_train_start(self, trainer):
        marks["train_start"] = time.perf_counter() - started
        engine, runner, callbacks = trainer.engine, trainer.epoch_runner, trainer.callbacks
        engine.embed_inputs = timed("embedding", engine.embed_inputs)
        engine.step = timed("steps", engine.step, count_faults=True)
        runner.selection = Calls(runner.selection, timed("selection", runner.selection))
        fire = callbacks.fire

        def fire_timed(event, *args):
            name = {"on_step": "step and round events", "on_round": "step and round events",
                    "on_epoch_end": "epoch end"}.get(event)
            return timed(name, fire)(event, *args) if name else fire(event, *args)

        callbacks.fire = fire_timed

    def on_step(self, trainer, step):
        marks.setdefault("first_step", time.perf_counter() - started)


train(config, overwrite=True, callbacks=[Parts()])
history = json.loads((Path(run_dir) / "history.json").read_text())
records = history if isinstance(history, list) else history["epochs"]
parts["selection"] -= parts["embedding"]
print(json.dumps({"parts": parts, "faults": faults, "marks": marks, "facetool": facetool.__file__,
                  "epochs": [r["time_s"] for r in records], "loss": [r["train_loss"] for r in records]}))
"""

PARTS = ("selection", "embedding", "steps", "step and round events", "epoch end")


def run_once(tree: Path, args: argparse.Namespace, work: Path) -> dict:
    """One training run with `tree`'s code; the driver's figures."""
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{tree / 'plugins' / 'facetool-extras' / 'src'}")
    changes = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    command = [
        sys.executable,
        "-P",  # not the working directory first on sys.path: the tree's own facetool
        "-c",
        DRIVER,
        str(args.recipe),
        str(args.cache),
        str(work),
        json.dumps(changes),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{tree}: training failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["facetool"]).resolve().is_relative_to(tree.resolve()):
        sys.exit(f"{tree}: the run imported facetool from {result['facetool']}, not from this tree")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument(
        "--recipe", type=Path, default=REPO / "benchmarks" / "recipes" / "lfw-view1-cpu-gdc.toml"
    )
    parser.add_argument("--set", nargs="*", default=["epoch_size=20", "num_epochs=3"], metavar="KEY=JSON")
    parser.add_argument("--trees", type=Path, nargs="+", default=[REPO])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the run folders (default: a temp one)"
    )
    add_report_options(parser)
    args = parser.parse_args()
    results: dict[Path, list[dict]] = {tree: [] for tree in args.trees}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for run in range(args.runs):
            for i, tree in enumerate(args.trees if run % 2 == 0 else reversed(args.trees)):
                results[tree].append(run_once(tree, args, Path(tmp) / f"run-{run}-{i}"))
    rows = []
    for tree, runs in results.items():
        epochs = len(runs[0]["epochs"])
        med = lambda values: statistics.median(values)  # noqa: E731
        row = [str(tree), f"{med([r['marks']['first_step'] for r in runs]):.1f}"]
        row.append(f"{med([sum(r['epochs']) / epochs for r in runs]):.2f}")
        for part in PARTS:
            row.append(f"{med([r['parts'][part] / epochs for r in runs]):.2f}")
        inside = [p for p in PARTS if p != "epoch end"]
        other = [(sum(r["epochs"]) - sum(r["parts"][p] for p in inside)) / epochs for r in runs]
        row.append(f"{med(other):.2f}")
        row.append(f"{med([statistics.median(r['faults']) for r in runs]):,.0f}")
        row.append(" ".join(f"{x:.4f}" for x in runs[0]["loss"]))
        rows.append(row)
    title = (
        f"a short `facetool train` per source tree: {args.recipe.name} with {' '.join(args.set)}, median of "
        f"{args.runs} alternated runs, seconds per epoch"
    )
    header = ("tree", "start-up to first step", "epoch", *PARTS, "other", "page faults/step", "train_loss")
    Console().print(rich_table(title, header, rows))
    report = report_file(args)
    if report is not None:
        append_section(report, title, header, rows, script=__file__)


if __name__ == "__main__":
    main()
