"""Exported models: safetensors and ONNX files against facetool's own torch embeddings, and their cards."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facetool.cache import open_cache
from facetool.config.evaluate import EmbedConfig
from facetool.config.export import ExportConfig
from facetool.data.transforms import embed_faces, to_input
from facetool.embedding import embed_paths
from facetool.errors import FacetoolError, ModelFileError, UsageError
from facetool.inference import OnnxEmbedder, TorchEmbedder, load_embedder
from facetool.models import build_backbone, load_embedding_model
from facetool.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from facetool.models.export import export_model, export_onnx, onnx_bytes
from facetool.models.model_card import card_path

TOLERANCE = 1e-4


def cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "facetool", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def test_safetensors_holds_only_the_embedding_weights_and_loads_without_unpickling(
    trained, exported, cache_faces
):
    path = exported["safetensors"]
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    reference, info = load_embedding_model(trained.checkpoint)
    assert set(header) - {"__metadata__"} == set(reference.state_dict())
    assert load_checkpoint(trained.checkpoint)["optimizer"]
    assert not raw.startswith(b"PK") and b"optimizer" not in raw and b"pickle" not in raw
    model, loaded = load_embedding_model(path)
    assert (loaded.backbone, loaded.embedding_dim, loaded.image_size, loaded.source) == (
        "test-cnn", 16, 48, "safetensors")  # fmt: skip
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    expected = embed_faces(reference, cache_faces, image_size=info.image_size)
    got = embed_faces(model, cache_faces, image_size=loaded.image_size)
    assert np.array_equal(got, expected)


def test_card_says_how_to_feed_the_model_and_where_it_came_from(trained, exported):
    path = exported["onnx"]
    card = json.loads(card_path(path).read_text())
    assert card_path(path).name == "model.onnx.json"
    assert card["backbone"] == {"name": "test-cnn", "settings": {}, "embedding_dim": 16, "image_size": 48}
    resize = card["input"].pop("resize")
    assert card["input"] == {"layout": "NCHW", "channels": "RGB", "dtype": "float32", "image_size": 48,
                                  "normalization": "(x - 127.5) / 128", "mean": 127.5, "divisor": 128.0}  # fmt: skip
    assert (resize["mode"], resize["antialias"], resize["align_corners"]) == ("bilinear", True, False)
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with open_cache(trained.cache) as cache:
        meta = cache.meta
    for key in ("threshold", "select", "margin", "image_size"):
        assert card["face_crop"][key] == meta[key], key
    assert card["face_crop"]["model_format"] == "caffe"
    ckpt = load_checkpoint(trained.checkpoint)
    assert card["training"]["epochs"] == ckpt["epoch"] == 3
    assert card["training"]["config"]["miner"] == {"name": "random"}
    assert card["verification"] is None
    check = card["export_check"]
    assert check["opset"] == ExportConfig().opset and 0 <= check["max_abs_diff"] <= check["tolerance"]


def test_onnx_matches_torch_on_real_faces_for_any_batch_size(trained, exported, cache_faces):
    model, info = load_embedding_model(trained.checkpoint)
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    for count in (1, 5, len(cache_faces)):
        x = to_input(cache_faces[:count], "cpu", info.image_size).numpy()
        got = session.run(["embedding"], {"input": x})[0]
        expected = embed_faces(model, cache_faces[:count], image_size=info.image_size)
        assert got.shape == (count, 16)
        assert np.abs(got - expected).max() < TOLERANCE


def test_onnx_embedder_gives_the_torch_numbers_with_and_without_flip(trained, exported, cache_faces):
    model, info = load_embedding_model(trained.checkpoint)
    for flip in (False, True):
        onnx = OnnxEmbedder(exported["onnx"], flip=flip, batch_size=7)
        expected = embed_faces(model, cache_faces, batch_size=7, flip=flip, image_size=info.image_size)
        assert np.abs(onnx(cache_faces) - expected).max() < TOLERANCE
        torch_embedder = TorchEmbedder(model, info, flip=flip, batch_size=7)
        assert np.array_equal(torch_embedder(cache_faces), expected)
    embedder, card = load_embedder(exported["onnx"])
    assert embedder.runtime == "onnx" and card["backbone"]["name"] == "test-cnn"
    with pytest.raises(UsageError, match=r"needs an \.onnx file"):
        load_embedder(trained.checkpoint, runtime="onnx")


def test_inception_resnet_exports_to_onnx_and_matches_on_real_faces(cache_faces, tmp_path):
    torch.manual_seed(0)
    net = build_backbone(embedding_dim=32, dropout=0.0, image_size=80)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        net.train()(to_input(cache_faces[:12], "cpu", 80))
    spec = {"name": "inception_resnet_v1", "embedding_dim": 32, "dropout": 0.0, "image_size": 80}
    ckpt = tmp_path / "inception.pth"
    state = net.eval().state_dict()
    save_checkpoint(make_checkpoint(model=state, backbone=spec, config={}, epoch=0, history=[]), ckpt)
    faces = cache_faces[:3]
    result = export_model(
        ckpt, tmp_path / "inception.onnx", check_inputs=lambda size: to_input(faces, "cpu", size).numpy()
    )
    assert result.max_abs_diff is not None and result.max_abs_diff < TOLERANCE
    expected = embed_faces(net, cache_faces[12:14], image_size=80)
    got = OnnxEmbedder(result.path)(cache_faces[12:14])
    assert np.abs(got - expected).max() < TOLERANCE
    assert json.loads(result.card.read_text())["export_check"]["faces"] == 3


class ValueDependent(nn.Module):
    """Its forward takes a branch by the input's values: tracing records only the branch of the dummy input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.flatten(1)[:, :8]
        if bool(x.mean() > 0):
            return F.normalize(y + 1, dim=1)
        return F.normalize(y - 1, dim=1)


