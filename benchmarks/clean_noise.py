"""Label noise and `facetool dataset clean` on LFW (issue 32): inject known noise into a training cache of
LFW's DevTrain people, measure how much of it `dataset clean` finds, and train on the noisy and the cleaned cache.

Every step that a user would type is the `facetool` command, in a subprocess:
1. `dataset filter` keeps the people named in pairsDevTrain.txt (`--people N`: the first N of them by name
   found in the cache; identities of at least two faces, the filter's default) and never DevTest's people.
2. The noise, drawn by a seeded numpy generator and written by the library as a new cache whose faces keep
   their stored bytes and their paths (a cache holds paths and labels apart, and training and cleaning read
   only the labels): `--splits` identities of at least four faces each have half their faces (at random)
   relabelled under a new name, `<name>_split`; then `--moved` of all faces (5%) are moved into a wrong
   identity, any identity of another person drawn uniformly, never emptying the identity they leave. The
   ground truth (each moved face: path, from, to; each split: identity, new name, the faces renamed) goes to
   `noisy.h5.truth.json` beside the noisy cache.
3. `dataset clean` of the noisy cache, and of the clean cache (no injection: the false-positive baseline),
   with each `--model`. Faces precision and recall: of the faces flagged by a rule that leaves them out
   (far, closer-to-other, duplicate), the fraction that were moved, and of the moved faces the fraction
   flagged; identities: of the same-person pairs reported, the fraction that are injected splits, and of the
   splits the fraction reported.
4. The `--config` recipe's [train] table trained on the noisy cache and on the one cleaned with the first
   `--model` (with `--clean-baseline`, also on the clean cache), side by side with one thread each as the
   recipe says, each scored on DevTest (`eval --flip` on the full LFW cache).

The model's threshold t is its card's (`facetool eval CKPT --data lfw-faces.h5 --pairs PAIRS --out ev`, then
`facetool export CKPT -o model.safetensors --report ev/report.json --cache lfw-faces.h5` writes the mean fold
threshold into the card), else `--threshold`. For "people never seen in training" the model must not have
been trained on DevTrain's people: the table says how many of the cache's people it was trained on (when the
checkpoint or card records them).

    FACETOOL_SHARED=../shared python benchmarks/clean_noise.py --faces lfw-faces.h5 --model model.safetensors \
        --work /tmp/noise [--config benchmarks/recipes/lfw-view1-cpu-batch-hard-ensemble.toml] \
        [--set num_epochs=20] [--clean-set far_factor=1.2] [--clean-baseline] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from report import append_section, parse_args
from timing import facetool

from facetool.cache import check_combinable, open_cache, write_payloads
from facetool.cache.copy import Selection
from facetool.cache.records import FaceColumns
from facetool.curation import pairs_identities
from facetool.files import atomic_write_text
from facetool.identities import identity_digests, normalize_identity
from facetool.inference import load_embedder
from facetool.recognition.clean import DROPPING, flags_paths

ROOT = Path(__file__).resolve().parent.parent
TITLE = "Label noise and dataset clean on LFW (issue 32)"
SPLIT_SUFFIX = "_split"
SPLIT_MIN_FACES = 4  # each half keeps at least two faces


def truth_path(noisy: Path) -> Path:
    """Where the ground truth of the noisy cache `noisy` goes: beside it, `<name>.truth.json`."""
    return noisy.with_name(noisy.name + ".truth.json")


def devtrain_people(faces: Path, devtrain: Path, limit: int | None) -> list[str]:
    """The people of `devtrain` who have faces in the cache `faces`, sorted; the first `limit` when given."""
    named = pairs_identities(devtrain)
    with open_cache(faces) as cache:
        present = {normalize_identity(name) for name in cache.identities}
    people = sorted(named & present)
    return people[:limit] if limit is not None else people


def inject_noise(source: Path, out: Path, *, moved: float, splits: int, seed: int) -> dict[str, Any]:
    """Write `source` with label noise to `out` (stored bytes and paths unchanged, labels changed) and the
    ground truth beside it (`truth_path`); returns the ground truth."""
    rng = np.random.default_rng(seed)
    with open_cache(source) as cache:
        check_combinable(out, [cache])
        paths = list(cache.paths)
        person = [cache.identities[k] for k in cache.labels]
        label = list(person)
        counts = Counter(person)
        splittable = sorted(name for name, n in counts.items() if n >= SPLIT_MIN_FACES)
        if len(splittable) < splits:
            sys.exit(
                f"{source}: {len(splittable)} identities of {SPLIT_MIN_FACES}+ faces, {splits} splits asked"
            )
        split_records = []
        for name in sorted(str(n) for n in rng.choice(splittable, splits, replace=False)):
            new = name + SPLIT_SUFFIX
            if new in counts:
                sys.exit(f"{source}: identity {new} exists already; cannot split {name} under that name")
            rows = [i for i, p in enumerate(person) if p == name]
            renamed = sorted(int(i) for i in rng.choice(rows, len(rows) // 2, replace=False))
            for i in renamed:
                label[i] = new
            split_records.append(
                {"identity": name, "new_identity": new, "paths": [paths[i] for i in renamed]}
            )
        person_of = {name: name for name in counts} | {
            s["new_identity"]: s["identity"] for s in split_records
        }
        current = Counter(label)
        names = sorted(current)
        target = round(moved * len(paths))
        moves = []
        for i in (int(i) for i in rng.permutation(len(paths))):
            if len(moves) == target:
                break
            if current[label[i]] < 2:
                continue
            others = [name for name in names if person_of[name] != person[i]]
            to = others[int(rng.integers(len(others)))]
            moves.append({"path": paths[i], "from": label[i], "to": to})
            current[label[i]] -= 1
            current[to] += 1
            label[i] = to
        if len(moves) < target:
            sys.exit(f"{source}: only {len(moves)} of {target} faces could move without emptying an identity")
        columns = cache.face_columns(np.arange(len(paths)))
        number = {name: k for k, name in enumerate(names)}
        faces = FaceColumns(
            names,
            np.array([number[name] for name in label], np.int64),
            columns.sizes,
            columns.mtimes,
            columns.boxes,
            columns.scores,
            columns.detected,
            columns.landmarks,
            paths=paths,
        )
        truth = {
            "source": str(source),
            "seed": seed,
            "faces": len(paths),
            "identities": len(counts),
            "moved_fraction": moved,
            "moved": sorted(moves, key=lambda m: m["path"]),
            "splits": split_records,
        }
        meta = {
            **cache.meta,
            "label_noise": {"from": str(source), "seed": seed, "truth": truth_path(out).name},
        }
        selection = Selection([cache], np.zeros(len(paths), np.int64), np.arange(len(paths)))
        write_payloads(out, cache.format, meta, faces, selection, cache.failure_columns())
    atomic_write_text(truth_path(out), json.dumps(truth, indent=2) + "\n")
    return truth


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def clean_scores(truth: dict[str, Any] | None, flags: dict[str, Any]) -> dict[str, Any]:
    """Precision and recall of the flags (a `dataset clean` flags.json) against the injected noise (`truth`
    None: the clean cache, where every flag is a false positive)."""
    moved = {m["path"] for m in truth["moved"]} if truth else set()
    splits = {frozenset((s["identity"], s["new_identity"])) for s in truth["splits"]} if truth else set()
    split_names = set().union(*splits) if splits else set()
    dropped = [f for f in flags["flags"] if f["rule"] in DROPPING]
    flagged = {f["path"] for f in dropped}
    pairs = {frozenset((f["identity"], f["other"])) for f in flags["flags"] if f["rule"] == "same-person"}
    per_rule = {}
    for rule in DROPPING:
        paths = {f["path"] for f in dropped if f["rule"] == rule}
        per_rule[rule] = {"flagged": len(paths), "moved": len(paths & moved)}
    return {
        "faces": flags["faces"],
        "threshold": flags["threshold"],
        "metric": flags["metric"],
        "moved": len(moved),
        "flagged": len(flagged),
        "flagged_moved": len(flagged & moved),
        "face_precision": _ratio(len(flagged & moved), len(flagged)),
        "face_recall": _ratio(len(flagged & moved), len(moved)),
        "flagged_in_splits": len({f["path"] for f in dropped if f["identity"] in split_names} - moved),
        "per_rule": per_rule,
        "splits": len(splits),
        "pairs": len(pairs),
        "pairs_found": len(pairs & splits),
        "pair_precision": _ratio(len(pairs & splits), len(pairs)),
        "pair_recall": _ratio(len(pairs & splits), len(splits)),
    }


def trained_on(model: Path, people: Sequence[str]) -> str:
    """How many of `people` the model was trained on, as the checkpoint or card records them."""
    embedder, _ = load_embedder(model, device="cpu")
    known = embedder.info.train_identities
    if known is None:
        return "not recorded"
    return f"{len(set(identity_digests(people)) & set(known))} of the cache's {len(people)} people"


def train_command(config: Path, data: Path, run_dir: Path, sets: list[str]) -> list[str]:
    """`facetool train` of the recipe's [train] table on `data` into `run_dir`, one thread (as the recipes)."""
    extra = [arg for text in sets for arg in ("--set", text)]
    return [sys.executable, "-m", "facetool", "train", "--config", str(config), "--data", str(data),
            "--checkpoint-dir", str(run_dir), "--overwrite", *extra]  # fmt: skip


