"""Training under failure, for real: NaN/inf losses, a full disk or file-size limit, SIGKILL at random moments.

Every run is a real `facetool train` (library call or subprocess) on a small cache of LFW crops with the
test-cnn backbone; the failures are produced by real causes (a huge learning rate, an infinite margin, a
tmpfs that is full, RLIMIT_FSIZE, SIGKILL), never by mocks.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cache_helpers import write_people_cache

from facetool.config.train import TrainConfig
from facetool.models.checkpoint import load_checkpoint
from facetool.training.loop import NonFiniteError, train

SIZE = 48


@pytest.fixture(scope="module")
def cache(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 LFW people with 4+ images, 5 centre crops each."""
    path = tmp_path_factory.mktemp("train-reliability") / "faces.h5"
    names = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())[:300]
    people = [n for n in names if len(list((lfw_dir / n).glob("*.jpg"))) >= 4][:8]
    return write_people_cache(lfw_dir, path, people, 5, SIZE)


def settings(cache: Path, run_dir: Path, **changes) -> dict:
    return {
        "data_dir": str(cache), "checkpoint_dir": str(run_dir), "backbone": "test-cnn", "image_size": SIZE,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 3, "num_epochs": 2, "people_per_batch": 5,
        "images_per_person": 4, "learning_rate": 0.01, "device": "cpu", "threads": 1,
        "validation": {"fraction": 0.25, "num_pairs": 40}, **changes,
    }  # fmt: skip


OVERFLOW = {"name": "test-overflow", "offset": float("inf")}
"""The test suite's triplet loss plus infinity: every step's loss overflows."""


def cli_args(values: dict) -> list[str]:
    """`train --set key=value ...` for a settings dict (one level of nesting)."""
    args = ["train"]
    for key, value in values.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            name = f"{key}.{sub}" if sub else key
            text = json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
            args += ["--set", f"{name}={text}"]
    return args


def facetool(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facetool", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
        **kwargs,
    )


def finite_model(path: Path) -> bool:
    model = load_checkpoint(path)["model"]
    return all(bool(t.isfinite().all()) for t in model.values() if t.is_floating_point())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- non-finite losses ---------------------------------------------------------------------------------


def test_infinite_loss_stops_and_keeps_the_last_good_checkpoint(cache, tmp_path):
    run_dir = tmp_path / "run"
    first = facetool(*cli_args(settings(cache, run_dir, num_epochs=2, loss="test-overflow")))
    assert first.returncode == 0, first.stderr
    good = (run_dir / "last.pth").read_bytes()
    result = facetool(*cli_args(settings(cache, run_dir, num_epochs=4, loss=OVERFLOW)), "--resume", "auto")
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "non-finite loss" in lines[0] and "epoch 3" in lines[0]
    assert f"{run_dir / 'last.pth'} (epoch 2) is kept" in lines[0]
    assert (run_dir / "last.pth").read_bytes() == good
    assert load_checkpoint(run_dir / "last.pth")["epoch"] == 2 and finite_model(run_dir / "last.pth")
    assert [r["epoch"] for r in json.loads((run_dir / "history.json").read_text())] == [1, 2]


def test_diverging_run_stops_before_any_checkpoint(cache, tmp_path):
    config = TrainConfig.model_validate(
        settings(cache, tmp_path / "run", optimizer="sgd", learning_rate=1e30, validation={"fraction": 0.0})
    )
    with pytest.raises(NonFiniteError, match=r"epoch 1 round 1; no checkpoint was written yet"):
        train(config)
    assert not list((tmp_path / "run").glob("*.pth"))


def test_skip_counts_non_finite_batches_and_saves_only_finite_weights(cache, tmp_path):
    config = TrainConfig.model_validate(
        settings(
            cache,
            tmp_path / "run",
            optimizer="sgd",
            learning_rate=1e30,
            on_nonfinite="skip",
            validation={"fraction": 0.0},
        )
    )
    result = train(config)
    first, second = result.history
    assert first["train_loss"] is not None and first["nonfinite_batches"] >= 1
    assert second["nonfinite_batches"] == second["skipped_batches"] == second["batches"]
    assert second["train_loss"] is None
    assert first["trained_triplets"] == 10 * (first["batches"] - first["skipped_batches"])
    assert finite_model(result.last_checkpoint)
    history = (tmp_path / "run" / "history.json").read_text()
    assert "NaN" not in history and "Infinity" not in history
    assert "non-finite batch(es) skipped" in (tmp_path / "run" / "train.log").read_text()


def test_skip_with_every_loss_infinite_leaves_weights_untouched(cache, tmp_path):
    config = TrainConfig.model_validate(
        settings(cache, tmp_path / "run", loss=OVERFLOW, on_nonfinite="skip", num_epochs=1)
    )
    result = train(config)
    torch.manual_seed(config.seed)
    from facetool.models import build_backbone

    fresh = build_backbone("test-cnn", embedding_dim=16, dropout=config.dropout_prob, image_size=SIZE)
    saved = load_checkpoint(result.last_checkpoint)["model"]
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    assert result.history[0]["nonfinite_batches"] == 3 and result.history[0]["train_loss"] is None


