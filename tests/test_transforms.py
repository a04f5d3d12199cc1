"""Network input: one standardisation and one resize, shared by training, eval and embed."""

import numpy as np
import torch
import torch.nn.functional as F

from facetool.data.augment import prepare
from facetool.data.transforms import embed_faces, to_input


def _faces(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_standardisation_and_layout():
    faces = _faces(2, 8)
    x = to_input(faces)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[1, 2], (torch.from_numpy(faces[1, :, :, 2]).float() - 127.5) / 128)


def test_resize_only_when_sizes_differ_and_same_as_training():
    faces = _faces(3, 40)
    assert torch.equal(to_input(faces, image_size=40), to_input(faces))
    small = to_input(faces, image_size=16)
    assert small.shape == (3, 3, 16, 16)
    assert torch.equal(small, prepare(torch.from_numpy(faces), 16))


class _MeanColour(torch.nn.Module):
    """A model whose output depends on the input size: it sees how many pixels it was given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.cat([x.mean((2, 3)), torch.full((len(x), 1), x.shape[-1] / 100)], 1), dim=1)


def test_embedding_a_cache_of_another_size_resizes_like_training():
    faces = _faces(4, 40)
    model = _MeanColour()
    resized = embed_faces(model, faces, image_size=16)
    expected = F.normalize(model(prepare(torch.from_numpy(faces), 16)), dim=1).numpy()
    assert np.allclose(resized, expected, atol=1e-6)
    assert not np.allclose(resized, embed_faces(model, faces))
