"""Preloaded training faces resized once to the augmenter's working size, instead of in every round.

A round turns its uint8 faces into float at the working size (an antialiased resize, from a 160 px cache to a
64 px network, say) before it draws any crop, flip or colour. That part depends on the face alone, so for a
preloaded source it can be done once for every face; rounds then take their rows from the result and only
augment. Each face is decoded and resized the first time a round fetches it (a flag per face), so the first
step waits for the first round's faces only, and the decoded uint8 face is not kept beside its float one. The
inputs are bit for bit those of resizing in every round, so a run's numbers do not change, only its time. The
float faces live where the decoded ones would (host memory or the accelerator) and are made only when all of
them take at most `MEMORY_SHARE` of the memory available there; a streamed source, a cache already at the
working size, or `enabled=False` keep resizing in every round.
"""

from __future__ import annotations

import numpy as np
import torch

from facetool.data.augment import CHUNK, Augmenter
from facetool.data.choose import MEMORY_SHARE, device_available_bytes, gib, host_available_bytes
from facetool.data.source import FaceSource, PreloadedSource, to_device


class ResizedFaces:
    """Every face of a source as (N, 3, W, W) float32 in [0, 1], addressed by the source's rows, each resized
    from the source the first time it is fetched.

    Stored channels last, (N, W, W, 3) in memory, as `Augmenter.to_working` lays its faces out: a network can
    compute other bits from the same values in another layout, so rounds get the layout as well as the values.
    """

    def __init__(self, source: PreloadedSource, augment: Augmenter, faces_nhwc: torch.Tensor) -> None:
        self._source = source
        self._augment = augment
        self._nhwc = faces_nhwc
        self._resized = np.zeros(len(faces_nhwc), bool)

    def __len__(self) -> int:
        return len(self._nhwc)

    @property
    def faces(self) -> torch.Tensor:
        """All faces, (N, 3, W, W) with channels-last strides (those not yet resized are resized now)."""
        self._fill(np.arange(len(self)))
        return self._nhwc.permute(0, 3, 1, 2)

    @property
    def resized_rows(self) -> int:
        """How many rows are resized so far."""
        return int(self._resized.sum())

    @property
    def nbytes(self) -> int:
        return self._nhwc.numel() * self._nhwc.element_size()

    def _fill(self, rows: np.ndarray) -> None:
        """Decode and resize the faces of `rows` not resized yet, `CHUNK` at a time."""
        missing = np.unique(rows[~self._resized[rows]])
        for start in range(0, len(missing), CHUNK):
            part = missing[start : start + CHUNK]
            working = self._augment.to_working(self._source.read(part)).permute(0, 2, 3, 1)
            self._nhwc.index_copy_(0, torch.as_tensor(part, device=self._nhwc.device), working)
            self._resized[part] = True

    def fetch(self, rows: np.ndarray, device: torch.device | str) -> torch.Tensor:
        """The resized faces of `rows` on `device`, in the order given, channels last."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        self._fill(rows)
        picked = self._nhwc.index_select(0, torch.as_tensor(rows, device=self._nhwc.device))
        return to_device(picked, device).permute(0, 3, 1, 2)


def resize_once(
    source: FaceSource, augment: Augmenter, enabled: bool = True, available: int | None = None
) -> tuple[ResizedFaces | None, str]:
    """`source`'s faces to be resized by `augment.to_working` once each, on first use, or None; with one line
    for the log saying why.

    Decodes nothing: weighs the float faces of the whole source against `available` bytes, or when that is
    None against the memory available where the preloaded faces live.
    """
    size = augment.working_size(source.image_size)
    every_round = f"faces resized to {size} px in every round"
    if not enabled:
        return None, f"{every_round}: resizing once is off"
    if not isinstance(source, PreloadedSource):
        return None, f"{every_round}: they are streamed"
    if size == source.image_size:
        return None, f"faces used at the cache's {size} px: nothing to resize"
    need = len(source) * 3 * size * size * 4
    where = source.place_on
    free = available
    if free is None:
        free = device_available_bytes(where) if where.type == "cuda" else host_available_bytes()
    place = f"on {where}" if where.type == "cuda" else "in host memory"
    if free is None or need > MEMORY_SHARE * free:
        known = "unknown" if free is None else gib(free)
        return (
            None,
            f"{every_round}: {gib(need)} of float faces would take more than half of the {known} {place}",
        )
    pin = source.pin and where.type == "cpu"
    out = torch.empty((len(source), size, size, 3), dtype=torch.float32, device=where, pin_memory=pin)
    note = f"faces resized once to {size} px: {gib(need)} of float faces {place}"
    return ResizedFaces(source, augment, out), note
