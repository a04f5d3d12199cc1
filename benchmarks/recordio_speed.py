"""Import and export speed of RecordIO sets (issue 31): records/s for a generated set of N records.

The set is written by facetool's RecordWriter in the header-record layout from the 55 real 112 px JPEGs of the
reference set (`$FACETOOL_SHARED/formats/recbuilder`), cycled over N records and 1,000 classes; then
`dataset import` (the .rec into a face cache) and `dataset export` (the cache back into a .rec) are timed. Images
are never decoded on either path, so the figures are read and write speed. Prints a Markdown row.

    FACETOOL_SHARED=../shared .venv/bin/python benchmarks/recordio_speed.py --records 100000 --work /tmp/rio
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from facetool.formats.exporting import export_recordio
from facetool.formats.importing import import_recordio
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/facetool-recordio-bench"))
    args = parser.parse_args()
    shared = Path(os.environ["FACETOOL_SHARED"])
    shutil.rmtree(args.work, ignore_errors=True)
    (args.work / "set").mkdir(parents=True)
    (args.work / "out").mkdir()
    size = generate(args.work / "set", args.records, args.classes, shared)
    start = time.perf_counter()
    import_recordio(args.work / "set", args.work / "faces.h5")
    imported = time.perf_counter() - start
    start = time.perf_counter()
    export_recordio(args.work / "faces.h5", args.work / "out" / "train.rec")
    exported = time.perf_counter() - start
    same = (args.work / "out" / "train.rec").read_bytes() == (args.work / "set" / "train.rec").read_bytes()
    mb = size / 1e6
    print(
        "| records | .rec | import | import rec/s | import MB/s | export | export rec/s | export MB/s | byte-identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.records:,} | {mb:,.0f} MB | {imported:.1f} s | {args.records / imported:,.0f} | {mb / imported:,.0f} "
        f"| {exported:.1f} s | {args.records / exported:,.0f} | {mb / exported:,.0f} | {same} |"
    )
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
