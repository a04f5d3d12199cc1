"""The built-in inception_resnet_v1 backbone: sizes, pretrained files from TORCH_HOME or a path, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facetool.data.transforms import to_input
from facetool.errors import ModelFileError, PluginError, UsageError
from facetool.models import available_backbones, build_backbone

VGGFACE2_FILE = "20180402-114759-vggface2.pt"


def test_default_backbone_is_registered() -> None:
    assert "inception_resnet_v1" in available_backbones()


def test_128_d_embeddings_of_real_faces_are_unit_vectors(lfw_faces: np.ndarray) -> None:
    model = build_backbone("inception_resnet_v1", embedding_dim=128, dropout=0.2).eval()
    assert model.last_linear.out_features == 128
    assert model.dropout.p == pytest.approx(0.2)
    with torch.no_grad():
        out = model(to_input(lfw_faces))
    assert out.shape == (4, 128)
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    assert model.training is False


def test_small_image_size_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match=r"image_size 64: inception_resnet_v1 needs at least 75"):
        build_backbone(image_size=64)


def test_missing_named_weights_name_the_expected_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "checkpoints" / VGGFACE2_FILE
    with pytest.raises(ModelFileError, match=f"weights file not found at {expected}"):
        build_backbone(pretrained="vggface2")
    assert not expected.exists(), "facetool must never download weights"


def test_unknown_pretrained_value_lists_the_names(tmp_path: Path) -> None:
    with pytest.raises(
        ModelFileError, match=r"vggface3': not one of none, vggface2, casia-webface, and no weights file"
    ):
        build_backbone(pretrained=str(tmp_path / "vggface3"))


def test_named_weights_load_from_torch_home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    facenet_file: Path,
    facenet_state: dict[str, torch.Tensor],
) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    os.symlink(facenet_file, checkpoints / VGGFACE2_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = build_backbone(pretrained="vggface2", embedding_dim=128).state_dict()
    assert state["last_linear.weight"].shape == (128, 1792)
    body = [k for k in state if not k.startswith(("last_linear.", "last_bn."))]
    assert len(body) > 400
    assert all(torch.equal(state[k], facenet_state[k]) for k in body)


def test_weights_from_a_path_are_loaded_exactly(
    facenet_file: Path, facenet_state: dict[str, torch.Tensor]
) -> None:
    model = build_backbone(pretrained=str(facenet_file))
    state = model.state_dict()
    assert "logits.weight" not in state
    assert all(torch.equal(state[k], facenet_state[k]) for k in state)


def test_a_file_that_is_not_weights_is_a_model_file_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match=f"{garbage}: (cannot read weights|not a PyTorch weights file)"):
        build_backbone(pretrained=str(garbage))
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(ModelFileError, match=f"{other}: not InceptionResnetV1 weights"):
        build_backbone(pretrained=str(other))


def test_code_in_a_weights_file_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"conv": PluginError("pickled object")}, evil)
    with pytest.raises(ModelFileError, match=f"{evil}: refused: not a plain weights file"):
        build_backbone(pretrained=str(evil))


def test_commands_that_build_no_inception_never_import_facenet_pytorch() -> None:
    """facenet-pytorch brings torchvision, about 2 s of every start; only the inception backbone needs it."""
    code = (
        "import sys\n"
        "from facetool.cli.app import main\n"
        "from facetool.models import build_backbone, load_embedding_model\n"
        "from facetool.training.loop import train\n"
        "build_backbone('test-cnn', embedding_dim=8, image_size=32)\n"
        "print('facenet_pytorch' in sys.modules, 'torchvision' in sys.modules)\n"
        "build_backbone('inception_resnet_v1', embedding_dim=8, image_size=80)\n"
        "print('facenet_pytorch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]
