"""`facetool export` under hostile or unlucky conditions: a model and its card are written as one unit (both or
neither), every failure is one line, and nothing non-finite or machine-local ends up in a card."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from cache_helpers import write_cache
from cli_helpers import facetool_in_process

from facetool.cache import open_cache
from facetool.inference import OnnxEmbedder
from facetool.models.checkpoint import load_checkpoint
from facetool.models.export import export_model
from facetool.models.model_card import card_path


def one_line_error(done: subprocess.CompletedProcess, code: int = 1) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in lines[0] and "Traceback" not in done.stderr, lines
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_card_path_that_is_a_folder_is_refused_before_the_model_is_written(trained, tmp_path):
    (tmp_path / "m.safetensors.json").mkdir()
    done = facetool_in_process("export", trained.checkpoint, "-o", tmp_path / "m.safetensors")
    line = one_line_error(done, 2)
    assert "m.safetensors.json" in line and "folder" in line
    assert listing(tmp_path) == ["m.safetensors.json"]


def test_output_folder_that_cannot_be_written_is_one_line(trained, tmp_path):
    if os.geteuid() == 0:
        folder = Path("/sys")  # sysfs refuses new files even to root: a real read-only folder
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
    done = facetool_in_process("export", trained.checkpoint, "-o", folder / "m.onnx")
    line = one_line_error(done)
    assert str(folder / "m.onnx") in line and "cannot write" in line
    assert not (folder / "m.onnx").exists() and not (folder / "m.onnx.json").exists()
    under_file = tmp_path / "file"
    under_file.write_text("x")
    done = facetool_in_process("export", trained.checkpoint, "-o", under_file / "m.onnx")
    assert str(under_file) in one_line_error(done)


def test_cache_without_faces_is_one_line(trained, tmp_path):
    empty = tmp_path / "empty.h5"
    write_cache(empty, [], 64)
    before = listing(tmp_path)
    done = facetool_in_process("export", trained.checkpoint, "-o", tmp_path / "m.onnx", "--cache", empty)
    line = one_line_error(done, 2)
    assert "empty.h5" in line and "no faces" in line
    assert listing(tmp_path) == before


@pytest.mark.parametrize("field", ["epoch", "config"])
def test_checkpoint_with_a_tensor_for_its_config_or_epoch_is_one_line(trained, tmp_path, field):
    ckpt = load_checkpoint(trained.checkpoint)
    ckpt[field] = torch.tensor(3)
    odd = tmp_path / "odd.pth"
    torch.save(ckpt, odd)
    done = facetool_in_process("export", odd, "-o", tmp_path / "m.safetensors")
    line = one_line_error(done)
    assert "odd.pth" in line and repr(field) in line
    assert listing(tmp_path) == ["odd.pth"]


def with_many_identities(trained, path: Path, count: int) -> Path:
    """The trained checkpoint with `count` training-identity digests: its card is larger than its model."""
    ckpt = load_checkpoint(trained.checkpoint)
    ckpt["train_identities"] = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(count)]
    torch.save(ckpt, path)
    return path


def export_with_file_size_limit(source: Path, output: Path, limit: int) -> subprocess.CompletedProcess:
    """`facetool export` in a process whose files may not grow past `limit` bytes: a real write() failing
    with EFBIG, as a full disk fails with ENOSPC, at the byte the limit falls on."""

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "COLUMNS": "200", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "facetool", "export", str(source), "-o", str(output)],
                          capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=limit_files)  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "room_for"), [("onnx", "nothing"), ("safetensors", "nothing"), ("safetensors", "the model only")]
)
def test_full_disk_leaves_neither_model_nor_card_and_names_the_os_error(trained, tmp_path, fmt, room_for):
    source = with_many_identities(trained, tmp_path / "many.pth", 40_000)
    out = tmp_path / "out"
    out.mkdir()
    limit = 100_000 if room_for == "nothing" else 600_000  # the model takes about 400 kB, its card 960 kB
    done = export_with_file_size_limit(source, out / f"m.{fmt}", limit)
    line = one_line_error(done)
    assert f"m.{fmt}" in line and os.strerror(27) in line, line  # EFBIG: "File too large"
    assert "cannot be exported" not in line
    assert listing(out) == []


def test_nan_weights_are_refused_at_export(trained, tmp_path):
    ckpt = load_checkpoint(trained.checkpoint)
    first = next(key for key, value in ckpt["model"].items() if value.is_floating_point())
    ckpt["model"][first] = ckpt["model"][first].clone()
    ckpt["model"][first].view(-1)[0] = float("nan")
    nan = tmp_path / "nan.pth"
    torch.save(ckpt, nan)
    for suffix in ("safetensors", "onnx"):
        line = one_line_error(facetool_in_process("export", nan, "-o", tmp_path / f"m.{suffix}"))
        assert "nan.pth" in line and "non-finite" in line and first in line
    assert listing(tmp_path) == ["nan.pth"]


def test_report_with_a_nan_threshold_is_refused(trained, report, tmp_path):
    measured = json.loads(report.read_text())
    measured["fold_threshold"][0] = float("nan")
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps(measured))
    done = facetool_in_process("export", trained.checkpoint, "-o", tmp_path / "m.onnx", "--report", bad)
    line = one_line_error(done)
    assert "report.json" in line and "threshold" in line
    assert listing(tmp_path) == ["report.json"]


def test_model_and_card_modes_follow_the_umask(trained, tmp_path):
    before = os.umask(0o027)
    try:
        for fmt in ("safetensors", "onnx"):
            export_model(trained.checkpoint, tmp_path / f"m.{fmt}")
    finally:
        os.umask(before)
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in listing(tmp_path)}
    assert modes == dict.fromkeys(["m.onnx", "m.onnx.json", "m.safetensors", "m.safetensors.json"], 0o640)


def test_card_names_the_resize_and_holds_no_local_paths(trained, report, ssd_dir, tmp_path, cache_faces):
    done = facetool_in_process("export", trained.checkpoint, "-o", tmp_path / "m.onnx", "--cache", trained.cache,
                               "--report", report)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = card_path(tmp_path / "m.onnx").read_text()
    for local in (trained.cache.parent, ssd_dir, report.parent):
        assert str(local) not in text, local
    card = json.loads(text)
    assert card["training"]["config"]["data_dir"] == trained.cache.name
    assert card["training"]["config"]["checkpoint_dir"] == trained.checkpoint.parent.name
    assert card["face_crop"]["detector"] == {
        "name": "ssd",
        "settings": {},
        "format": "caffe",
        "weights": "res10_300x300_ssd_iter_140000.caffemodel",
    }
    assert card["verification"]["report"] == "report.json"
    # A third party with the card alone reproduces facetool's embeddings of the cached crops.
    spec, size = card["input"], card["input"]["image_size"]
    resize = spec["resize"]
    assert (resize["mode"], resize["antialias"], resize["align_corners"]) == ("bilinear", True, False)
    x = (torch.from_numpy(cache_faces).permute(0, 3, 1, 2).float() - spec["mean"]) / spec["divisor"]
    x = F.interpolate(x, size=(size, size), mode=resize["mode"], antialias=resize["antialias"],
                      align_corners=resize["align_corners"]).numpy()  # fmt: skip
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    theirs = session.run(["embedding"], {"input": x})[0]
    ours = OnnxEmbedder(tmp_path / "m.onnx")(cache_faces)
    assert np.abs(theirs - ours).max() <= 1e-7
    with open_cache(trained.cache) as cache:
        assert card["face_crop"]["image_size"] == cache.meta["image_size"] != size
