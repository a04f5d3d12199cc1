"""Batched JPEG decoding in the parent (the GPU path) on a real LFW cache, exercised on the CPU: workers hand
over stored bytes, `decode_jpeg` gives the cache decoder's faces within JPEG tolerance, and the choice falls
back to CPU workers by itself where the device cannot decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cache_helpers import some_identities, write_people_cache

from facetool.cache import open_cache
from facetool.data.choose import open_face_source
from facetool.data.jpeg import choose_decoder, decode_payloads
from facetool.data.stream import StreamedSource
from facetool.errors import FacetoolError, UsageError

SIZE = 40


@pytest.fixture(scope="module")
def cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    people = some_identities(lfw_dir, 8, min_images=2, start=40)
    return write_people_cache(lfw_dir, tmp_path_factory.mktemp("jpeg") / "faces.h5", people, 5, SIZE)


def assert_same_faces(got: torch.Tensor, expected: np.ndarray) -> None:
    """Equal within what two JPEG decoders (IDCT and upsampling choices) may differ by."""
    assert got.dtype == torch.uint8 and tuple(got.shape) == expected.shape
    diff = (got.numpy().astype(np.int16) - expected.astype(np.int16)).__abs__()
    assert diff.mean() < 1.0 and diff.max() <= 16, (diff.mean(), diff.max())


def test_decode_jpeg_of_the_stored_bytes_matches_the_cache_decoder(cache: Path) -> None:
    with open_cache(cache) as reference:
        rows = np.array([7, 0, 3, 3, len(reference) - 1])
        payloads = reference.payloads(rows)
        assert all(p.dtype == np.uint8 and bytes(p[:2]) == b"\xff\xd8" for p in payloads)
        assert_same_faces(decode_payloads(payloads, SIZE, "cpu"), reference.read_faces(rows))
    assert decode_payloads([], SIZE, "cpu").shape == (0, SIZE, SIZE, 3)
    broken = payloads[0].copy()
    broken[20:] = 0
    with pytest.raises(FacetoolError, match="corrupted"):
        decode_payloads([broken[:60]], SIZE, "cpu")
    with pytest.raises(FacetoolError, match=f"not {SIZE // 2}x{SIZE // 2}"):
        decode_payloads(payloads[:1], SIZE // 2, "cpu")


def test_streamed_source_with_bytes_from_workers_gives_the_cache_faces(cache: Path) -> None:
    source, choice = open_face_source(cache, mode="stream", workers=2, slot_faces=3, decode="device")
    assert isinstance(source, StreamedSource) and source.pool.encoded
    assert "JPEG decoded on cpu in batches" in choice.reason
    with source, open_cache(cache) as reference:
        rows = np.random.default_rng(5).permutation(len(source))[:17]
        source.prefetch(rows)
        assert_same_faces(source.fetch(rows, "cpu"), reference.read_faces(rows))
        half = source.subset([1, 3])
        with half:
            assert_same_faces(half.fetch(np.arange(len(half)), "cpu"), reference.read_faces(half.cache_rows))


def test_decoder_choice_falls_back_to_the_workers(cache: Path) -> None:
    cpu = torch.device("cpu")
    assert not choose_decoder("auto", cpu, "jpeg").on_device
    assert "no JPEG decoding on cpu" in choose_decoder("auto", cpu, "jpeg").reason
    assert not choose_decoder("device", cpu, "raw").on_device
    assert "raw faces" in choose_decoder("auto", torch.device("cuda"), "raw").reason
    assert not choose_decoder("workers", torch.device("cuda"), "jpeg").on_device
    assert choose_decoder("device", cpu, "jpeg").on_device
    if not torch.cuda.is_available():
        fallback = choose_decoder("auto", torch.device("cuda"), "jpeg")
        assert not fallback.on_device and "decode_jpeg on cuda failed" in fallback.reason
    with pytest.raises(UsageError, match="decode 'gpu'"):
        choose_decoder("gpu", cpu, "jpeg")  # type: ignore[arg-type]
    source, choice = open_face_source(cache, mode="stream", workers=1)
    with source:
        assert not source.pool.encoded and "decoded by the workers" in choice.reason
