"""load_embedding_model: facetool checkpoints and bare facenet-pytorch weight files, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from facetool.data.transforms import to_input
from facetool.errors import ModelFileError, PluginError
from facetool.models import ModelInfo, build_backbone, load_embedding_model
from facetool.models.checkpoint import make_checkpoint, save_checkpoint


def write_checkpoint(path: Path, model: torch.nn.Module, backbone: dict) -> None:
    ckpt = make_checkpoint(model=model.state_dict(), backbone=backbone, config={}, epoch=1, history=[])
    save_checkpoint(ckpt, path)


def test_bare_facenet_weights_embed_like_facenet_pytorch(
    facenet_file: Path, facenet_state: dict[str, torch.Tensor], lfw_faces: np.ndarray
) -> None:
    model, info = load_embedding_model(facenet_file)
    assert info == ModelInfo("inception_resnet_v1", 512, 160, "facenet-pytorch")
    assert not model.training
    reference = InceptionResnetV1(pretrained=None, classify=False)
    reference.load_state_dict({k: v for k, v in facenet_state.items() if not k.startswith("logits.")})
    batch = to_input(lfw_faces)
    with torch.no_grad():
        assert torch.allclose(model(batch), reference.eval()(batch), atol=1e-5)


def test_facetool_checkpoint_round_trip(tmp_path: Path, lfw_faces: np.ndarray) -> None:
    spec = {"name": "inception_resnet_v1", "embedding_dim": 64, "dropout": 0.1, "image_size": 96}
    trained = build_backbone(spec["name"], embedding_dim=64, dropout=0.1, image_size=96).eval()
    path = tmp_path / "model.pt"
    write_checkpoint(path, trained, spec)
    model, info = load_embedding_model(path, device="cpu")
    assert info == ModelInfo("inception_resnet_v1", 64, 96, "facetool-checkpoint")
    batch = to_input(np.ascontiguousarray(lfw_faces[:, 32:128, 32:128]))
    with torch.no_grad():
        assert torch.allclose(model(batch), trained(batch), atol=1e-5)


def test_checkpoint_of_an_uninstalled_backbone_names_it(tmp_path: Path) -> None:
    spec = {"name": "no-such-net", "embedding_dim": 8, "dropout": 0.0, "image_size": 32}
    path = tmp_path / "model.pt"
    write_checkpoint(path, torch.nn.Linear(2, 2), spec)
    with pytest.raises(
        PluginError, match=r"unknown backbone 'no-such-net'; available: .*inception_resnet_v1"
    ):
        load_embedding_model(path)


def test_checkpoint_whose_weights_do_not_fit(tmp_path: Path) -> None:
    spec = {"name": "inception_resnet_v1", "embedding_dim": 512, "dropout": 0.0, "image_size": 160}
    path = tmp_path / "model.pt"
    write_checkpoint(path, torch.nn.Linear(2, 2), spec)
    with pytest.raises(
        ModelFileError, match=f"{path}: checkpoint weights do not fit backbone 'inception_resnet_v1'"
    ):
        load_embedding_model(path)


def test_missing_and_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=f"{tmp_path / 'absent.pt'}: model file not found"):
        load_embedding_model(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelFileError, match=f"{junk}: .*; nor a facenet-pytorch weights file"):
        load_embedding_model(junk)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "facetool-checkpoint", "model": ModelFileError("pickled object")}, evil)
    with pytest.raises(ModelFileError, match=f"{evil}: refused"):
        load_embedding_model(evil)
