"""One training epoch: seeded selection rounds, the steps on their triplets, and the events callbacks see.

Losses and non-finite flags stay on the device and are read once per round; the running loss a step event
carries is read after every step on a CPU (free there) and at most twice a second on an accelerator. Under DDP
every rank runs the same number of steps per round (the fewest any rank can fill), and the loss figures are
summed over ranks. An epoch ends in its EpochRecord, whose validation figures the loop fills in.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

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
        per_step = plan.per_step
        lr = self.scheduler.get_last_lr()[0]
        miner_name = settings.miner_for_epoch(epoch)
        miner = self.miners[miner_name]
        if plan.mines and (epoch == 0 or settings.miner_for_epoch(epoch - 1) != miner_name):
            self.log(f"epoch {epoch + 1}: triplets mined by {miner_name}", show=False)
        totals = torch.zeros(4, dtype=torch.float64, device=device)
        rounds = batches = skipped = pairs = selected = nonfinite = fed = 0
        running_loss: float | None = None
        start = last_read = time.perf_counter()
        upcoming = None
        while batches < settings.epoch_size:
            chosen = self.selection(miner, rng, generator, upcoming)
            upcoming = None
            mined = chosen.mined
            rounds += 1
            found = plan.items(chosen)
            if mined is not None:
                pairs += int(mined.num_pairs)
                selected += found
            self._round_stats(epoch, rounds, chosen)
            steps = min(plan.steps(found), settings.epoch_size - batches)
            steps = all_reduce_min(steps, device)
            if steps == 0:
                skipped += 1
                batches += 1
                self.log(f"epoch {epoch + 1} round {rounds}: no valid triplet, batch skipped", show=False)
                continue
            roles = plan.roles(chosen, rng, device)
            # drawn where the next round would draw it anyway, so the random stream is that of a run without
            # prefetching; never past the epoch's end, whose generator the next epoch replaces
            if batches + steps < settings.epoch_size:
                upcoming = self.selection.prefetch(rng)
            x, y = chosen.inputs, chosen.labels
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
                batches += 1
                fed += len(rows)
                now = time.perf_counter()
                if device.type == "cpu" or now - last_read >= PROGRESS_READ_S:
                    loss_sum, good_steps, *_ = (totals + sums).tolist()
                    running_loss = loss_sum / good_steps if good_steps else running_loss
                    last_read = now
                self.emit(
                    "on_step",
                    Step(
                        epoch=epoch + 1,
                        batch=batches,
                        global_step=epoch * settings.epoch_size + batches,
                        loss=running_loss,
                        images_per_s=fed / max(now - start, 1e-9),
                        lr=float(self.engine.optimizer.param_groups[0]["lr"]),
                    ),
                )
            totals += all_reduce_sum(sums)
            loss_sum, good_steps, _, _, bad = torch.cat([totals, flags.double().view(1)]).tolist()
            running_loss = loss_sum / good_steps if good_steps else None
            bad = round(bad)
            if bad:
                self.emit("on_nonfinite", NonFinite(epoch + 1, rounds, bad, settings.on_nonfinite))
                nonfinite += bad
                skipped += bad
                self.log(f"epoch {epoch + 1} round {rounds}: {bad} non-finite batch(es) skipped", show=False)
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
