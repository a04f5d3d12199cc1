"""How the training data path scales with the number of faces: streamed face sources on synthetic caches.

For each --sizes N, a cache of N faces is generated in the scratch folder: --base real LFW centre crops
(--face-size px, JPEG) replicated under new identity names, 40 images each. Then, side by side:
  open s            opening the cache (metadata only), median of 3
  train RSS MB      peak RSS (the process plus its reading worker's) of a short real `facetool train` in a
                    fresh process (`facetool.training.loop.train`): tiny-cnn at 64 px, batches of 90, 10 %
                    validation identities (200 pairs), one epoch of --steps steps on rounds of --people x
                    --images, with its validation, checkpoint and plots; streamed, and preloaded for sizes up
                    to --preload-max faces
  first round s     from calling `train` to the first round mined (cache opened, split, workers started)
  first step s      from calling `train` to the end of the first optimizer step (imports not counted)
  img/s 1w, 2w      round assembly: rounds of --people x --images faces streamed with 1 and 2 workers, the
                    next round prefetched while the current one is taken, median of --runs runs of --rounds
  img per worker CPU-s   the same 1-worker runs per CPU second the worker used: the per-core decode rate,
                    which a loaded machine does not distort
  parent CPU ms/1k img   CPU the training process spends per 1000 images (copying slots out, bookkeeping)
  embed RSS MB      peak RSS of walking --embed-faces faces in batches of 256 (`batches`) through the CNN
The caches are deleted at the end. Prints the table and appends it with machine and command to --report
(docs/benchmarks.md by default; not for --smoke runs unless --report is given).
Usage: python benchmarks/scale.py [--sizes 13000 100000] [--face-size 160] [--base 2000] [--steps 3]
       [--people 45] [--images 40] [--rounds 3] [--runs 3] [--scratch DIR] [--smoke] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from report import append_section, parse_args, rich_table
from rich.console import Console

from facetool.cache import CacheWriter, FaceRecord, open_cache
from facetool.data.choose import open_face_source
from facetool.data.sampling import PeopleSampler
from facetool.data.source import FaceSource
from facetool.data.stream import StreamedSource
from facetool.training.progress import TrainProgress

PER_IDENTITY = 40
SMOKE = {"sizes": [600], "face_size": 48, "base": 80, "steps": 2, "people": 6, "images": 4,
         "rounds": 2, "runs": 1, "embed_faces": 200, "preload_max": 2000}  # fmt: skip
HEADER = ("faces", "cache MB", "open s", "decoded GiB", "train RSS MB stream", "train RSS MB preload",
          "first round s stream", "first step s stream", "img/s 1w", "img/s 2w",
          "img per worker CPU-s", "parent CPU ms/1k img", "embed RSS MB")  # fmt: skip


def base_cache(lfw: Path, path: Path, count: int, size: int) -> Path:
    """`count` LFW centre crops (the middle 150 px, resized) in a JPEG cache: the faces to replicate."""
    files = sorted(lfw.glob("*/*.jpg"))[:count]
    with CacheWriter(path, image_size=size, encoding="jpeg", meta={"source": "scale benchmark"}) as writer:
        for file in files:
            image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
            face = cv2.resize(image[50:200, 50:200], (size, size), interpolation=cv2.INTER_AREA)
            writer.add(FaceRecord(f"{file.parent.name}/{file.name}", file.parent.name, 0, 0,
                                  np.ascontiguousarray(face), None, float("nan"), False))  # fmt: skip
    return path


def replicated_cache(base: Path, path: Path, faces: int) -> Path:
    """A cache of `faces` faces: face i is base face i mod B under identity `Replica_{i // 40}`.

    Written straight in the consolidated layout of docs/cache-format.md (format version 1) by copying the
    base's JPEG bytes, since encoding a million faces would take the benchmark's whole budget; the result is
    then opened with `open_cache`, which checks it.
    """
    with h5py.File(base, "r") as src, h5py.File(path, "w") as out:
        offsets = src["faces/jpeg_offset"][:]
        blob = src["faces/jpeg"][:]
        sizes = np.diff(offsets)
        pick = np.arange(faces) % len(sizes)
        new_offsets = np.concatenate([[0], np.cumsum(sizes[pick])]).astype(np.int64)
        out.attrs.update(dict(src.attrs))
        out.attrs["journal_through"] = 0
        names = [f"Replica_{k:07d}" for k in range((faces + PER_IDENTITY - 1) // PER_IDENTITY)]
        strings = h5py.string_dtype("utf-8")
        out.create_dataset("identities", data=np.array(names, dtype=object), dtype=strings)
        g = out.create_group("faces")
        paths = [f"{names[i // PER_IDENTITY]}/{i % PER_IDENTITY:04d}.jpg" for i in range(faces)]
        g.create_dataset("path", data=np.array(paths, dtype=object), dtype=strings)
        g.create_dataset("label", data=np.arange(faces, dtype=np.int64) // PER_IDENTITY)
        g.create_dataset("size", data=np.zeros(faces, np.int64))
        g.create_dataset("mtime_ns", data=np.zeros(faces, np.int64))
        g.create_dataset("box", data=np.full((faces, 4), np.nan, np.float32))
        g.create_dataset("score", data=np.full(faces, np.nan, np.float32))
        g.create_dataset("detected", data=np.zeros(faces, bool))
        g.create_dataset("jpeg_offset", data=new_offsets)
        jpeg = g.create_dataset("jpeg", shape=(int(new_offsets[-1]),), dtype=np.uint8)
        block = len(sizes)
        for start in range(0, faces, block):
            stop = min(faces, start + block)
            jpeg[new_offsets[start] : new_offsets[stop]] = blob[: new_offsets[stop] - new_offsets[start]]
        f = out.create_group("failures")
        for name in ("path", "identity", "reason"):
            f.create_dataset(name, data=np.array([], dtype=object), dtype=strings)
        for name in ("size", "mtime_ns"):
            f.create_dataset(name, data=np.zeros(0, np.int64))
    with open_cache(path) as cache:
        assert len(cache) == faces
    return path


def tiny_cnn() -> torch.nn.Module:
    """A small embedding network, so the data path dominates the measurement."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, stride=2),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 64),
    )  # fmt: skip


