"""LFW through the field's formats and back (issue 31): train from an imported RecordIO set of the View 1 training
people, score DevTest from an imported verification pack, and compare with the same run on the face cache.

Every step is the `facetool` command a user types, in a subprocess: `dataset filter` (the people of DevTest left
out), `dataset export` (a header-record .rec) and `dataset import` (back into a cache), `dataset export --pack`
of DevTest and its `dataset import`; then one recipe trained twice, from the cache and from the imported set
(side by side, one thread each), and each model scored three ways: DevTest on the LFW cache, the imported pack's
cache with its pairs CSV, and the pack itself (`eval --pack`, insightface's scoring). Prints one table.

    FACETOOL_SHARED=../shared python benchmarks/recordio_roundtrip.py --faces lfw-faces.h5 --work /tmp/rt \
        [--config benchmarks/recipes/lfw-view1-cpu-batch-hard-ensemble.toml] [--set train.num_epochs=20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report import add_report_options, append_section, report_file
from timing import facetool

from facetool.cache import open_cache

ROOT = Path(__file__).resolve().parent.parent


def same_faces(a: Path, b: Path) -> bool:
    """Whether two caches hold the same stored images, byte for byte (SHA-256 of each, in any order)."""
    digests = []
    for path in (a, b):
        with open_cache(path) as cache:
            digests.append(
                sorted(hashlib.sha256(p).hexdigest() for p in cache.payloads(np.arange(len(cache))))
            )
    return digests[0] == digests[1]


def train_command(config: Path, data: Path, run_dir: Path, sets: list[str]) -> list[str]:
    """`facetool train` of the recipe's [train] table on `data` into `run_dir`, one thread (as the recipes); a
    rerun of the benchmark resumes the runs (a finished one is left as it is): delete --work to start again."""
    extra = [arg for text in sets for arg in ("--set", text)]
    return [sys.executable, "-m", "facetool", "train", "--config", str(config), "--data", str(data),
            "--checkpoint-dir", str(run_dir), "--resume", "auto", *extra]  # fmt: skip


def main() -> None:
    shared = Path(os.environ.get("FACETOOL_SHARED", "../shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--faces", type=Path, required=True, help="face cache of all of LFW (facetool detect)"
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for every file the run writes")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "benchmarks/recipes/lfw-view1-cpu-batch-hard-ensemble.toml"
    )
    parser.add_argument(
        "--set", action="append", default=[], dest="sets", help="train.key=value (repeatable)"
    )
    add_report_options(parser)
    args = parser.parse_args()
    work = args.work
    (work / "rec").mkdir(parents=True, exist_ok=True)
    devtest = shared / "lfw" / "pairsDevTest.txt"

    times = {}
    times["filter"] = facetool(
        "dataset", "filter", args.faces, "--exclude-pairs", devtest, "-o", work / "train.h5"
    )
    times["export"] = facetool("dataset", "export", work / "train.h5", "-o", work / "rec" / "train.rec")
    times["import"] = facetool("dataset", "import", work / "rec" / "train.rec", "-o", work / "imported.h5")
    times["pack"] = facetool("dataset", "export", args.faces, "--pack", devtest, "-o", work / "devtest.bin")
    times["pack import"] = facetool("dataset", "import", work / "devtest.bin", "-o", work / "devtest.h5")
    with open_cache(work / "train.h5") as faces:
        records = len(faces)
    identical = same_faces(work / "train.h5", work / "imported.h5")

    sets = [text.removeprefix("train.") for text in args.sets]
    runs = {"cache": work / "train.h5", "imported .rec": work / "imported.h5"}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            train_command(args.config, data, work / f"run-{i}", sets),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, data in enumerate(runs.values())
    ]
    for proc in procs:
        if proc.wait() != 0:
            sys.exit(f"training failed:\n{proc.stderr.read()}")
    train_s = time.perf_counter() - start
    weights = [
        torch.load(work / f"run-{i}" / "last.pth", map_location="cpu", weights_only=False)["model"]
        for i in range(2)
    ]
    same_weights = weights[0].keys() == weights[1].keys() and all(
        torch.equal(weights[0][k], weights[1][k]) for k in weights[0]
    )

    rows = []
    for i, source in enumerate(runs):
        ckpt = work / f"run-{i}" / "last.pth"
        scores = []
        out = work / f"eval-{i}-cache"
        facetool("eval", ckpt, "--data", args.faces, "--pairs", devtest, "--flip", "--out", out)
        scores.append(json.loads((out / "report.json").read_text()))
        out = work / f"eval-{i}-imported-pack"
        facetool(
            "eval",
            ckpt,
            "--data",
            work / "devtest.h5",
            "--pairs",
            work / "devtest.pairs.csv",
            "--flip",
            "--out",
            out,
        )
        scores.append(json.loads((out / "report.json").read_text()))
        out = work / f"eval-{i}-pack"
        facetool("eval", ckpt, "--pack", work / "devtest.bin", "--out", out)
        scores.append(json.loads((out / "packs.json").read_text())[0])
        rows.append(
            [f"trained from the {source}", *(f"{s['accuracy']:.4f} (AUC {s['auc']:.4f})" for s in scores)]
        )
    rows.append(["same weights after training", str(same_weights), "", ""])
    rows.append(["imported faces byte for byte", str(identical), "", ""])
    rows.append([
        "seconds",
        f"filter {times['filter']:.1f}, export {times['export']:.1f} ({records / times['export']:,.0f} records/s "
        f"with start-up), import {times['import']:.1f}, pack {times['pack']:.1f} + import {times['pack import']:.1f}",
        f"training both side by side {train_s:.0f}", "",
    ])  # fmt: skip
    header = (
        "model",
        "DevTest on the LFW cache",
        "DevTest from the imported pack (cache + pairs CSV)",
        "eval --pack (insightface scoring)",
    )
    for row in rows:
        print(" | ".join(row))
    report = report_file(args)
    if report is not None:
        append_section(
            report, "LFW through RecordIO and a pack, and back (issue 31)", header, rows, script=__file__
        )


if __name__ == "__main__":
    main()
