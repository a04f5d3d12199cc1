"""insightface verification packs (`lfw.bin`, `cfp_fp.bin`, ...): a pickle of `(bins, issame)`, pair i being
`bins[2i]`, `bins[2i+1]`, each bin the encoded image (bytes, or a uint8 numpy array from `cv2.imencode`).

`pickle.load` of an untrusted file runs code, so packs are read by an unpickler that resolves only the numpy
names real packs use (`PACK_GLOBALS`) and refuses every other global with one line, before anything is called.
Python 2 packs store images as `str`; they are read with `encoding="bytes"`.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facetool.errors import FacetoolError
from facetool.files import atomic_write_bytes, read_regular_file

MAX_PACK_BYTES = 8 << 30


class PackError(FacetoolError):
    """A verification pack that is not one, or whose pickle names something a pack never needs."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The names numpy arrays pickle themselves with, under numpy 1's and numpy 2's module names."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    frombuffer = core.numeric._frombuffer
    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        names[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        names[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return names


PACK_GLOBALS = _numpy_globals()


class _PackUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, where: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        found = PACK_GLOBALS.get((module, name))
        if found is None:
            raise PackError(
                f"{self._where}: refusing to load: the pickle asks for {module}.{name}, which a verification "
                "pack never needs (only numpy arrays and bytes are allowed)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise PackError(f"{self._where}: refusing to load: the pickle asks for an external object")


@dataclass(frozen=True)
class Pack:
    """The images of a verification pack (encoded, as stored) and whether each pair is the same person."""

    images: list[bytes]
    issame: np.ndarray

    def __len__(self) -> int:
        return len(self.issame)


def _image_bytes(item: Any, where: str) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.size in item.shape[:1]:
        return item.tobytes()  # cv2.imencode's (n, 1) array, or a flat one
    raise PackError(f"{where}: not encoded image bytes ({type(item).__name__})")


def read_pack(path: str | os.PathLike[str]) -> Pack:
    """Load a verification pack safely; PackError naming the file for anything that is not one."""
    path = Path(path)
    data = read_regular_file(path, limit=MAX_PACK_BYTES, what="verification pack")
    try:
        loaded = _PackUnpickler(data, path).load()
    except PackError:
        raise
    except Exception as exc:  # a damaged pickle can raise nearly anything; the message names it
        raise PackError(f"{path}: not a verification pack ({type(exc).__name__}: {exc})") from None
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 2):
        raise PackError(f"{path}: not a verification pack (expected a pickled (bins, issame) pair)")
    bins, issame = loaded
    try:
        same = np.asarray(issame, dtype=object)
        flags = np.array([bool(v) for v in same.reshape(-1)], bool)
        if not all(isinstance(v, (bool, np.bool_, int, np.integer)) for v in same.reshape(-1)):
            raise TypeError
    except TypeError:
        raise PackError(f"{path}: issame is not a list of booleans") from None
    if not isinstance(bins, (list, tuple)) or len(bins) != 2 * len(flags):
        count = len(bins) if isinstance(bins, (list, tuple)) else type(bins).__name__
        raise PackError(f"{path}: {len(flags)} pairs need {2 * len(flags)} images, the pack holds {count}")
    images = [_image_bytes(item, f"{path}: image {i}") for i, item in enumerate(bins)]
    return Pack(images, flags)


def write_pack(path: str | os.PathLike[str], images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write a pack as insightface's `build_eval_pack.py` does (`bins` as bytes, `issame` as a list), atomically."""
    if len(images) != 2 * len(issame):
        raise PackError(f"{path}: {len(issame)} pairs need {2 * len(issame)} images, got {len(images)}")
    data = pickle.dumps(([bytes(b) for b in images], [bool(v) for v in issame]), protocol=4)
    atomic_write_bytes(path, data)