def test_onnx_that_disagrees_with_torch_is_refused_and_not_written(tmp_path):
    out = tmp_path / "bad.onnx"
    inputs = np.full((2, 3, 16, 16), 0.5, dtype=np.float32)
    with pytest.raises(
        FacetoolError, match=r"differ from torch by up to .*'value-dependent'.*nothing written"
    ):
        export_onnx(ValueDependent(), out, name="value-dependent", image_size=16, config=ExportConfig(),
                    check_inputs=inputs)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


class Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.linalg.svdvals(x.flatten(2)).flatten(1), dim=1)


def test_backbone_that_cannot_be_traced_is_named_with_the_reason(tmp_path):
    with pytest.raises(FacetoolError, match=r"backbone 'odd-net' cannot be exported to ONNX: \w+"):
        onnx_bytes(Untraceable(), name="odd-net", image_size=16, opset=17)


def test_safetensors_needs_its_own_card(exported, tmp_path):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(exported["safetensors"].read_bytes())
    with pytest.raises(ModelFileError, match=r"lone.safetensors.json: model card not found"):
        load_embedding_model(lone)
    card_path(lone).write_text(card_path(exported["onnx"]).read_text())
    with pytest.raises(ModelFileError, match="model_format: the card says 'onnx'"):
        load_embedding_model(lone)
    card = json.loads(card_path(exported["onnx"]).read_text()) | {"model_format": "safetensors"}
    card_path(lone).write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="does not belong to"):
        load_embedding_model(lone)


def test_export_never_writes_over_its_input(exported, tmp_path):
    source = tmp_path / "m.safetensors"
    source.write_bytes(exported["safetensors"].read_bytes())
    card_path(source).write_text(card_path(exported["safetensors"]).read_text().replace(
        exported["safetensors"].name, source.name))  # fmt: skip
    before = source.read_bytes()
    with pytest.raises(UsageError):
        export_model(source, source)
    assert source.read_bytes() == before
    again = export_model(source, tmp_path / "again.onnx")
    assert json.loads(again.card.read_text())["training"]["epochs"] == 3


def test_cli_export_reports_the_difference_and_uses_the_cache(trained, tmp_path):
    done = cli("export", trained.checkpoint, "-o", tmp_path / "m.onnx", "--cache", trained.cache)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if "max abs difference" in x)
    diff = float(line.split("max abs difference ")[1].split()[0])
    card = json.loads((tmp_path / "m.onnx.json").read_text())
    assert math.isclose(diff, card["export_check"]["max_abs_diff"], rel_tol=1e-2)
    assert card["face_crop"]["source"] == "face cache faces.h5" and card["export_check"]["faces"] == 8
    bad = cli("export", trained.checkpoint, "-o", tmp_path / "m.pt")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "must end in .onnx or .safetensors" in bad.stderr
    assert not (tmp_path / "m.pt").exists()