def peak_rss_mb(source: FaceSource) -> float:
    """This process's peak RSS plus the peak RSS of `source`'s reading workers (while they run), in MB."""
    workers = source.pool.worker_peak_bytes() if isinstance(source, StreamedSource) else 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + workers / 1e6


class FirstStep(TrainProgress):
    """Notes when the trainer's first round is mined and its first step done."""

    def __init__(self, start: float) -> None:
        self.begin = start
        self.first_round: float | None = None
        self.first_step: float | None = None

    def on_round(self, trainer: object, stats: dict) -> None:
        self.first_round = self.first_round or time.perf_counter() - self.begin

    def on_step(self, trainer: object, step: object) -> None:
        self.first_step = self.first_step or time.perf_counter() - self.begin


def child_train(args: argparse.Namespace) -> dict[str, float]:
    """A short real `facetool train` on --cache (in a fresh process, so its peak RSS is its own): tiny-cnn at
    64 px, 10 % validation identities, --steps steps of rounds of --people x --images, faces as --mode says."""
    from facetool.config.train import TrainConfig
    from facetool.training.loop import train

    config = TrainConfig.model_validate({
        "data_dir": args.cache, "checkpoint_dir": args.cache.parent / f"run-{args.mode}",
        "backbone": "tiny-cnn", "image_size": 64, "embedding_dim": 64, "batch_size": 90,
        "epoch_size": args.steps, "num_epochs": 1, "people_per_batch": args.people,
        "images_per_person": args.images, "device": "cpu", "learning_rate": 0.01,
        "validation": {"fraction": 0.1, "num_pairs": 200}, "data": {"preload": args.mode, "workers": 1},
    })  # fmt: skip
    progress = FirstStep(time.perf_counter())
    train(config, progress=progress, overwrite=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"first_round": progress.first_round or 0.0, "first_step": progress.first_step or 0.0,
            "rss": own + (workers if args.mode == "stream" else 0.0)}  # fmt: skip


