"""Learning-rate schedules by name, and which miner mines in which epoch.

A schedule gives the factor of `learning_rate` for each 0-based epoch; a linear warm-up over `warmup_epochs`
multiplies any of them. The scheduler steps once per epoch, so a resumed run continues the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from facetool.config.train import TrainConfig

Schedule = Callable[[TrainConfig, int], float]


def step_factor(config: TrainConfig, epoch: int) -> float:
    """StepLR: `lr_gamma` to the power of the drops made so far (one every `lr_step_size` epochs)."""
    return config.lr_gamma ** (epoch // config.lr_step_size)


def cosine_factor(config: TrainConfig, epoch: int) -> float:
    """Half a cosine from 1 at the first epoch down towards 0 at `num_epochs`, or `lr_cycles` of them in a
    row, each restarting at 1 (SGDR's warm restarts, Loshchilov and Hutter 2017)."""
    cycle = config.num_epochs // config.lr_cycles
    return 0.5 * (1.0 + math.cos(math.pi * (epoch % cycle) / cycle))


SCHEDULES: dict[str, Schedule] = {"step": step_factor, "cosine": cosine_factor}


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The factor of the initial learning rate in each epoch: the schedule times the warm-up."""
    schedule = SCHEDULES[config.lr_schedule]
    warmup = config.warmup_epochs

    def factor(epoch: int) -> float:
        warm = min(1.0, (epoch + 1) / (warmup + 1))
        return warm * schedule(config, epoch)

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch LambdaLR following the configured schedule and warm-up."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))


def restore_scheduler(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict[str, Any]) -> None:
    """Load a scheduler state, including one saved by a StepLR (checkpoints of earlier versions)."""
    groups = len(scheduler.optimizer.param_groups)
    scheduler.load_state_dict({**state, "lr_lambdas": state.get("lr_lambdas", [None] * groups)})


def miner_for_epoch(config: TrainConfig, epoch: int) -> str:
    """The miner of 0-based `epoch` (its label: the name, with its settings if any): `miner`, or the last of
    `miner_stages` whose first epoch has come."""
    chosen = config.miner
    for stage in config.miner_stages:
        if epoch + 1 >= stage.epoch:
            chosen = stage.miner
    return chosen.label
