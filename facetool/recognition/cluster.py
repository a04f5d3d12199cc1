"""`facetool cluster`: group the faces of unknown people in photos, cut where the model would say "different".

Each photo's face (detected and cropped as the model's card says) is embedded; scikit-learn's
AgglomerativeClustering joins faces while the linkage distance stays within threshold_factor * t (t: the
model's verification threshold). For unit embeddings the squared Euclidean distance is twice the cosine
distance, so the cut is applied to cosine distances (t / 2 for a Euclidean card), exact for every linkage.

The output folder holds `faces.csv` (photo -> cluster), and per cluster a folder of symbolic links to its
photos and an HTML contact sheet (`cluster-NNNN.html`): the photos are linked, never copied or moved. The
folder is built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.config.recognition import ClusterConfig
from facetool.errors import FacetoolError, UsageError
from facetool.evaluation.identification import agglomerate
from facetool.files import check_output_not_input, fsync_path, make_dir, temp_path_for
from facetool.recognition import pages
from facetool.recognition.faces import embed_inputs, load_model


@dataclass(frozen=True)
class ClusterResult:
    output: str
    faces: int
    clusters: int
    singletons: int
    threshold: float
    metric: str
    missed: list[tuple[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _csv(paths: list[str], labels: np.ndarray, missed: list[tuple[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["photo", "cluster", "note"])
    writer.writerows([path, f"{k + 1:04d}", ""] for path, k in zip(paths, labels, strict=True))
    writer.writerows([path, "", why] for path, why in missed)
    return out.getvalue()


def _fill(
    folder: Path, paths: list[str], labels: np.ndarray, faces: np.ndarray, result: ClusterResult
) -> None:
    """Write the CSV, the link folders and the contact sheets into the (temporary) folder."""
    (folder / "faces.csv").write_text(_csv(paths, labels, result.missed), encoding="utf-8")
    for k in range(result.clusters):
        name = f"cluster-{k + 1:04d}"
        rows = np.nonzero(labels == k)[0]
        (folder / name).mkdir()
        for n, row in enumerate(rows):
            (folder / name / f"{n + 1:04d}-{Path(paths[row]).name}").symlink_to(Path(paths[row]).absolute())
        figures = [pages.figure(faces[row], paths[row], link=paths[row]) for row in rows]
        sheet = pages.page(f"{name}: {len(rows)} face(s)", [pages.section(name, figures)])
        (folder / f"{name}.html").write_text(sheet, encoding="utf-8")
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fsync_path(path)


def _publish(folder: Path, out: Path) -> None:
    """Rename the finished folder to `out` (an empty folder there is replaced)."""
    try:
        os.replace(folder, out)
    except OSError as exc:
        raise FacetoolError(f"{out}: cannot put the clusters there ({exc.strerror or exc})") from None
    fsync_path(out.parent)


def cluster_photos(
    model_path: Path | str, photos: Sequence[Path | str], out: Path | str, config: ClusterConfig | None = None
) -> ClusterResult:
    """Cluster the faces of `photos` (files or folders) into the new folder `out`."""
    config = config or ClusterConfig()
    out = Path(out)
    if not photos:
        raise UsageError("cluster needs at least one photo or folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty folder; -o must name a new folder")
    check_output_not_input(out, [*photos, model_path])
    model = load_model(model_path, config)
    embedded = embed_inputs(model, photos, keep_faces=True)
    if not embedded.paths:
        raise UsageError(f"{photos[0]}: no faces found in the photos")
    cut = config.threshold_factor * model.decision.threshold
    labels = agglomerate(embedded.embeddings, cut, model.decision.metric, config.linkage)
    sizes = np.bincount(labels)
    result = ClusterResult(
        str(out),
        len(labels),
        len(sizes),
        int((sizes == 1).sum()),
        cut,
        model.decision.metric,
        embedded.missed,
    )
    make_dir(out.parent, "folder of the output")
    temp = temp_path_for(out)
    try:
        temp.unlink()
        temp.mkdir()
        _fill(temp, embedded.paths, labels, embedded.faces, result)
        _publish(temp, out)
    finally:
        if temp.exists():
            shutil.rmtree(temp)
    return result
