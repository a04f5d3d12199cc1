"""A preloaded source of a real cache of LFW crops: loading, leaving out one-image people, the identity split."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facetool.cache import CacheWriter, FaceRecord
from facetool.data.choose import open_face_source
from facetool.data.source import PreloadedSource
from facetool.data.split import drop_small_identities, split_identities
from facetool.errors import CacheError, FacetoolError


@pytest.fixture(scope="module")
def cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    wanted = {"Aaron_Peirsol": 4, "Abdullah_Gul": 5, "Adrien_Brody": 3, "AJ_Cook": 1, "Aaron_Eckhart": 1}
    path = tmp_path_factory.mktemp("faceset") / "faces.h5"
    with CacheWriter(path, image_size=48, encoding="raw") as writer:
        for name, n in wanted.items():
            for file in sorted((lfw_dir / name).glob("*.jpg"))[:n]:
                face = cv2.resize(cv2.imread(str(file))[..., ::-1], (48, 48), interpolation=cv2.INTER_AREA)
                st = file.stat()
                writer.add(
                    FaceRecord(f"{name}/{file.name}", name, st.st_size, st.st_mtime_ns,
                               np.ascontiguousarray(face), None, float("nan"), False)
                )  # fmt: skip
        writer.commit()
    return path, wanted


def load_faceset(path: Path) -> PreloadedSource:
    source, choice = open_face_source(path, mode="preload")
    assert choice.kind == "preload-host" and isinstance(source, PreloadedSource)
    return source


def test_load_keeps_every_face_and_label(cache):
    path, wanted = cache
    faces = load_faceset(path)
    assert len(faces) == sum(wanted.values()) and faces.image_size == 48
    assert faces.faces.dtype == torch.uint8 and faces.faces.shape[1:] == (48, 48, 3)
    assert dict(zip(faces.identities, faces.counts().tolist(), strict=True)) == wanted


def test_small_identities_are_left_out_and_counted(cache):
    path, _ = cache
    faces, dropped = drop_small_identities(load_faceset(path))
    assert dropped == 2
    assert sorted(faces.identities) == ["Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody"]
    assert dict(zip(faces.identities, faces.counts().tolist(), strict=True)) == {
        "Aaron_Peirsol": 4,
        "Abdullah_Gul": 5,
        "Adrien_Brody": 3,
    }
    assert int(faces.labels.max()) == 2


def test_identity_split_is_disjoint_and_seeded(cache):
    path, _ = cache
    faces, _ = drop_small_identities(load_faceset(path))
    with pytest.raises(FacetoolError, match=r"validation\.fraction"):
        split_identities(faces, 0.5, seed=0)
    full = load_faceset(path)
    train, val = split_identities(full, 0.3, seed=0)
    assert set(train.identities).isdisjoint(val.identities)
    assert len(train) + len(val) == len(full) and val.num_identities == 2
    again, _ = split_identities(full, 0.3, seed=0)
    assert again.identities == train.identities and torch.equal(again.faces, train.faces)
    assert split_identities(full, 0.0, seed=0) == (full, None)


def test_not_a_cache_names_the_file(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("hello")
    with pytest.raises(CacheError, match=r"notes\.h5"):
        load_faceset(bad)