def train_side_by_side(config: Path, caches: dict[str, Path], work: Path, sets: list[str]) -> float:
    """Train the recipe on each cache at once (run folders `run-<key>`); the wall time in seconds."""
    start = time.perf_counter()
    procs = {
        key: subprocess.Popen(
            train_command(config, data, work / f"run-{key}", sets),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, data in caches.items()
    }
    failed = [(key, proc.communicate()[1]) for key, proc in procs.items()]
    for (key, stderr), proc in zip(failed, procs.values(), strict=True):
        if proc.returncode != 0:
            sys.exit(f"training on {caches[key]} failed:\n{stderr}")
    return time.perf_counter() - start


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def cleaning_rows(
    label: str, noisy: dict[str, Any], clean: dict[str, Any], model_note: str
) -> list[list[str]]:
    rules = ", ".join(f"{rule} {n['flagged']} ({n['moved']} moved)" for rule, n in noisy["per_rule"].items())
    return [
        [
            f"{label}: threshold",
            f"{noisy['threshold']:.4g} ({noisy['metric']}); the model was trained on {model_note}",
        ],
        [
            f"{label}: moved faces flagged",
            f"precision {_pct(noisy['face_precision'])}, recall {_pct(noisy['face_recall'])} "
            f"({noisy['flagged_moved']} of {noisy['flagged']} flagged faces were moved, of {noisy['moved']} moved; "
            f"by rule: {rules}; {noisy['flagged_in_splits']} flagged faces of split identities, not moved)",
        ],
        [
            f"{label}: split identities found (same-person)",
            f"precision {_pct(noisy['pair_precision'])}, recall {_pct(noisy['pair_recall'])} "
            f"({noisy['pairs_found']} of {noisy['pairs']} reported pairs are splits, of {noisy['splits']})",
        ],
        [
            f"{label}: clean cache, no injection (false positives)",
            f"{clean['flagged']} of {clean['faces']} faces flagged ({clean['flagged'] / clean['faces']:.1%}), "
            f"{clean['pairs']} same-person pairs",
        ],
    ]


def main(argv: Sequence[str] | None = None) -> None:
    shared = Path(os.environ.get("FACETOOL_SHARED", "../shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--faces", type=Path, required=True, help="face cache of all of LFW (facetool detect)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        nargs="+",
        required=True,
        help="model(s) for dataset clean (the first: training)",
    )
    parser.add_argument(
        "--threshold", type=float, help="verification threshold, for a model without a card's"
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for every file the run writes")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "benchmarks/recipes/lfw-view1-cpu-batch-hard-ensemble.toml"
    )
    parser.add_argument(
        "--set", action="append", default=[], dest="sets", help="train key=value (repeatable)"
    )
    parser.add_argument(
        "--clean-set", action="append", default=[], help="dataset clean setting key=value (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument(
        "--moved", type=float, default=0.05, help="fraction of the faces moved (default 0.05)"
    )
    parser.add_argument("--splits", type=int, default=20, help="identities split in two (default 20)")
    parser.add_argument("--people", type=int, help="only the first N DevTrain people by name (smoke runs)")
    parser.add_argument("--devtrain", type=Path, default=shared / "lfw" / "pairsDevTrain.txt")
    parser.add_argument("--devtest", type=Path, default=shared / "lfw" / "pairsDevTest.txt")
    parser.add_argument(
        "--clean-baseline", action="store_true", help="also train on the clean cache (no injection)"
    )
    args = parse_args(parser, argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    people = devtrain_people(args.faces, args.devtrain, args.people)
    (work / "people.txt").write_text("".join(f"{name}\n" for name in people), encoding="utf-8")
    clean, noisy = work / "devtrain.h5", work / "noisy.h5"
    facetool("dataset", "filter", args.faces, "--include", work / "people.txt", "--exclude-pairs", args.devtest,
             "-o", clean)  # fmt: skip
    truth = inject_noise(clean, noisy, moved=args.moved, splits=args.splits, seed=args.seed)
    with open_cache(clean) as cache:
        kept_people = sorted(set(cache.identities))
    clean_options = [] if args.threshold is None else ["--threshold", args.threshold]
    clean_options += [arg for text in args.clean_set for arg in ("--set", text)]

    rows = [
        [
            "injected",
            f"{truth['faces']} faces of {truth['identities']} DevTrain people: {len(truth['moved'])} faces "
            f"moved ({len(truth['moved']) / truth['faces']:.1%}), {len(truth['splits'])} identities split in two "
            f"(seed {args.seed})",
        ]
    ]
    cleaned = {}
    for k, model in enumerate(args.model):
        scores = []
        for name, cache, known in (("noisy", noisy, truth), ("clean", clean, None)):
            out = work / f"{name}-cleaned-{k}.h5"
            facetool("dataset", "clean", cache, "--model", model, "-o", out, *clean_options)
            flags = json.loads(flags_paths(out)[0].read_text())
            scores.append(clean_scores(known, flags))
        cleaned[k] = (work / f"noisy-cleaned-{k}.h5", scores[0]["faces"] - scores[0]["flagged"])
        rows += cleaning_rows(
            f"clean with {model.name}", scores[0], scores[1], trained_on(model, kept_people)
        )

    runs = {"noisy": noisy, "cleaned": cleaned[0][0], **({"clean": clean} if args.clean_baseline else {})}
    sets = [text.removeprefix("train.") for text in args.sets]
    train_s = train_side_by_side(args.config, runs, work, sets)
    what = {
        "noisy": f"the noisy cache ({truth['faces']} faces)",
        "cleaned": f"the cleaned cache ({cleaned[0][1]} faces; model {args.model[0].name})",
        "clean": f"the clean cache, no injection ({truth['faces']} faces)",
    }
    for key in runs:
        out = work / f"eval-{key}"
        facetool("eval", work / f"run-{key}" / "last.pth", "--data", args.faces, "--pairs", args.devtest,
                 "--flip", "--out", out)  # fmt: skip
        score = json.loads((out / "report.json").read_text())
        rows.append(
            [
                f"trained on {what[key]}",
                f"DevTest {score['accuracy']:.4f} ± {score['accuracy_std']:.4f} (AUC {score['auc']:.4f})",
            ]
        )
    rows.append(["training side by side", f"{train_s:.0f} s ({len(runs)} runs, {args.config.name})"])
    for row in rows:
        print(" | ".join(row))
    if args.report is not None:
        append_section(args.report, TITLE, ("what", "result"), rows, script=__file__, argv=args.argv)


if __name__ == "__main__":
    main()
