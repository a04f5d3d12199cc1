"""Where `facetool embed` gets its faces: face caches (a batch at a time), image files and folders (detected
and cropped as `facetool detect` does)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetool.cache import open_cache
from facetool.config.detect import DetectConfig
from facetool.detection import crop_face_from_file, detector_from_config, scan_images
from facetool.detection.images import is_image_name
from facetool.detection.resolve import is_cache_path
from facetool.errors import FacetoolError, UsageError


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
        elif path.is_file() and is_cache_path(path):
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