def child_embed(args: argparse.Namespace) -> dict[str, float]:
    """Walk the first --embed-faces faces through the CNN in batches (run in a fresh process)."""
    from facetool.data.source import batches
    from facetool.data.transforms import to_input

    source, _ = open_face_source(args.cache, mode="stream", workers=1)
    model = tiny_cnn().eval()
    part = source.subset(np.arange(min(source.num_identities, args.embed_faces // PER_IDENTITY + 1)))
    with torch.no_grad():
        for faces, _ in batches(part, 256, "cpu"):
            model(to_input(faces, "cpu", 64))
    rss = peak_rss_mb(source)
    part.close()
    source.close()
    return {"rss": rss}


def in_child(kind: str, cache: Path, args: argparse.Namespace, mode: str = "stream") -> dict[str, float]:
    """Run `child_<kind>` in a fresh interpreter and return what it reports."""
    argv = [sys.executable, __file__, "--child", kind, "--cache", str(cache), "--mode", mode, "--no-report"]
    for key in ("steps", "people", "images", "embed_faces"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def assembly_rate(cache: Path, workers: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """Streamed round assembly with `workers` workers, the next round prefetched meanwhile: images/s of wall
    time, images per CPU second of the workers (the per-core decode rate) and parent CPU ms per 1000 images."""
    source, _ = open_face_source(cache, mode="stream", workers=workers)
    with source:
        sampler = PeopleSampler(source.labels, args.people, args.images)
        rng = np.random.default_rng(0)
        source.fetch(sampler.sample(rng), "cpu")
        rates, per_cpu, parent = [], [], []
        for _ in range(args.runs):
            rounds = [sampler.sample(rng) for _ in range(args.rounds)]
            images = sum(map(len, rounds))
            begin, cpu, own = time.perf_counter(), source.pool.worker_cpu_seconds(), time.process_time()
            source.prefetch(rounds[0])
            for k, rows in enumerate(rounds):
                if k + 1 < len(rounds):
                    source.prefetch(rounds[k + 1])
                source.fetch(rows, "cpu")
            rates.append(images / (time.perf_counter() - begin))
            per_cpu.append(images / max(source.pool.worker_cpu_seconds() - cpu, 1e-3))
            parent.append((time.process_time() - own) * 1e6 / images)
    return statistics.median(rates), statistics.median(per_cpu), statistics.median(parent)


def open_seconds(cache: Path) -> float:
    times = []
    for _ in range(3):
        begin = time.perf_counter()
        with open_cache(cache):
            pass
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def measure(args: argparse.Namespace, scratch: Path) -> tuple[str, list[list[str]]]:
    """The table's title and one row per cache size."""
    base = base_cache(args.lfw, scratch / "base.h5", args.base, args.face_size)
    rows = []
    for faces in args.sizes:
        cache = replicated_cache(base, scratch / f"faces-{faces}.h5", faces)
        decoded = faces * args.face_size**2 * 3
        stream = in_child("train", cache, args)
        preload = in_child("train", cache, args, "preload") if faces <= args.preload_max else None
        one, per_cpu, parent = assembly_rate(cache, 1, args)
        two, _, _ = assembly_rate(cache, 2, args)
        rows.append([
            f"{faces:,}", f"{cache.stat().st_size / 1e6:,.0f}", f"{open_seconds(cache):.2f}",
            f"{decoded / (1 << 30):.2f}", f"{stream['rss']:,.0f}",
            "-" if preload is None else f"{preload['rss']:,.0f}", f"{stream['first_round']:.2f}",
            f"{stream['first_step']:.2f}", f"{one:,.0f}", f"{two:,.0f}", f"{per_cpu:,.0f}", f"{parent:.0f}",
            f"{in_child('embed', cache, args)['rss']:,.0f}",
        ])  # fmt: skip
        cache.unlink()
    title = (
        f"data path at scale: replicated LFW crops at {args.face_size} px ({args.base} distinct, "
        f"{PER_IDENTITY} per identity); rounds of {args.people} x {args.images}; {args.steps} training steps "
        f"of a tiny CNN; embed walks {args.embed_faces:,} faces"
    )
    return title, rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with --smoke's settings applied and the report file resolved."""
    shared = Path(os.environ.get("FACETOOL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[13_000, 100_000], help="faces per cache")
    parser.add_argument("--lfw", type=Path, default=shared / "lfw" / "lfw-deepfunneled")
    parser.add_argument("--base", type=int, default=2000, help="distinct LFW crops to replicate")
    parser.add_argument("--face-size", type=int, default=160)
    parser.add_argument("--people", type=int, default=45)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--steps", type=int, default=3, help="training steps of the RSS run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per timed assembly run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--embed-faces", type=int, default=10_000)
    parser.add_argument("--preload-max", type=int, default=20_000, help="largest size also run preloaded")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the caches (default: temp)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, to check the script runs")
    parser.add_argument("--child", choices=("train", "embed"), help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    return parse_args(parser, argv, SMOKE)


def run(args: argparse.Namespace) -> list[list[str]]:
    """Measure every size; print the table; append it to the report if one is set."""
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        title, rows = measure(args, Path(tmp))
    Console(width=max(Console().width, 140)).print(rich_table(title, HEADER, rows))
    if args.report is not None:
        append_section(args.report, title, HEADER, rows, script=__file__, argv=args.argv)
    return rows


if __name__ == "__main__":
    options = parse()
    if options.child:
        child = child_train if options.child == "train" else child_embed
        print(json.dumps(child(options)))
    else:
        run(options)