def test_eval_and_embed_take_safetensors_with_its_card(trained, exported, report, tmp_path):
    pairs = report.parent.parent / "pairs.txt"
    done = cli("eval", exported["safetensors"], "--data", trained.cache, "--pairs", pairs,
               "--out", tmp_path / "eval", "--device", "cpu")  # fmt: skip
    assert done.returncode == 0, done.stderr
    got, expected = (json.loads(p.read_text()) for p in (tmp_path / "eval" / "report.json", report))
    for key in ("accuracy", "fold_threshold", "auc", "roc_tpr", "roc_fpr"):
        assert got[key] == expected[key], key
    config = EmbedConfig(device="cpu")
    embeddings = []
    for model, name in ((exported["safetensors"], "s.npz"), (trained.checkpoint, "c.npz")):
        _, path = embed_paths(model, [trained.cache], tmp_path / name, config)
        with np.load(path) as npz:
            embeddings.append(npz["embeddings"])
    assert np.array_equal(*embeddings)


def test_card_threshold_is_the_reports_and_a_bad_report_is_one_line(
    trained, with_threshold, report, tmp_path
):
    card = json.loads(card_path(with_threshold["onnx"]).read_text())
    measured = json.loads(report.read_text())
    thresholds = measured["fold_threshold"]
    assert card["verification"]["threshold"] == pytest.approx(sum(thresholds) / len(thresholds), abs=1e-12)
    assert card["verification"]["accuracy"] == measured["accuracy"]
    assert card["verification"]["num_pairs"] == measured["num_pairs"] == 12
    bad = tmp_path / "report.json"
    bad.write_text('{"accuracy": 0.5}\n')
    with pytest.raises(ModelFileError, match=r"report.json: not a facetool eval report.json \(KeyError"):
        export_model(trained.checkpoint, tmp_path / "m.safetensors", report=bad)
    assert not (tmp_path / "m.safetensors").exists()


def test_onnx_file_is_not_taken_for_a_torch_model(exported):
    with pytest.raises(
        ModelFileError, match=r"model.onnx: an ONNX model runs in onnxruntime \(--runtime onnx\)"
    ):
        load_embedding_model(exported["onnx"])


def test_eval_and_embed_with_runtime_onnx_give_the_torch_numbers(
    trained, exported, report, ssd_dir, tmp_path
):
    pairs = report.parent.parent / "pairs.txt"
    done = cli("eval", exported["onnx"], "--runtime", "onnx", "--data", trained.cache, "--pairs", pairs,
               "--out", tmp_path / "eval", "--device", "cpu")  # fmt: skip
    assert done.returncode == 0, done.stderr
    got, expected = (json.loads(p.read_text()) for p in (tmp_path / "eval" / "report.json", report))
    assert got["num_pairs"] == expected["num_pairs"] and got["flip"] == expected["flip"]
    for key in ("accuracy", "auc", "fold_threshold", "roc_tpr", "roc_fpr"):
        assert np.allclose(got[key], expected[key], atol=1e-4), key
    image = next((trained.data_dir / trained.people[0]).iterdir())
    outputs = {}
    for runtime, model in (("onnx", exported["onnx"]), ("torch", exported["safetensors"])):
        out = tmp_path / f"{runtime}.npz"
        done = cli("embed", model, image, trained.cache, "-o", out, "--runtime", runtime, "--device", "cpu",
                   "--set", f"detect.model_dir={ssd_dir}")  # fmt: skip
        assert done.returncode == 0, done.stderr
        with np.load(out) as npz:
            outputs[runtime] = (npz["embeddings"], json.loads(str(npz["settings"]))["runtime"])
    assert outputs["onnx"][1] == "onnx" and outputs["torch"][1] == "torch"
    assert np.abs(outputs["onnx"][0] - outputs["torch"][0]).max() < TOLERANCE
    with open_cache(trained.cache) as cache:
        assert len(outputs["onnx"][0]) == 1 + len(cache)


def test_runtime_onnx_needs_an_onnx_file(trained, tmp_path):
    done = cli("embed", trained.checkpoint, trained.cache, "-o", tmp_path / "e.npz", "--runtime", "onnx")
    assert done.returncode == 2 and "runtime onnx needs an .onnx file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "e.npz").exists()
