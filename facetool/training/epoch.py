"""One training epoch: seeded selection rounds, the steps on their triplets, and the events callbacks see.

Losses and non-finite flags stay on the device and are read once per round; the running loss a step event
carries is read after every step on a CPU (free there) and at most twice a second on an accelerator. Under DDP
every rank runs the same number of steps per round (the fewest any rank can fill), and the loss figures are
summed over ranks. An epoch ends in its EpochRecord, whose validation figures the loop fills in. The mined
triplets its last round had left train first in the next epoch (`Carried`; single process).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facetool.config.train import TrainConfig
from facetool.errors import FacetoolError
from facetool.miners import Miner
from facetool.training.batch_plan import BatchPlan
from facetool.training.callbacks import NonFinite, Step
from facetool.training.distributed import Ranks, all_reduce_min, all_reduce_sum
from facetool.training.engine import Engine
from facetool.training.history import EpochRecord
from facetool.training.schedule import miner_for_epoch
from facetool.training.selection import Round, Selection
from facetool.training.state import epoch_seeds

PROGRESS_READ_S = 0.5


class NonFiniteError(FacetoolError):
    """Training met a NaN or infinite loss or gradient with on_nonfinite=stop; the last checkpoint is kept."""


@dataclass(frozen=True)
class EpochSettings:
    """The values of the training config an epoch runs by."""

    seed: int
    epoch_size: int
    on_nonfinite: str
    miner_for_epoch: Callable[[int], str]

    @classmethod
    def from_config(cls, config: TrainConfig) -> EpochSettings:
        return cls(
            config.seed, config.epoch_size, config.on_nonfinite, lambda epoch: miner_for_epoch(config, epoch)
        )


@dataclass
class _Tally:
    """What an epoch's steps add up to, as they run."""

    epoch: int
    lr: float
    start: float
    totals: torch.Tensor | None = None
    rounds: int = 0
    batches: int = 0
    skipped: int = 0
    pairs: int = 0
    selected: int = 0
    nonfinite: int = 0
    fed: int = 0
    running_loss: float | None = None
    last_read: float = 0.0

    def __post_init__(self) -> None:
        self.last_read = self.start


