"""Import and export speed of RecordIO sets (issue 31): records/s for a generated set of N records.

The set is written by facetool's RecordWriter in the header-record layout from the 55 real 112 px JPEGs of the
reference set (`$FACETOOL_SHARED/formats/recbuilder`), cycled over N records and 1,000 classes (one image in 55,
key 4's, is a multi-part record); then `dataset import` (the .rec into a face cache) and `dataset export` (the
cache back into a .rec) are timed, each in a fresh process, `--runs` times, medians reported. Images are never
decoded on either path. `--baseline DIR` times another facetool source tree (e.g. an older commit unpacked with
`git archive`) in the same runs, interleaved, for a side-by-side figure at the same load. Beside them: the raw read
and write speed of the same .rec in 8 MiB chunks (the write fsynced), read cold (its pages dropped from the page cache with
`posix_fadvise(DONTNEED)`, no root needed) and warm; the import and export runs find the .rec and the cache warm.
Prints Markdown rows.

    FACETOOL_SHARED=../shared .venv/bin/python benchmarks/recordio_speed.py --records 100000 --work /tmp/rio
    git archive OLD facetool | tar -x -C /tmp/old && ... recordio_speed.py --baseline /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from facetool.formats.recordio import ImageRecord, RecordWriter, pack
from facetool.formats.recset import RecordSet


def generate(folder: Path, records: int, classes: int, shared: Path) -> int:
    """A header-record set of `records` images in `classes` classes; returns its .rec size in bytes."""
    with RecordSet(shared / "formats" / "recbuilder") as ref:
        images = [record.image for _, record in ref.images()]
    per_class = -(-records // classes)
    with (folder / "train.rec").open("wb") as rec, (folder / "train.idx").open("wb") as idx:
        writer = RecordWriter(rec, idx)
        for i in range(records):
            writer.write(
                i + 1, pack(ImageRecord(0, float(i // per_class), i + 1, 0, images[i % len(images)]))
            )
        used = -(-records // per_class)
        for c in range(used):
            bounds = (float(c * per_class + 1), float(min(records, (c + 1) * per_class) + 1))
            writer.write(records + 1 + c, pack(ImageRecord(2, bounds, records + 1 + c, 0, b"")))
        writer.write(0, pack(ImageRecord(2, (float(records + 1), float(records + used + 1)), 0, 1, b"")))
    (folder / "property").write_text(f"{used},112,112\n")
    return (folder / "train.rec").stat().st_size


def disk_read(path: Path, cold: bool) -> float:
    """Seconds to read `path` in 8 MiB chunks; `cold` first drops its pages from the page cache."""
    with path.open("rb") as handle:
        if cold:
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        start = time.perf_counter()
        while handle.read(8 << 20):
            pass
        return time.perf_counter() - start


def disk_write(path: Path, copy: Path) -> float:
    """Seconds to write `path`'s bytes to `copy` in 8 MiB chunks and fsync it (the source read warm)."""
    with path.open("rb") as src, copy.open("wb") as dst:
        start = time.perf_counter()
        while chunk := src.read(8 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
        seconds = time.perf_counter() - start
    copy.unlink()
    return seconds


def once(work: Path) -> dict[str, float | bool | str]:
    """One import and one export with the facetool this process imports (a child of `main`)."""
    from facetool.formats.exporting import export_recordio
    from facetool.formats.importing import import_recordio

    for old in (work / "faces.h5", work / "out"):
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    (work / "out").mkdir()
    start = time.perf_counter()
    import_recordio(work / "set", work / "faces.h5")
    imported = time.perf_counter() - start
    start = time.perf_counter()
    export_recordio(work / "faces.h5", work / "out" / "train.rec")
    exported = time.perf_counter() - start
    same = all(
        (work / "out" / name).read_bytes() == (work / "set" / name).read_bytes()
        for name in ("train.rec", "train.idx")
    )
    import facetool

    return {"import": imported, "export": exported, "same": same, "code": facetool.__file__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/facetool-recordio-bench"))
    parser.add_argument("--baseline", type=Path, help="another facetool source tree to time in the same runs")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(once(args.work)))
        return
    shared = Path(os.environ["FACETOOL_SHARED"])
    shutil.rmtree(args.work, ignore_errors=True)
    (args.work / "set").mkdir(parents=True)
    size = generate(args.work / "set", args.records, args.classes, shared)
    rec = args.work / "set" / "train.rec"
    cold = statistics.median(disk_read(rec, cold=True) for _ in range(args.runs))
    warm = statistics.median(disk_read(rec, cold=False) for _ in range(args.runs))
    write = statistics.median(disk_write(rec, args.work / "copy.rec") for _ in range(args.runs))
    here = Path(__file__).resolve().parent.parent
    trees = {"this tree": here, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, tree in reversed(trees.items()):
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
            out = subprocess.run(
                [sys.executable, __file__, "--once", "--work", str(args.work)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
            assert Path(runs[name][-1]["code"]).is_relative_to(tree), runs[name][-1]["code"]
    mb = size / 1e6
    print(
        f"the .rec ({mb:,.0f} MB) in 8 MiB chunks: read cold {mb / cold:,.0f} MB/s, read warm {mb / warm:,.0f} MB/s, "
        f"written and fsynced {mb / write:,.0f} MB/s"
    )
    print(
        "| code | records | .rec | import | import rec/s | import MB/s | export | export rec/s | export MB/s | byte-identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, got in runs.items():
        imported = statistics.median(r["import"] for r in got)
        exported = statistics.median(r["export"] for r in got)
        same = all(r["same"] for r in got)
        print(
            f"| {name} | {args.records:,} | {mb:,.0f} MB | {imported:.2f} s | {args.records / imported:,.0f} "
            f"| {mb / imported:,.0f} | {exported:.2f} s | {args.records / exported:,.0f} | {mb / exported:,.0f} "
            f"| {same} |"
        )
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
