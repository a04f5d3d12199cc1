"""The one way to hook into training: a `Callback` base class with a no-op method per event, and its registry.

The loop fires, in order: `on_train_start` once, then for every selection round `on_round`, for every step
`on_step`, for every batch of non-finite values `on_nonfinite`, after every epoch (validated) `on_epoch_end`,
and `on_train_end` once, also when the run fails. The progress display, train.log, the checkpoint files and
the plots are callbacks of the default list; a config's `callbacks` table adds plugins of the
`facetool.callbacks` entry-point group, and `train(config, callbacks=[...])` adds Python objects.

A callback asks the run to stop with `trainer.request_stop(reason)`; the run ends after the current epoch,
once every callback has seen it and its checkpoint is written. Exceptions raised by a plugin's callback become a
PluginError naming it; KeyboardInterrupt and facetool's own errors pass through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from facetool.config.base import NoSettings, StrictModel, plugin_settings
from facetool.config.train import TrainConfig
from facetool.errors import PluginError
from facetool.plugins import CALLBACKS, call_plugin, plugin_class
from facetool.training.distributed import Ranks
from facetool.training.history import EpochRecord


class Trainer(Protocol):
    """What a callback may read of the run (facetool.training.loop.Trainer is one) and the one thing it may do.

    `epoch` counts finished epochs; `history` holds their records; `engine` has the model, optimizer and loss;
    `plan` is the batch plan the loss chose (`plan.mines`: whether rounds are mined for triplets);
    `validator.active` says whether epochs are validated; `log(text)` appends to train.log and shows it;
    `failed` is set once the run raised.
    """

    config: TrainConfig
    epoch: int
    history: list[EpochRecord]
    run_dir: Path
    ranks: Ranks
    engine: Any
    plan: Any
    validator: Any
    failed: bool

    def log(self, text: str, *, show: bool = True) -> None: ...

    def request_stop(self, reason: str) -> None: ...


@dataclass(frozen=True)
class Step:
    """One training step as a callback sees it.

    `epoch` and `batch` are 1-based (`batch` counts the epoch's batches, skipped ones included); `loss` is the
    epoch's running mean training loss (None before a finite one), read after every step on a CPU and at most
    twice a second on an accelerator; `lr` is the learning rate the optimizer used for the step.
    """

    epoch: int
    batch: int
    global_step: int
    loss: float | None
    images_per_s: float
    lr: float


@dataclass(frozen=True)
class NonFinite:
    """A round in which `count` batches had a NaN or infinite loss or gradient (1-based epoch and round)."""

    epoch: int
    round: int
    count: int
    policy: str


class Callback:
    """Hooks into a training run; every method is a no-op, so a subclass overrides what it needs.

    A plugin callback's settings are its pydantic `Settings` model, filled from the config's
    `[callbacks.NAME]` table (unknown keys refused).
    """

    name: ClassVar[str] = "callback"
    description: ClassVar[str] = ""
    Settings: ClassVar[type[StrictModel]] = NoSettings

    def __init__(self, settings: StrictModel | None = None) -> None:
        self.settings = settings if settings is not None else type(self).Settings()

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first epoch of this process (after a resume, `trainer.epoch` epochs are done)."""

    def on_round(self, trainer: Trainer, stats: dict[str, Any]) -> None:
        """A selection round was drawn and mined: people, images, pairs, triplets of the round."""

    def on_step(self, trainer: Trainer, step: Step) -> None:
        """A training step (an optimizer update) ran."""

    def on_nonfinite(self, trainer: Trainer, event: NonFinite) -> None:
        """Batches of a round had non-finite values; with policy `stop` the run ends after this call."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """An epoch ended: `record` holds its figures, validation included; `trainer.history` ends with it."""

    def on_train_end(self, trainer: Trainer) -> None:
        """The run ended, finished, stopped or failed (`trainer.failed` says which)."""


def callback_class(name: str) -> type[Callback]:
    """The Callback subclass registered as `name`; PluginError when the entry point gives anything else."""
    return plugin_class(CALLBACKS, name, Callback, "facetool.training.callbacks.Callback")


def create_callback(name: str, settings: Mapping[str, Any] | None = None) -> Callback:
    """The callback registered as `name`, its `[callbacks.NAME]` settings validated by its own model."""
    cls = callback_class(name)
    parsed = plugin_settings(cls.Settings, settings, key=f"callbacks.{name}", plugin=f"callback {name!r}")
    callback = call_plugin(f"callback {name!r} could not be created", cls, parsed)
    callback.name = name
    return callback


def callbacks_from_config(config: TrainConfig) -> list[Callback]:
    """The plugins the config's `callbacks` table names, each with its settings validated by its model."""
    return [create_callback(name, settings) for name, settings in config.callbacks.items()]


class Callbacks:
    """The run's callbacks in order, each event fired on all of them."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.items = list(callbacks)
        for callback in self.items:
            if not isinstance(callback, Callback):
                raise PluginError(f"{callback!r} is not a facetool.training.callbacks.Callback")

    def fire(self, event: str, *args: Any) -> None:
        """Call `event` on every callback; a failing one is a PluginError naming it and the event."""
        for callback in self.items:
            call_plugin(f"callback {callback.name!r} failed in {event}", getattr(callback, event), *args)
