"""Untrusted checkpoints: a .pth crafted to run code when unpickled is refused by every command that loads one."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from reliability_helpers import (
    CreatesMarker,
    assert_one_line_error,
    facetool,
    hostile_files,
    write_small_cache,
    write_small_pairs,
)

COMMANDS = {
    "eval": lambda ckpt, cache, tmp: (
        "eval",
        ckpt,
        "--data",
        cache,
        "--pairs",
        cache.with_suffix(".txt"),
        "--out",
        tmp / "eval",
        "--device",
        "cpu",
    ),
    "embed": lambda ckpt, cache, tmp: ("embed", ckpt, cache, "-o", tmp / "emb.npz", "--device", "cpu"),
    "train --resume": lambda ckpt, cache, tmp: (
        "train",
        "--data",
        cache,
        "--resume",
        ckpt,
        "--checkpoint-dir",
        tmp / "run",
        "--device",
        "cpu",
    ),
}


def test_the_payload_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    """Control: the hostile object does create the marker under plain pickle, so the refusals below mean something."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(CreatesMarker(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("kind", ["archive", "bare"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_checkpoint_is_refused_and_never_runs(
    command: str, kind: str, tmp_path: Path, lfw_dir: Path
) -> None:
    marker = tmp_path / "PWNED"
    ckpt = hostile_files(tmp_path / "ckpt", marker)[kind]
    cache = write_small_cache(lfw_dir, tmp_path / "faces.h5")
    write_small_pairs(lfw_dir, cache.with_suffix(".txt"))
    result = facetool(*COMMANDS[command](ckpt, cache, tmp_path))
    assert_one_line_error(result, 1, str(ckpt))
    assert "unpickling" in result.stderr or "not a PyTorch archive" in result.stderr
    assert not marker.exists(), f"{command} ran code from {ckpt}"
