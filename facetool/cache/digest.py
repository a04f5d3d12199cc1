"""A digest of what a face cache holds, so a rerun can tell the same faces from other ones wherever they lie.

It covers the format and, per face, the image path, identity, source size, box, score, detected flag, landmarks
(when any face has them; older caches keep their digest) and the
stored bytes' length (a face cropped or encoded otherwise changes it), and each failure's path and reason; not
the cache's own path or times, its metadata (which names local folders and the facetool version), nor the
source images' mtimes. Reading it costs the metadata columns only: no image is decoded.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from facetool.cache.reader import open_cache


def content_digest(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of the cache's content (see the module's docstring)."""
    digest = hashlib.sha256()
    with open_cache(path) as cache:
        fmt = cache.format
        head = {"image_size": fmt.image_size, "encoding": fmt.encoding, "jpeg_quality": fmt.jpeg_quality}
        digest.update(json.dumps(head, sort_keys=True).encode("utf-8"))
        names = [cache.identities[label] for label in cache.labels]
        for column in (cache.paths, names, [f"{f.path}\t{f.reason}" for f in cache.failures]):
            digest.update(json.dumps(column, ensure_ascii=False).encode("utf-8"))
        stored = cache.payload_sizes(np.arange(len(cache)))
        for array in (cache.sizes, cache.boxes, cache.scores, cache.detected, stored):
            digest.update(np.ascontiguousarray(array).tobytes())
        if np.isfinite(cache.landmarks).any():  # caches without landmarks keep the digest they always had
            digest.update(np.ascontiguousarray(cache.landmarks).tobytes())
    return digest.hexdigest()
