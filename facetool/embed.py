"""Embeddings of face arrays, image files, folders and face caches, and the files they are written to.

Test-time flip convention: with `flip=True` a face's embedding is the sum of the embeddings of the face
and of its horizontal mirror, re-normalised to unit length (not the concatenation, which doubles the size
and is not re-normalised). Embeddings are always L2-normalised float32.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facetool import __version__
from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.config.evaluate import EmbedConfig
from facetool.data.transforms import to_input
from facetool.detect import crop_face_from_file, detector_from_config, scan_images
from facetool.detect.images import is_image_name
from facetool.device import resolve_device
from facetool.errors import FacetoolError, UsageError

CACHE_SUFFIXES = (".h5", ".hdf5")
Progress = Callable[[int, int], None]


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def embed_faces(
    model: nn.Module,
    faces_uint8_nhwc: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    flip: bool = False,
    image_size: int | None = None,
) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB faces -> (N, D) float32 L2-normalised embeddings.

    The faces go through `to_input` (resized to `image_size`, the model's input size, when given); the model runs in eval mode without gradients, moved to `device`
    (as `nn.Module.to` does), and gets its previous train/eval mode back on return.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    target = _as_device(device)
    model.to(target)
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.inference_mode():
            for start in range(0, len(faces_uint8_nhwc), batch_size):
                x = to_input(faces_uint8_nhwc[start : start + batch_size], target, image_size)
                out = model(x).float()
                if flip:
                    out = out + model(torch.flip(x, dims=[3])).float()
                parts.append(F.normalize(out, dim=1).cpu())
    finally:
        model.train(was_training)
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(parts).numpy().astype(np.float32, copy=False)


@dataclass(frozen=True)
class FaceBatch:
    """Faces of up to one forward batch with what identifies them."""

    faces: np.ndarray
    paths: list[str]
    identities: list[str]
    detected: list[bool]


class FaceSource:
    """Faces from one input, in batches; problems with single images go to `failures`."""

    label: str

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, size: int, failures: list[tuple[str, str]]) -> Iterator[FaceBatch]:
        raise NotImplementedError


class CacheSource(FaceSource):
    """Every face of a face cache, as cropped by `facetool detect`; paths as the cache stores them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        with open_cache(path) as cache:
            self.count = len(cache)

    def __len__(self) -> int:
        return self.count

    def batches(self, size: int, failures: list[tuple[str, str]]) -> Iterator[FaceBatch]:
        with open_cache(self.path) as cache:
            names = [cache.identities[i] for i in cache.labels]
            for start in range(0, len(cache), size):
                idx = np.arange(start, min(start + size, len(cache)))
                yield FaceBatch(
                    cache.read_faces(idx),
                    [cache.paths[i] for i in idx],
                    [names[i] for i in idx],
                    [bool(cache.detected[i]) for i in idx],
                )


class ImageSource(FaceSource):
    """Image files, each detected and cropped the way `facetool detect` crops them."""

    def __init__(self, label: str, files: Sequence[tuple[Path, str]], detect: DetectConfig) -> None:
        self.label = label
        self.files = list(files)
        self.detect = detect

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, size: int, failures: list[tuple[str, str]]) -> Iterator[FaceBatch]:
        detector = detector_from_config(self.detect)
        for start in range(0, len(self.files), size):
            faces, paths, identities, detected = [], [], [], []
            for path, identity in self.files[start : start + size]:
                try:
                    crop = crop_face_from_file(path, detector, self.detect)
                except FacetoolError as exc:
                    failures.append((str(path), str(exc)))
                    continue
                except Exception as exc:  # one unreadable image must not stop the others
                    failures.append((str(path), f"{type(exc).__name__}: {exc}"))
                    continue
                faces.append(crop.face)
                paths.append(str(path))
                identities.append(identity)
                detected.append(crop.detected)
            if faces:
                yield FaceBatch(np.stack(faces), paths, identities, detected)


def _directory_files(directory: Path) -> list[tuple[Path, str]]:
    """Images directly in `directory` (identity: its name) and in identity sub-folders (LFW layout)."""
    flat = sorted(p for p in directory.iterdir() if p.is_file() and is_image_name(p.name))
    files = [(p, directory.resolve().name) for p in flat]
    files += [(directory / e.path, e.identity) for e in scan_images(directory).images]
    return files


def collect_sources(inputs: Sequence[str | Path], detect: DetectConfig) -> list[FaceSource]:
    """One source per input: a face cache (.h5/.hdf5), an image file, or a folder (LFW layout or flat)."""
    if not inputs:
        raise UsageError("no inputs given: name image files, folders or face caches")
    sources: list[FaceSource] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = _directory_files(path)
            if not files:
                raise UsageError(f"{path}: no images in this folder or its identity sub-folders")
            sources.append(ImageSource(str(path), files, detect))
        elif path.is_file() and path.suffix.lower() in CACHE_SUFFIXES:
            sources.append(CacheSource(path))
        elif path.is_file() and is_image_name(path.name):
            sources.append(ImageSource(str(path), [(path, path.resolve().parent.name)], detect))
        elif path.exists():
            raise UsageError(
                f"{path}: not an image (jpg, jpeg, png, bmp, webp), a folder or a face cache (.h5)"
            )
        else:
            raise UsageError(f"{path}: no such file or folder")
    return sources


