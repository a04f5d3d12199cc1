"""Two real training processes (gloo, CPU) with DistributedDataParallel: same weights on both, rank 0 writes."""

from __future__ import annotations

import re
import subprocess
import sys

from facetool.models.checkpoint import load_checkpoint
from facetool.training.distributed import Ranks, rank_device, ranks_from_env, state_digest


def _args(cache, run_dir, epochs: int) -> list[str]:
    return [
        "train", "--data", str(cache), "--checkpoint-dir", str(run_dir), "--num-epochs", str(epochs),
        "--batch-size", "30", "--people-per-batch", "5", "--images-per-person", "4", "--device", "cpu",
        "--set", "backbone=test-cnn", "--set", "image_size=48", "--set", "embedding_dim=16",
        "--set", "epoch_size=3", "--set", "validation.fraction=0.0", "--learning-rate", "0.01",
        "--threads", "1", "--nproc", "2",
    ]  # fmt: skip


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facetool", *args], capture_output=True, text=True, timeout=300
    )


def test_two_processes_end_with_identical_weights_and_resume(small_cache, tmp_path):
    run_dir = tmp_path / "run"
    first = _run(_args(small_cache, run_dir, 1))
    assert first.returncode == 0, first.stderr[-3000:]
    second = _run([*_args(small_cache, run_dir, 2), "--resume", "auto"])
    assert second.returncode == 0, second.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    digests = re.findall(r"weights identical on all 2 ranks: sha256 ([0-9a-f]{64})", log)
    assert len(digests) == 2, log
    ck = load_checkpoint(run_dir / "last.pth")
    assert ck["epoch"] == 2 and [r["epoch"] for r in ck["history"]] == [1, 2]
    assert state_digest(ck["model"]) == digests[-1]
    assert log.count("epoch 2/2:") == 1 and "2 processes" in log
    assert f"resumed from {run_dir / 'last.pth'} after epoch 1" in log
    assert ck["history"][1]["trained_triplets"] > 0


def test_rank_environment_and_devices():
    assert ranks_from_env({}) == Ranks(0, 1, 0)
    ranks = ranks_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert ranks.distributed and not ranks.main
    assert rank_device("cpu", ranks) == "cpu"
    assert rank_device("cuda:0", Ranks()) == "cuda:0"


def test_two_processes_streaming_their_own_people_end_with_identical_weights(small_cache, tmp_path):
    run_dir = tmp_path / "run"
    args = [*_args(small_cache, run_dir, 1), "--set", "data.preload=stream", "--set", "data.workers=1"]
    done = _run(args)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "faces: streaming" in log
    assert re.search(r"training images of 5 identities on this rank", log), log
    digest = re.findall(r"weights identical on all 2 ranks: sha256 ([0-9a-f]{64})", log)
    ck = load_checkpoint(run_dir / "last.pth")
    assert digest == [state_digest(ck["model"])]
    assert len(ck["train_identities"]) == 10 and ck["history"][0]["trained_triplets"] > 0
