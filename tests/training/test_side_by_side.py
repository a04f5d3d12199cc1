"""Training runs side by side in spawned processes: the same models as alone, and a failure stops them all."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from process_helpers import children, is_running

from facetool.config.train import TrainConfig
from facetool.errors import FacetoolError
from facetool.models.checkpoint import load_checkpoint
from facetool.training.loop import train
from facetool.training.side_by_side import scheduled_seconds, train_side_by_side


def config(cache: Path, run_dir: Path, **changes: object) -> TrainConfig:
    settings = {
        "data_dir": cache, "checkpoint_dir": run_dir, "backbone": "test-cnn", "image_size": 48,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 3, "num_epochs": 2, "people_per_batch": 6,
        "images_per_person": 4, "learning_rate": 0.01, "device": "cpu", "threads": 1,
        "validation": {"fraction": 0.0},
        **changes,
    }  # fmt: skip
    return TrainConfig.model_validate(settings)


def test_members_are_the_models_each_config_trains_alone(small_cache, tmp_path):
    configs = [config(small_cache, tmp_path / f"run{seed}", seed=seed) for seed in (0, 1)]
    results = train_side_by_side(configs)
    assert [r.run_dir for r in results] == [tmp_path / "run0", tmp_path / "run1"]
    assert all(r.epochs == 2 for r in results)
    alone = train(config(small_cache, tmp_path / "alone", seed=1))
    side = load_checkpoint(results[1].last_checkpoint)["model"]
    single = load_checkpoint(alone.last_checkpoint)["model"]
    assert all(torch.equal(side[k], single[k]) for k in single)
    other = load_checkpoint(results[0].last_checkpoint)["model"]
    assert not torch.equal(other["head.weight"], side["head.weight"])
    with pytest.raises(ValueError, match="a run folder each"):
        train_side_by_side([configs[0], configs[0]])


def test_a_failing_member_stops_the_others_with_its_own_error(small_cache, tmp_path):
    long = config(small_cache, tmp_path / "long", num_epochs=200, epoch_size=20)
    broken = config(tmp_path / "missing.h5", tmp_path / "broken")
    with pytest.raises(FacetoolError, match=r"missing\.h5: face cache not found"):
        train_side_by_side([long, broken])
    history = tmp_path / "long" / "history.json"
    done = len(json.loads(history.read_text())) if history.exists() else 0
    assert done < 200, "the long run was stopped, not waited for"


def wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_members_end_with_their_parent_and_a_rerun_resumes_them(small_cache, tmp_path, how):
    configs = [config(small_cache, tmp_path / f"run{seed}", seed=seed, num_epochs=1000) for seed in (0, 1)]
    listed = tmp_path / "configs.jsonl"
    listed.write_text("\n".join(c.model_dump_json() for c in configs))
    script = tmp_path / "side.py"  # Ctrl-C handled as the CLI does, even where a shell started us ignoring it
    script.write_text(
        "import signal, sys\nfrom pathlib import Path\nfrom facetool.config.train import TrainConfig\n"
        "from facetool.training.side_by_side import train_side_by_side\n"
        "if __name__ == '__main__':\n"
        "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "    lines = Path(sys.argv[1]).read_text().splitlines()\n"
        "    train_side_by_side([TrainConfig.model_validate_json(line) for line in lines])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(listed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # history.json is the last file an epoch writes: a signal before it would leave a first epoch unrecorded
    wait_until(lambda: all((c.checkpoint_dir / "history.json").is_file() for c in configs))
    members = children(proc.pid)
    assert len(members) >= 2
    proc.send_signal(how)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    wait_until(lambda: not any(is_running(pid) for pid in members), timeout=30)
    done = [len(json.loads((c.checkpoint_dir / "history.json").read_text())) for c in configs]
    assert all(0 < n < 1000 for n in done), "the members stopped with their parent"

    more = max(done) + 1
    results = train_side_by_side([c.model_copy(update={"num_epochs": more}) for c in configs])
    assert [r.epochs for r in results] == [more, more]
    assert all(r.resumed_from is not None for r in results)


def test_jobs_limit_how_many_members_train_at_once(small_cache, tmp_path):
    configs = [config(small_cache, tmp_path / f"run{seed}", seed=seed) for seed in (0, 1, 2)]
    results = train_side_by_side(configs, jobs=1)
    assert [r.epochs for r in results] == [2, 2, 2]
    for before, after in itertools.pairwise(configs):
        finished = (before.checkpoint_dir / "history.json").stat().st_mtime_ns
        started = (after.checkpoint_dir / "config.toml").stat().st_mtime_ns
        assert started >= finished, f"{after.checkpoint_dir} started before {before.checkpoint_dir} ended"
    alone = train(config(small_cache, tmp_path / "alone", seed=2))
    queued = load_checkpoint(results[2].last_checkpoint)["model"]
    single = load_checkpoint(alone.last_checkpoint)["model"]
    assert all(torch.equal(queued[k], single[k]) for k in single)
    with pytest.raises(ValueError, match="jobs must be 0"):
        train_side_by_side(configs, jobs=-1)


def test_a_failure_stops_members_waiting_for_a_slot_from_starting(small_cache, tmp_path):
    broken = config(tmp_path / "missing.h5", tmp_path / "broken")
    waiting = config(small_cache, tmp_path / "waiting")
    with pytest.raises(FacetoolError, match=r"missing\.h5: face cache not found"):
        train_side_by_side([broken, waiting], jobs=1)
    assert not (tmp_path / "waiting").exists()


def simulated_wall_time(seconds: list[float], jobs: int) -> float:
    """The schedule replayed tick by tick: each run starts in order once fewer than `jobs` are running."""
    slots = jobs or len(seconds)
    remaining = [round(s * 10) for s in seconds]
    running: list[int] = []
    queued = list(range(len(seconds)))
    ticks = 0
    while queued or running:
        while queued and len(running) < slots:
            running.append(queued.pop(0))
        ticks += 1
        for i in running:
            remaining[i] -= 1
        running = [i for i in running if remaining[i] > 0]
    return ticks / 10


@given(
    st.lists(st.integers(1, 60).map(lambda t: t / 10), min_size=1, max_size=8),
    st.integers(0, 9),
)
def test_scheduled_seconds_replays_the_schedule(seconds, jobs):
    assert scheduled_seconds(seconds, jobs) == pytest.approx(simulated_wall_time(seconds, jobs))