@dataclass
class EmbeddingSet:
    """Embeddings with the path, identity and detection flag of each row, and how they were made."""

    embeddings: np.ndarray
    paths: list[str]
    identities: list[str]
    detected: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def embed_sources(
    model: nn.Module,
    sources: Sequence[FaceSource],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    flip: bool = False,
    image_size: int | None = None,
    settings: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> EmbeddingSet:
    """Embed every face of `sources` in order (resized to `image_size` when given); `progress(done, total)`."""
    total = sum(len(s) for s in sources)
    failures: list[tuple[str, str]] = []
    parts, paths, identities, detected = [], [], [], []
    done = 0
    for source in sources:
        before = len(failures)
        for batch in source.batches(batch_size, failures):
            parts.append(
                embed_faces(
                    model, batch.faces, batch_size=batch_size, device=device, flip=flip, image_size=image_size
                )
            )
            paths += batch.paths
            identities += batch.identities
            detected += batch.detected
            done += len(batch.paths)
            if progress is not None:
                progress(done + len(failures), total)
        if progress is not None and len(failures) > before:
            progress(done + len(failures), total)
    if not parts:
        raise FacetoolError("no face could be embedded: " + "; ".join(f"{p}: {r}" for p, r in failures[:5]))
    return EmbeddingSet(
        embeddings=np.concatenate(parts),
        paths=paths,
        identities=identities,
        detected=np.array(detected, dtype=bool),
        settings={"facetool_version": __version__, "flip": flip, **(settings or {})},
        failures=failures,
    )


def _write_npz(result: EmbeddingSet, path: Path) -> None:
    with path.open("wb") as handle:
        np.savez(
            handle,
            embeddings=result.embeddings,
            paths=np.array(result.paths, dtype=str),
            identities=np.array(result.identities, dtype=str),
            detected=result.detected,
            settings=np.array(json.dumps(result.settings)),
        )


def _write_csv(result: EmbeddingSet, path: Path) -> None:
    dim = result.embeddings.shape[1]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "detected", *(f"e{i}" for i in range(dim))])
        for row, (p, ident, det) in enumerate(
            zip(result.paths, result.identities, result.detected, strict=True)
        ):
            writer.writerow([p, ident, int(det), *(f"{v:.8g}" for v in result.embeddings[row])])


def _write_h5(result: EmbeddingSet, path: Path) -> None:
    import h5py

    strings = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as h5:
        h5.attrs["format"] = "facetool-embeddings"
        h5.attrs["format_version"] = 1
        h5.attrs["settings"] = json.dumps(result.settings)
        h5.create_dataset("embeddings", data=result.embeddings)
        h5.create_dataset("paths", data=result.paths, dtype=strings)
        h5.create_dataset("identities", data=result.identities, dtype=strings)
        h5.create_dataset("detected", data=result.detected)


WRITERS: dict[str, Callable[[EmbeddingSet, Path], None]] = {
    ".h5": _write_h5,
    ".npz": _write_npz,
    ".csv": _write_csv,
}


def check_output_path(path: str | Path) -> Path:
    """The output path when its extension has a writer; UsageError listing the known ones otherwise."""
    path = Path(path)
    if path.suffix.lower() not in WRITERS:
        known = ", ".join(WRITERS)
        raise UsageError(f"{path}: unknown output extension {path.suffix!r} (use one of {known})")
    return path


def make_parent(path: Path) -> None:
    """Create the folder of an output file; FacetoolError naming it when a file is in the way."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacetoolError(
            f"{path}: cannot create its folder {path.parent} ({exc.strerror or exc})"
        ) from None


def write_embeddings(result: EmbeddingSet, path: str | Path) -> Path:
    """Write `result` in the format named by the extension of `path` (.h5, .npz or .csv)."""
    path = check_output_path(path)
    make_parent(path)
    try:
        WRITERS[path.suffix.lower()](result, path)
    except OSError as exc:
        raise FacetoolError(f"{path}: cannot write embeddings ({exc.strerror or exc})") from None
    return path


def embed_paths(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    output: str | Path,
    config: EmbedConfig | None = None,
    progress: Progress | None = None,
) -> tuple[EmbeddingSet, Path]:
    """What `facetool embed` does: load the model, embed every input, write `output` by its extension."""
    from facetool.models import load_embedding_model

    config = config or EmbedConfig()
    output = check_output_path(output)
    make_parent(output)
    device = resolve_device(config.device)
    model, info = load_embedding_model(checkpoint, device)
    detect = config.detect.model_copy(update={"image_size": info.image_size})
    sources = collect_sources(inputs, detect)
    settings = {
        "model": str(checkpoint),
        "backbone": info.backbone,
        "embedding_dim": info.embedding_dim,
        "image_size": info.image_size,
        "model_source": info.source,
        "inputs": [str(p) for p in inputs],
        "detect": detect.model_dump(mode="json"),
    }
    result = embed_sources(
        model,
        sources,
        batch_size=config.batch_size,
        device=device,
        flip=config.flip,
        image_size=info.image_size,
        settings=settings,
        progress=progress,
    )
    return result, write_embeddings(result, output)
