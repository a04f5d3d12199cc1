"""Gallery search time per probe at 10k and 100k gallery faces, and clustering time for 10k faces.

The base embeddings are real: LFW centre crops (80 px) through an InceptionResnetV1 (512-d) whose batch-norm
statistics were measured on them (the faces spread out as a trained model's do). Larger galleries replicate
them, each copy nudged by Gaussian noise (sigma 0.05 per coordinate, re-normalised) so no two rows are equal;
five faces per identity. The search is `facetool.evaluation.identification.nearest_identities` (exact, chunked)
from memory and from a gallery index file (`cache.gallery`, read a chunk at a time); clustering is
`agglomerate` (scikit-learn, average linkage) cut at 1.0 (squared Euclidean).

    FACETOOL_SHARED=../shared python benchmarks/identification.py [--sizes 10000 100000] [--cluster 10000]
        [--probes 100] [--report FILE | --no-report]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from report import add_report_options, append_section, report_file

from facetool.cache.gallery import Gallery, GalleryModel, write_gallery
from facetool.evaluation.identification import agglomerate, in_chunks, nearest_identities
from facetool.models import build_backbone

PER_IDENTITY = 5


def base_embeddings(lfw_dir: Path, count: int) -> np.ndarray:
    files = sorted(lfw_dir.glob("*/*.jpg"))[::37][:count]
    crops = []
    for path in files:
        bgr = cv2.imread(str(path))
        crops.append(
            cv2.cvtColor(
                cv2.resize(bgr[50:200, 50:200], (80, 80), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
            )
        )
    x = (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    torch.manual_seed(0)
    net = build_backbone(embedding_dim=512, dropout=0.0, image_size=80)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        net.train()
        net(x)
        net.eval()
        return torch.nn.functional.normalize(net(x), dim=1).numpy()


def replicate(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    rows = base[np.arange(n) % len(base)] + rng.normal(0, 0.05, (n, base.shape[1])).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    shared = Path(os.environ.get("FACETOOL_SHARED", "/work/shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--cluster", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--base", type=int, default=300)
    add_report_options(parser)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base = base_embeddings(shared / "lfw" / "lfw-deepfunneled", args.base)
    probes = replicate(base, args.probes, rng)
    nearest_identities(probes, in_chunks(base, np.arange(len(base)), 65536), 5)  # warm-up
    agglomerate(base[:2], 1.0, "euclidean", "average")  # imports scikit-learn outside the timing
    rows = []
    for size in args.sizes:
        gallery = replicate(base, size, rng)
        labels = np.arange(size) // PER_IDENTITY
        start = time.perf_counter()
        nearest_identities(probes, in_chunks(gallery, labels, 65536), 5)
        memory = (time.perf_counter() - start) / len(probes)
        with tempfile.TemporaryDirectory() as tmp:
            index = Path(tmp) / "gallery.h5"
            write_gallery(index, embeddings=gallery, labels=labels, paths=[f"{i}.jpg" for i in range(size)],
                          identities=[str(i) for i in range(labels[-1] + 1)],
                          model=GalleryModel("0" * 64, "bench", "euclidean", False), meta={})  # fmt: skip
            start = time.perf_counter()
            with Gallery(index) as opened:
                nearest_identities(probes, opened.chunks(65536), 5)
            from_file = (time.perf_counter() - start) / len(probes)
            megabytes = index.stat().st_size / 1e6
        rows.append(
            [
                f"search, {size:,} faces, {args.probes} probes at once, top-5",
                f"{memory * 1e3:.2f} ms per probe (in memory); {from_file * 1e3:.2f} ms per probe (from the {megabytes:.0f} MB index file)",
            ]
        )
    faces = replicate(base, args.cluster, rng)
    start = time.perf_counter()
    found = agglomerate(faces, 1.0, "euclidean", "average")
    rows.append(
        [
            f"cluster {args.cluster:,} faces (average linkage)",
            f"{time.perf_counter() - start:.1f} s, {len(set(found.tolist()))} clusters",
        ]
    )
    rows.append(["load average", " ".join(f"{v:.1f}" for v in os.getloadavg())])
    for row in rows:
        print(" | ".join(row))
    report = report_file(args)
    if report is not None:
        append_section(
            report, "Identification and clustering time (issue 32)", ("what", "time"), rows, script=__file__
        )


if __name__ == "__main__":
    main()
