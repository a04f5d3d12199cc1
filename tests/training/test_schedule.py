"""Learning-rate schedules and miner stages, against torch's own schedulers and hand-computed values, down to the
rate each real optimizer step of a short training run (and of a resumed one) runs at."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from train_helpers import StepRates

from facetool.config.base import load_config
from facetool.config.train import TrainConfig
from facetool.errors import ConfigError
from facetool.training.loop import train
from facetool.training.schedule import lr_factor, make_scheduler, miner_for_epoch, restore_scheduler


def lrs(config: TrainConfig, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    scheduler = make_scheduler(optimizer, config)
    seen = []
    for _ in range(epochs):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return seen


def torch_lrs(make: Callable[[torch.optim.Optimizer], Any], epochs: int, lr: float = 0.1) -> list[float]:
    """The per-epoch learning rates of a torch scheduler built by `make`, the reference for `lrs`."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    reference = make(optimizer)
    seen = []
    for _ in range(epochs):
        seen.append(reference.get_last_lr()[0])
        optimizer.step()
        reference.step()
    return seen


def test_step_schedule_equals_torch_steplr() -> None:
    config = TrainConfig(learning_rate=0.1, lr_step_size=3, lr_gamma=0.5)
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), 10)
    assert lrs(config, 10) == pytest.approx(expected)


def test_cosine_and_warm_up() -> None:
    cosine = TrainConfig(learning_rate=1.0, lr_schedule="cosine", num_epochs=4)
    assert lrs(cosine, 4) == pytest.approx([1.0, 0.5 + 0.5 * math.sqrt(0.5), 0.5, 0.5 - 0.5 * math.sqrt(0.5)])
    warm = TrainConfig(learning_rate=1.0, warmup_epochs=2, lr_step_size=4, lr_gamma=0.1)
    assert lrs(warm, 6) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.1, 0.1])
    assert lr_factor(cosine)(0) == 1.0


def test_cosine_restarts_equal_torch_sgdr() -> None:
    config = TrainConfig(learning_rate=0.1, lr_schedule="cosine", num_epochs=12, lr_cycles=3)
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=4), 12)
    assert lrs(config, 12) == pytest.approx(expected)
    assert lrs(config.model_copy(update={"lr_cycles": 1}), 12) != pytest.approx(expected)


def short_run(cache: Path, run_dir: Path, **changes: Any) -> TrainConfig:
    """Four epochs of two SGD steps of the tiny backbone, no validation."""
    settings = {
        "data_dir": cache, "checkpoint_dir": run_dir, "backbone": "test-cnn", "image_size": 48,
        "embedding_dim": 16, "batch_size": 30, "epoch_size": 2, "num_epochs": 4, "people_per_batch": 6,
        "images_per_person": 4, "miner": "random", "optimizer": "sgd", "learning_rate": 0.1, "device": "cpu",
        "threads": 1, "validation": {"fraction": 0.0}, **changes,
    }  # fmt: skip
    return TrainConfig.model_validate(settings)


def assert_steps_ran_at(rates: dict[int, list[float]], expected: list[float]) -> None:
    """Every optimizer step of epoch k (1-based) ran at expected[k - 1], and every epoch stepped."""
    assert sorted(rates) == list(range(1, len(expected) + 1))
    for epoch, rate in enumerate(expected, 1):
        assert rates[epoch] and rates[epoch] == pytest.approx([rate] * len(rates[epoch])), (epoch, rates)


def test_every_optimizer_step_runs_at_torch_steplr_rate(small_cache, tmp_path) -> None:
    seen = StepRates()
    train(short_run(small_cache, tmp_path / "run", lr_step_size=2, lr_gamma=0.5), callbacks=[seen])
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5), 4)
    assert_steps_ran_at(seen.rates, expected)


def test_resumed_run_steps_at_torch_cosine_rate_with_warm_up(small_cache, tmp_path) -> None:
    """Warm-up then cosine, interrupted after epoch 2 and resumed: every step of the four epochs runs at the
    rate of torch's LinearLR chained with CosineAnnealingLR."""
    config = short_run(small_cache, tmp_path / "run", lr_schedule="cosine", warmup_epochs=1)
    before, after = StepRates(stop_after=2), StepRates()
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[before])
    train(config, resume="auto", callbacks=[after])
    expected = torch_lrs(
        lambda opt: torch.optim.lr_scheduler.ChainedScheduler(
            [
                torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=1),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4),
            ]
        ),
        4,
    )
    assert expected[0] == pytest.approx(0.05) and expected[1] < 0.1
    assert sorted(before.rates) == [1, 2]
    assert_steps_ran_at({**before.rates, **after.rates}, expected)


def test_a_steplr_checkpoint_state_resumes_its_epoch() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    old = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    for _ in range(3):
        optimizer.step()
        old.step()
    state = old.state_dict()
    config = TrainConfig(learning_rate=0.1, lr_step_size=2, lr_gamma=0.1)
    fresh = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make_scheduler(fresh, config)
    restore_scheduler(scheduler, state)
    fresh.step()
    scheduler.step()
    assert scheduler.last_epoch == 4 and scheduler.get_last_lr()[0] == pytest.approx(0.001)


def test_miner_stages() -> None:
    config = TrainConfig(
        miner="random", miner_stages=[{"epoch": 2, "miner": "semihard"}, {"epoch": 5, "miner": "hard"}]
    )
    assert [miner_for_epoch(config, k) for k in range(6)] == [
        "random",
        "semihard",
        "semihard",
        "semihard",
        "hard",
        "hard",
    ]
    assert miner_for_epoch(TrainConfig(), 99) == "semihard"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'miner_stages = [{epoch = 5, miner = "hard"}, {epoch = 3, miner = "random"}]',
            "miner_stages: Value error, stage epochs must increase, got [5, 3]",
        ),
        (
            'miner_stages = [{epoch = 0, miner = "hard"}]',
            "miner_stages.0.epoch: Input should be greater than or equal to 1",
        ),
        ('miner_stages = [{epoch = 2, minor = "hard"}]', "miner_stages.0.minor: unknown key"),
        ('lr_schedule = "linear"', "lr_schedule: Input should be 'step' or 'cosine'"),
        ("warmup_epochs = -1", "warmup_epochs: Input should be greater than or equal to 0"),
        (
            "lr_cycles = 2\nnum_epochs = 10",
            "lr_cycles = 2 restarts the cosine schedule: set lr_schedule = cosine",
        ),
        (
            'lr_schedule = "cosine"\nlr_cycles = 3\nnum_epochs = 10',
            "lr_cycles = 3 does not divide num_epochs = 10 into whole cycles",
        ),
    ],
)
def test_bad_schedules_name_the_file_and_key(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "train.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(TrainConfig, path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)