@dataclass
class Carried:
    """The triplets of an epoch's last mined round that its steps did not reach, trained first in the next epoch.

    `roles` are the rest of the round's step order (anchors, positives, negatives as row indices into the
    round's inputs); `inputs` and `labels` are None after a resume, rebuilt then from the round's sampled `rows`
    and the augmentation generator's state before the round (`augment_state`), which give the same inputs.
    """

    epoch: int
    inputs: torch.Tensor | None
    labels: torch.Tensor | None
    roles: tuple[torch.Tensor, ...]
    rows: np.ndarray
    augment_state: torch.Tensor

    @property
    def triplets(self) -> int:
        return len(self.roles[0])

    def steps(self, per_step: int) -> int:
        return -(-self.triplets // per_step)

    def state(self) -> dict[str, object]:
        """What a checkpoint keeps of it (no inputs: they are rebuilt)."""
        return {
            "epoch": self.epoch,
            "rows": torch.as_tensor(self.rows, dtype=torch.long),
            "augment_state": self.augment_state.cpu(),
            "roles": [role.cpu() for role in self.roles],
        }

    @classmethod
    def from_state(cls, path: Path, state: object, images: int, device: torch.device) -> Carried:
        """The carried triplets a checkpoint's `carry` field holds, checked against `images` training images."""

        def bad(problem: str) -> FacetoolError:
            return FacetoolError(
                f"{path}: checkpoint field 'carry' {problem}; training cannot resume from it"
            )

        if not isinstance(state, dict):
            raise bad("is not a table")
        epoch, rows, augment, roles = (state.get(k) for k in ("epoch", "rows", "augment_state", "roles"))
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise bad("has no whole-number epoch")
        if not _indices(rows, images):
            raise bad(f"has rows that are not indices of the {images} training images")
        if not isinstance(augment, torch.Tensor) or augment.dtype != torch.uint8:
            raise bad("has no augmentation generator state")
        if not isinstance(roles, list) or len(roles) != 3 or not all(_indices(r, len(rows)) for r in roles):
            raise bad("does not hold three lists of triplet rows into the round")
        if len({len(r) for r in roles}) != 1 or not len(roles[0]):
            raise bad("holds anchors, positives and negatives of different counts")
        return cls(epoch, None, None, tuple(r.to(device) for r in roles), rows.numpy(), augment)


def _indices(value: object, size: int) -> bool:
    """Whether `value` is a 1-D integer tensor of indices below `size`."""
    return (
        isinstance(value, torch.Tensor)
        and value.dtype == torch.long
        and value.dim() == 1
        and (not len(value) or (int(value.min()) >= 0 and int(value.max()) < size))
    )


class EpochRunner:
    """Runs epochs of selection rounds and steps with the run's engine, selection, miners and scheduler.

    `plan` (chosen once from the loss) says how steps take a round's rows; `emit(event, payload)` hands
    `on_round`, `on_step` and `on_nonfinite` events to the run's callbacks.
    """

    def __init__(
        self,
        settings: EpochSettings,
        plan: BatchPlan,
        engine: Engine,
        selection: Selection,
        scheduler: torch.optim.lr_scheduler.LambdaLR,
        miners: dict[str, Miner],
        miner_generator: torch.Generator,
        emit: Callable[[str, object], None],
        log: Callable[..., None],
        ranks: Ranks,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.engine = engine
        self.selection = selection
        self.scheduler = scheduler
        self.miners = miners
        self.miner_generator = miner_generator
        self.emit = emit
        self.log = log
        self.ranks = ranks
        self.carry: Carried | None = None

    def carry_fields(self) -> dict[str, object]:
        """The checkpoint's `carry` field, when triplets are carried into the next epoch."""
        return {"carry": self.carry.state()} if self.carry is not None else {}

    def restore_carry(self, path: Path, state: object) -> None:
        """Take up the carried triplets of a checkpoint's `carry` field (none: nothing was carried)."""
        if state is not None and self.plan.mines and not self.ranks.distributed:
            self.carry = Carried.from_state(path, state, len(self.selection.data), self.engine.device)

    def _train_carried(self, tally: _Tally, rng: np.random.Generator) -> np.ndarray | None:
        """Train the triplets carried from the last epoch first; the next round's rows if it drew them."""
        carried, self.carry = self.carry, None
        epoch_size = self.settings.epoch_size
        steps = min(carried.steps(self.plan.per_step), epoch_size)
        self.log(
            f"epoch {tally.epoch + 1}: {steps} step(s) on the {carried.triplets} triplets left of epoch "
            f"{carried.epoch}'s last round",
            show=False,
        )
        # the epoch stream's first draw, where the first round would draw it without the carried steps
        upcoming = self.selection.prefetch(rng) if steps < epoch_size else None
        inputs, labels = carried.inputs, carried.labels
        if inputs is None:
            inputs, labels = self.selection.rebuild(carried.rows, carried.augment_state)
        self._train(tally, inputs, labels, carried.roles, steps)
        self._keep_rest(carried.epoch, carried, inputs, labels, steps)
        return upcoming

    def _keep_rest(
        self, epoch: int, rest: Carried, inputs: torch.Tensor, labels: torch.Tensor | None, steps: int
    ) -> None:
        """Keep the triplets of `rest` after its first `steps` steps for the next epoch, if any are left."""
        per_step = self.plan.per_step
        roles = tuple(role[steps * per_step :] for role in rest.roles)
        if len(roles[0]):
            self.carry = Carried(epoch, inputs, labels, roles, rest.rows, rest.augment_state)

    def _train(
        self, tally: _Tally, x: torch.Tensor, y: torch.Tensor | None, roles: tuple, steps: int
    ) -> None:
        """`steps` steps on the rows of `roles` in order, counted in `tally`; non-finite steps are reported."""
        settings, device, per_step = self.settings, self.engine.device, self.plan.per_step
        epoch = tally.epoch
        sums = torch.zeros(4, dtype=torch.float64, device=device)
        flags = torch.zeros((), device=device)
        for lo in range(0, steps * per_step, per_step):
            rows = torch.cat([role[lo : lo + per_step] for role in roles])
            loss, flag = self.engine.step(x[rows], y[rows])
            good = 1.0 - flag.double()
            kept = torch.where(flag > 0, 0.0, loss.double())
            active = self.engine.active.double() if self.engine.active is not None else kept * 0
            sums += torch.stack([kept, good, good * len(rows), good * active])
            flags += flag
            tally.batches += 1
            tally.fed += len(rows)
            now = time.perf_counter()
            if device.type == "cpu" or now - tally.last_read >= PROGRESS_READ_S:
                loss_sum, good_steps, *_ = (tally.totals + sums).tolist()
                tally.running_loss = loss_sum / good_steps if good_steps else tally.running_loss
                tally.last_read = now
            self.emit(
                "on_step",
                Step(
                    epoch=epoch + 1,
                    batch=tally.batches,
                    global_step=epoch * settings.epoch_size + tally.batches,
                    loss=tally.running_loss,
                    images_per_s=tally.fed / max(now - tally.start, 1e-9),
                    lr=float(self.engine.optimizer.param_groups[0]["lr"]),
                ),
            )
        tally.totals += all_reduce_sum(sums)
        loss_sum, good_steps, _, _, bad = torch.cat([tally.totals, flags.double().view(1)]).tolist()
        tally.running_loss = loss_sum / good_steps if good_steps else None
        bad = round(bad)
        if bad:
            self.emit("on_nonfinite", NonFinite(epoch + 1, tally.rounds, bad, settings.on_nonfinite))
            tally.nonfinite += bad
            tally.skipped += bad
            self.log(
                f"epoch {epoch + 1} round {tally.rounds}: {bad} non-finite batch(es) skipped", show=False
            )

    def _round_stats(self, epoch: int, rounds: int, selected: Round) -> None:
        mined = selected.mined
        pairs, found = (int(mined.num_pairs), int(mined.num_triplets)) if mined is not None else (0, 0)
        stats = {
            "epoch": epoch + 1,
            "round": rounds,
            "people": self.selection.people_per_round,
            "images": selected.images,
            "anchor_positive_pairs": pairs,
            "triplets": found,
            "valid_negative_fraction": found / max(pairs, 1),
        }
        self.log(
            f"epoch {epoch + 1} round {rounds}: {selected.images} images of {stats['people']} people"
            f"{self.plan.describe(selected)}",
            show=False,
        )
        self.emit("on_round", stats)

    def __call__(self, epoch: int) -> EpochRecord:
        """Train epoch `epoch` (0-based); its record has no validation figures yet (the loop adds them)."""
        settings, plan = self.settings, self.plan
        device = self.engine.device
        rng, (torch_seed, aug_seed, miner_seed) = epoch_seeds(settings.seed + self.ranks.rank, epoch)
        torch.manual_seed(torch_seed)
        generator = torch.Generator(device=device).manual_seed(aug_seed)
        self.miner_generator.manual_seed(miner_seed)
        miner_name = settings.miner_for_epoch(epoch)
        miner = self.miners[miner_name]
        if plan.mines and (epoch == 0 or settings.miner_for_epoch(epoch - 1) != miner_name):
            self.log(f"epoch {epoch + 1}: triplets mined by {miner_name}", show=False)
        tally = _Tally(epoch, self.scheduler.get_last_lr()[0], time.perf_counter())
        tally.totals = torch.zeros(4, dtype=torch.float64, device=device)
        upcoming = None
        if self.carry is not None:
            upcoming = self._train_carried(tally, rng)
        while tally.batches < settings.epoch_size:
            chosen = self.selection(miner, rng, generator, upcoming)
            upcoming = None
            mined = chosen.mined
            tally.rounds += 1
            found = plan.items(chosen)
            if mined is not None:
                tally.pairs += int(mined.num_pairs)
                tally.selected += found
            self._round_stats(epoch, tally.rounds, chosen)
            steps = min(plan.steps(found), settings.epoch_size - tally.batches)
            steps = all_reduce_min(steps, device)
            if steps == 0:
                tally.skipped += 1
                tally.batches += 1
                self.log(
                    f"epoch {epoch + 1} round {tally.rounds}: no valid triplet, batch skipped", show=False
                )
                continue
            roles = plan.roles(chosen, rng, device)
            # drawn where the next round would draw it anyway, so the random stream is that of a run without
            # prefetching; never past the epoch's end, whose generator the next epoch replaces
            if tally.batches + steps < settings.epoch_size:
                upcoming = self.selection.prefetch(rng)
            self._train(tally, chosen.inputs, chosen.labels, roles, steps)
            if plan.mines and not self.ranks.distributed and chosen.rows is not None:
                rest = Carried(epoch + 1, None, None, roles, chosen.rows, chosen.augment_state)
                self._keep_rest(epoch + 1, rest, chosen.inputs, chosen.labels, steps)
        totals, batches, rounds = tally.totals, tally.batches, tally.rounds
        skipped, nonfinite, pairs, selected = tally.skipped, tally.nonfinite, tally.pairs, tally.selected
        start, lr = tally.start, tally.lr
        elapsed = time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            self.scheduler.step()
        loss_sum, good_steps, images, active = totals.tolist()
        images, active = round(images), round(active)
        trained = plan.trained_triplets(images)
        return EpochRecord(
            epoch=epoch + 1,
            val_loss=None,
            val_accuracy=None,
            val_accuracy_std=None,
            train_loss=loss_sum / good_steps if good_steps else None,
            learning_rate=lr,
            miner=plan.miner_name(miner_name),
            rounds=rounds,
            batches=batches,
            skipped_batches=skipped,
            nonfinite_batches=nonfinite,
            anchor_positive_pairs=pairs,
            triplets=selected,
            trained_triplets=trained,
            valid_negative_fraction=selected / max(pairs, 1),
            images=images,
            images_per_s=images / max(elapsed, 1e-9),
            time_s=elapsed,
            active_triplets=active,
            active_fraction=active / trained if trained else None,
        )