# --- a full disk / a file-size limit while saving -----------------------------------------------------


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _check_write_failure(result: subprocess.CompletedProcess, run_dir: Path, reason: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{run_dir / 'last.pth'}: cannot write after epoch 2 ({reason})" in lines[0]
    assert "--resume auto" in lines[0]
    ck = load_checkpoint(run_dir / "last.pth")
    assert ck["epoch"] == 1 and finite_model(run_dir / "last.pth")
    assert not list(run_dir.glob(".*.tmp"))


def test_file_size_limit_while_saving_keeps_the_previous_checkpoint(cache, tmp_path):
    run_dir = tmp_path / "run"
    assert facetool(*cli_args(settings(cache, run_dir, num_epochs=1))).returncode == 0
    size = (run_dir / "last.pth").stat().st_size
    result = facetool(
        *cli_args(settings(cache, run_dir, num_epochs=2)),
        "--resume",
        "auto",
        preexec_fn=_limit_file_size(size // 2),
    )
    _check_write_failure(result, run_dir, "File too large")
    again = facetool(*cli_args(settings(cache, run_dir, num_epochs=2)), "--resume", "auto")
    assert again.returncode == 0, again.stderr
    assert [r["epoch"] for r in json.loads((run_dir / "history.json").read_text())] == [1, 2]


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({made.stderr.decode().strip()}); the RLIMIT_FSIZE test covers it"
        )
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(cache, small_tmpfs):
    run_dir = small_tmpfs / "run"
    assert facetool(*cli_args(settings(cache, run_dir, num_epochs=1))).returncode == 0
    with (small_tmpfs / "filler").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    os.truncate(small_tmpfs / "filler", (small_tmpfs / "filler").stat().st_size - 256 * 1024)
    result = facetool(*cli_args(settings(cache, run_dir, num_epochs=2)), "--resume", "auto")
    _check_write_failure(result, run_dir, "No space left on device")


# --- SIGKILL at random moments, then --resume auto ------------------------------------------------------


def _kill_when(proc: subprocess.Popen, ready, deadline: float) -> bool:
    """SIGKILL `proc` as soon as `ready()` holds; False if it ended or the deadline passed first."""
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    return False


def test_sigkill_at_random_moments_then_resume_finishes_with_intact_history(cache, tmp_path):
    """Kills at random times after start, and one while a checkpoint temp file is being written."""
    run_dir = tmp_path / "run"
    total = 8
    values = settings(cache, run_dir, num_epochs=total, embedding_dim=20000, validation={"fraction": 0.0})
    args = [*cli_args(values), "--resume", "auto"]
    rng = random.Random(int(os.environ.get("FACETOOL_TEST_SEED", time.time_ns() % 10_000)))
    history = run_dir / "history.json"

    def epochs_done() -> int:
        try:
            return len(json.loads(history.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return 0

    kills = []
    for moment in ("random", "writing", "random"):
        start_epochs = epochs_done()
        proc = subprocess.Popen(
            [sys.executable, "-m", "facetool", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        delay = rng.uniform(0.0, 2.0)
        began = time.monotonic()
        if moment == "writing":
            ready = lambda: bool(list(run_dir.glob(".last.pth.*.tmp")))  # noqa: E731
        else:
            ready = lambda b=began, d=delay, s=start_epochs: (  # noqa: E731
                epochs_done() > s and time.monotonic() - b > d
            )
        killed = _kill_when(proc, ready, time.monotonic() + 120)
        if not killed:
            proc.kill()
            proc.wait()
        kills.append((moment, killed, epochs_done()))
    assert ("writing", True) in [(moment, killed) for moment, killed, _ in kills], kills
    result = facetool(*args)
    assert result.returncode == 0, result.stderr
    records = json.loads(history.read_text())
    assert [r["epoch"] for r in records] == list(range(1, total + 1)), kills
    ck = load_checkpoint(run_dir / "last.pth")
    assert ck["epoch"] == total and ck["history"] == records
    assert not list(run_dir.glob(".*.tmp"))
    assert all(r["batches"] == 3 for r in records)


def test_sigkill_after_last_pth_before_its_copies_and_history_is_repaired_on_resume(cache, tmp_path):
    """The dangerous instant: last.pth of epoch N renamed into place, epoch_N.pth still a temp file and
    history.json still at N-1. After --resume auto the folder must be whole, even with no epoch left to run.

    The copy is a hard link, so the window lasts about a millisecond: on a loaded machine a kill can land just
    after it, and the race is run again in a fresh folder (a few tries)."""
    for attempt in range(6):
        run_dir = tmp_path / f"run-{attempt}"
        values = settings(
            cache, run_dir, num_epochs=30, epoch_size=1, embedding_dim=20000, checkpoint_every=1,
            validation={"fraction": 0.0},
        )  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "facetool", *cli_args(values)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready = lambda folder=run_dir: bool(list(folder.glob(".epoch_*.pth.*.tmp")))  # noqa: E731
        assert _kill_when(proc, ready, time.monotonic() + 180), "the run never wrote a periodic checkpoint"
        killed_at = load_checkpoint(run_dir / "last.pth")["epoch"]
        history_file = run_dir / "history.json"
        history = json.loads(history_file.read_text()) if history_file.is_file() else []
        if len(history) == killed_at - 1 and not (run_dir / f"epoch_{killed_at:04d}.pth").exists():
            break
    else:
        pytest.fail("in 6 tries no kill landed between last.pth and its copies")
    resumed = facetool(*cli_args({**values, "num_epochs": killed_at}), "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    records = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in records] == list(range(1, killed_at + 1))
    for epoch in range(1, killed_at + 1):
        assert load_checkpoint(run_dir / f"epoch_{epoch:04d}.pth")["epoch"] == epoch
    assert (run_dir / "best.pth").is_file() and not list(run_dir.glob(".*.tmp"))
    assert f"rewrote epoch_{killed_at:04d}.pth" in (run_dir / "train.log").read_text()
