"""facetool.embedding and `facetool embed` on real LFW images, a real detector and a real (untrained) network."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from facetool.cache import CacheWriter, FaceRecord, open_cache
from facetool.config.detect import DetectConfig
from facetool.data.transforms import embed_faces
from facetool.detection import crop_face_from_file, detector_from_config
from facetool.embedding import (
    CacheSource,
    EmbeddingSet,
    embed_paths,
    embed_sources,
    open_writer,
    write_embeddings,
)
from facetool.errors import FacetoolError, UsageError
from facetool.inference import TorchEmbedder
from facetool.models import ModelInfo, build_backbone
from facetool.models.checkpoint import make_checkpoint, save_checkpoint

SIZE = 80
DIM = 32
PEOPLE = ("Aaron_Peirsol", "Abdullah_Gul")


def lfw_face(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return cv2.cvtColor(
        cv2.resize(bgr[50:200, 50:200], (SIZE, SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
    )


@pytest.fixture(scope="module")
def faces(lfw_dir: Path) -> np.ndarray:
    files = [lfw_dir / name / f"{name}_{i:04d}.jpg" for name in PEOPLE for i in (1, 2, 3)]
    return np.stack([lfw_face(p) for p in files])


@pytest.fixture(scope="module")
def model(faces: np.ndarray) -> torch.nn.Module:
    """Untrained InceptionResnetV1 (32-d, 80 px), batch-norm statistics measured on real faces."""
    torch.manual_seed(0)
    net = build_backbone(embedding_dim=DIM, dropout=0.0, image_size=SIZE)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad():
        net((torch.from_numpy(faces).permute(0, 3, 1, 2).float() - 127.5) / 128.0)
    return net.eval()


def embedder(model: torch.nn.Module, batch_size: int) -> TorchEmbedder:
    """The test network as `facetool embed` runs it, on the CPU."""
    return TorchEmbedder(model, ModelInfo("inception_resnet_v1", DIM, SIZE, "test"), batch_size=batch_size)


def forward(model: torch.nn.Module, faces: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(
            (torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() - 127.5) / 128.0
        ).numpy()


def test_embed_faces_matches_a_plain_forward_pass(model, faces):
    emb = embed_faces(model, faces, batch_size=4)
    assert emb.shape == (6, DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, forward(model, faces), atol=1e-5)
    np.testing.assert_allclose(embed_faces(model, torch.from_numpy(faces), batch_size=256), emb, atol=1e-5)
    assert np.linalg.norm(emb[0] - emb[3]) > 0.05


def test_flip_sums_the_mirror_and_renormalises(model, faces):
    emb = embed_faces(model, faces, flip=True)
    total = forward(model, faces) + forward(model, faces[:, :, ::-1])
    np.testing.assert_allclose(emb, total / np.linalg.norm(total, axis=1, keepdims=True), atol=1e-5)
    assert emb.shape == (6, DIM)


def test_train_mode_is_restored_and_empty_input(model, faces):
    model.train()
    try:
        embed_faces(model, faces[:2])
        assert model.training
    finally:
        model.eval()
    assert embed_faces(model, faces[:0]).shape[0] == 0
    with pytest.raises(ValueError, match="expected \\(N, H, W, 3\\) uint8"):
        embed_faces(model, faces.astype(np.float32))


def test_writers_by_extension(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 4)).astype(np.float32)
    result = EmbeddingSet(
        emb,
        ["a/a_0001.jpg", "b/b_0001.jpg", "x.png"],
        ["a", "b", ""],
        np.array([1, 0, 1], bool),
        {"flip": True},
    )
    h5_path = write_embeddings(result, tmp_path / "e.h5")
    with h5py.File(h5_path) as h5:
        np.testing.assert_array_equal(h5["embeddings"][()], emb)
        assert [p.decode() for p in h5["paths"][()]] == result.paths
        assert [p.decode() for p in h5["identities"][()]] == result.identities
        assert json.loads(h5.attrs["settings"]) == {"flip": True}
    with np.load(write_embeddings(result, tmp_path / "e.npz")) as npz:
        np.testing.assert_array_equal(npz["embeddings"], emb)
        assert npz["paths"].tolist() == result.paths and npz["detected"].tolist() == [True, False, True]
    with write_embeddings(result, tmp_path / "sub" / "e.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["path", "identity", "detected", "e0", "e1", "e2", "e3"]
    np.testing.assert_allclose(np.array([r[3:] for r in rows[1:]], float), emb, rtol=1e-6)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FacetoolError, match=r"x.npz: cannot create its folder .*afile"):
        write_embeddings(result, tmp_path / "afile" / "x.npz")
    with pytest.raises(
        UsageError, match=r"e.parquet: unknown output extension '.parquet' \(use one of .h5, .npz, .csv\)"
    ):
        write_embeddings(result, tmp_path / "e.parquet")


def test_embed_cli_on_files_folders_and_a_cache(facetool_cli, model, lfw_dir, tmp_path):
    ckpt = tmp_path / "model.pth"
    backbone = {"name": "inception_resnet_v1", "embedding_dim": DIM, "dropout": 0.0, "image_size": SIZE}
    save_checkpoint(
        make_checkpoint(model=model.state_dict(), backbone=backbone, config={}, epoch=0, history=[]), ckpt
    )
    lfw_layout = tmp_path / "people"
    (lfw_layout / PEOPLE[0]).mkdir(parents=True)
    for i in (1, 2):
        (lfw_layout / PEOPLE[0] / f"{PEOPLE[0]}_{i:04d}.jpg").symlink_to(
            lfw_dir / PEOPLE[0] / f"{PEOPLE[0]}_{i:04d}.jpg"
        )
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "one.jpg").symlink_to(lfw_dir / PEOPLE[1] / f"{PEOPLE[1]}_0001.jpg")
    (flat / "notes.txt").write_text("not an image")
    single = lfw_dir / PEOPLE[1] / f"{PEOPLE[1]}_0002.jpg"
    cache = tmp_path / "faces.h5"
    with CacheWriter(cache, image_size=SIZE) as writer:
        rel = f"{PEOPLE[1]}/{PEOPLE[1]}_0003.jpg"
        st = (lfw_dir / rel).stat()
        writer.add(
            FaceRecord(
                rel, PEOPLE[1], st.st_size, st.st_mtime_ns, lfw_face(lfw_dir / rel), None, math.nan, False
            )
        )
        writer.commit()
    out = tmp_path / "emb.npz"
    result = facetool_cli("embed", ckpt, single, lfw_layout, flat, cache, "-o", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"wrote 5 embeddings of size {DIM}" in result.stdout
    with np.load(out) as npz:
        paths, identities, emb = npz["paths"].tolist(), npz["identities"].tolist(), npz["embeddings"]
        settings = json.loads(str(npz["settings"]))
    assert paths[0] == str(single) and paths[-1] == f"{PEOPLE[1]}/{PEOPLE[1]}_0003.jpg"
    assert identities == [PEOPLE[1], PEOPLE[0], PEOPLE[0], "flat", PEOPLE[1]]
    assert settings["embedding_dim"] == DIM and settings["flip"] is False and settings["image_size"] == SIZE
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # a raw image goes through the detector and crop of `facetool detect` (at the detection crop size, then
    # resized to the model's input, as a training cache is)
    config = DetectConfig()
    crop = crop_face_from_file(single, detector_from_config(config), config)
    assert crop.face.shape[0] == config.image_size != SIZE
    np.testing.assert_allclose(emb[0], embed_faces(model, crop.face[None], image_size=SIZE)[0], atol=1e-4)
    # the cached face is used as stored (JPEG-encoded in the cache)
    with open_cache(cache) as stored:
        np.testing.assert_allclose(emb[-1], forward(model, stored.read_faces())[0], atol=1e-4)


def test_embed_cli_errors(facetool_cli, tmp_path):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")
    bad_ext = facetool_cli("embed", tmp_path / "m.pth", image, "-o", tmp_path / "out.parquet")
    assert bad_ext.returncode == 2 and "unknown output extension '.parquet'" in bad_ext.stderr
    assert len(bad_ext.stderr.strip().splitlines()) == 1


def replicated_cache(path: Path, faces: np.ndarray, count: int) -> Path:
    """A face cache of `count` faces cycling through `faces` (real LFW crops), one identity per ten faces."""
    with CacheWriter(path, image_size=faces.shape[1], encoding="raw") as writer:
        for i in range(count):
            name = f"person_{i // 10:05d}"
            writer.add(
                FaceRecord(
                    f"{name}/{name}_{i:05d}.jpg", name, 1, 1, faces[i % len(faces)], None, math.nan, False
                )
            )
        writer.commit()
    return path


@pytest.fixture(scope="module")
def checkpoint(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    backbone = {"name": "inception_resnet_v1", "embedding_dim": DIM, "dropout": 0.0, "image_size": SIZE}
    save_checkpoint(
        make_checkpoint(model=model.state_dict(), backbone=backbone, config={}, epoch=0, history=[]), path
    )
    return path


def test_output_naming_an_input_is_refused(facetool_cli, checkpoint, faces, tmp_path):
    cache = replicated_cache(tmp_path / "faces.h5", faces, 4)
    before = cache.read_bytes()
    result = facetool_cli("embed", checkpoint, cache, "-o", cache, "--device", "cpu")
    assert result.returncode == 2 and "-o names an input" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cache.read_bytes() == before
    (tmp_path / "link.h5").symlink_to(cache)
    with pytest.raises(UsageError, match="-o names an input"):
        embed_paths(checkpoint, [cache], tmp_path / "link.h5")
    assert cache.read_bytes() == before
    with pytest.raises(UsageError, match="lies inside the input folder"):
        embed_paths(checkpoint, [tmp_path], tmp_path / "e.csv")
    assert not (tmp_path / "e.csv").exists()


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".csv"])
def test_batches_stream_into_the_same_file_as_one_batch(model, faces, tmp_path, suffix):
    cache = replicated_cache(tmp_path / "faces.h5", faces, 7)
    written = []
    for batch_size in (2, 256):
        out = tmp_path / f"b{batch_size}{suffix}"
        with open_writer(out) as writer:
            summary = embed_sources(embedder(model, batch_size), [CacheSource(cache)], writer)
            writer.finish({"batch": batch_size})
        assert summary.count == 7 and summary.dim == DIM
        written.append(read_back(out))
    (emb2, paths2, ids2), (emb, paths, ids) = written
    np.testing.assert_allclose(emb2, emb, atol=1e-5)
    assert paths2 == paths and ids2 == ids and len(paths) == 7
    np.testing.assert_allclose(emb[:6], embed_faces(model, np.concatenate([faces, faces[:1]]))[:6], atol=1e-4)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def read_back(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return npz["embeddings"], npz["paths"].tolist(), npz["identities"].tolist()
    if path.suffix == ".h5":
        with h5py.File(path) as h5:
            names = [[s.decode() for s in h5[k][()]] for k in ("paths", "identities")]
            return h5["embeddings"][()], names[0], names[1]
    with path.open() as handle:
        rows = list(csv.reader(handle))[1:]
    return np.array([r[3:] for r in rows], float), [r[0] for r in rows], [r[1] for r in rows]


def test_a_failure_mid_write_keeps_the_previous_output(model, faces, tmp_path):
    cache = replicated_cache(tmp_path / "faces.h5", faces, 6)
    out = tmp_path / "e.npz"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk full"), open_writer(out) as writer:
        embed_sources(embedder(model, 2), [CacheSource(cache)], writer)
        raise RuntimeError("disk full")
    assert out.read_bytes() == b"previous"
    assert list(tmp_path.glob(".*")) == []


def test_a_killed_embed_leaves_the_previous_output(checkpoint, faces, tmp_path):
    cache = replicated_cache(tmp_path / "faces.h5", faces, 300)
    out = tmp_path / "e.npz"
    out.write_bytes(b"previous")
    env = {**os.environ, "COLUMNS": "200"}
    args = ["embed", str(checkpoint), str(cache), "-o", str(out), "--device", "cpu", "--batch-size", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "facetool", *args], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".e.npz.*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == b"previous"


MEMORY_SCRIPT = """
import sys
import torch
from facetool.embedding import CacheSource, embed_sources, open_writer
from facetool.inference import TorchEmbedder
from facetool.models import ModelInfo

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
        self.fc = torch.nn.Linear(8 * 8 * 8, 4096)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))

torch.manual_seed(0)
with open_writer(sys.argv[2]) as writer:
    net = TorchEmbedder(Net(), ModelInfo("net", 4096, 32, "test"), batch_size=256)
    summary = embed_sources(net, [CacheSource(sys.argv[1])], writer)
    writer.finish({})
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(summary.count, peak)
"""


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_embed_memory_does_not_grow_with_the_input(faces, tmp_path, suffix):
    """4,096-d embeddings of 2,000 and 10,000 faces: holding them would add 128 MB, and as much to concatenate.

    A small real network keeps the run to seconds; the peak RSS after the allocator's warm-up must not grow.
    The peak is the child's own VmHWM: getrusage's ru_maxrss keeps the parent's peak across fork and exec.
    """
    small_faces = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in faces])
    peaks = []
    for count in (2_000, 10_000):
        cache = replicated_cache(tmp_path / f"c{count}.h5", small_faces, count)
        out = tmp_path / f"e{count}{suffix}"
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(cache), str(out)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        n, peak_kb = map(int, done.stdout.split())
        assert n == count
        peaks.append(peak_kb)
        assert read_back(out)[0].shape == (count, 4096)
    assert peaks[1] - peaks[0] < 48 * 1024, peaks
