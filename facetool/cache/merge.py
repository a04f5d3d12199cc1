"""Overlaying the journal on the consolidated file: what a reader sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facetool.cache.journal import Segment
from facetool.cache.records import FaceColumns, FailureColumns
from facetool.cache.store import FileStore


@dataclass
class Merged:
    """The visible content: faces sorted by path with where each payload lives, failures sorted by path."""

    faces: FaceColumns
    source: np.ndarray  # 0 = the HDF5 file, 1 = the journal
    index: np.ndarray  # index into that source
    failures: FailureColumns
    journal_payloads: list[np.ndarray]
    segments: list[int]  # numbers of the journal segments shown


def merge_journal(base: FileStore, segments: Sequence[Segment]) -> Merged:
    """Overlay journal segments on the file; for each path the entry added last wins."""
    if not segments:
        n = len(base.faces)
        return Merged(base.faces, np.zeros(n, np.int8), np.arange(n), base.failures, [], [])
    nbase = len(base.faces)
    faces = FaceColumns.concat([base.faces, *(s.faces for s in segments)])
    failures = [*base.failures.items()]
    payloads = [p for s in segments for p in s.payloads]
    winner: dict[str, tuple[str, int]] = {p: ("face", i) for i, p in enumerate(base.faces.paths)}
    winner |= {f.path: ("failure", i) for i, f in enumerate(failures)}
    face_i = nbase
    for seg in segments:
        fi, xi, ri = 0, 0, 0
        seg_failures = seg.failures.items()
        for kind in seg.kinds:
            if kind == "removed":
                winner.pop(seg.removed[ri], None)
                ri += 1
            elif kind == "face":
                winner[seg.faces.paths[fi]] = ("face", face_i)
                fi += 1
                face_i += 1
            else:
                winner[seg_failures[xi].path] = ("failure", len(failures))
                failures.append(seg_failures[xi])
                xi += 1
    keep = sorted((p, i) for p, (kind, i) in winner.items() if kind == "face")
    keep_idx = np.array([i for _, i in keep], np.int64)
    kept_failures = sorted(
        (failures[i] for p, (kind, i) in winner.items() if kind == "failure"), key=lambda f: f.path
    )
    source = (keep_idx >= nbase).astype(np.int8)
    index = np.where(source == 1, keep_idx - nbase, keep_idx)
    kept = FailureColumns.from_items(kept_failures)
    return Merged(faces.take(keep_idx).compact(), source, index, kept, payloads, [s.seq for s in segments])
