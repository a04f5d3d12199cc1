"""The FaceNet training loop, assembled from parts: the engine from the config, the training data, one selection
round (sample → augment → embed → mine), the epoch runner, validation, and the callbacks (train.log, the
checkpoint files, the config's plugins, the caller's, the display, the plots) that see every event.

Randomness: every epoch draws from generators seeded by (seed, epoch) (people sampling, augmentation,
dropout, triplet order), so a run resumed at an epoch boundary repeats an uninterrupted one exactly on the
CPU; checkpoints hold no RNG state of their own (facetool.training.state; a carried round's is in `carry`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facetool.config.train import TrainConfig
from facetool.data.augment import Augmenter
from facetool.data.sampling import PeopleSampler
from facetool.device import resolve_device, resolve_precision
from facetool.errors import ConfigError, FacetoolError, UsageError
from facetool.identities import identity_digests
from facetool.miners import get_miner
from facetool.models.backbone import same_backbone
from facetool.models.checkpoint import load_checkpoint, make_checkpoint
from facetool.training.allocator import keep_memory
from facetool.training.batch_plan import plan_for
from facetool.training.callbacks import Callback, Callbacks, NonFinite, callbacks_from_config
from facetool.training.default_callbacks import Checkpoints, EpochLog, Plots
from facetool.training.distributed import (
    Ranks,
    all_reduce_min,
    broadcast_buffers,
    check_ranks_agree,
    close_process_group,
    init_process_group,
    rank_device,
    ranks_from_env,
)
from facetool.training.engine import LAYOUT_NAMES, STEP_NAMES, engine_from_config
from facetool.training.epoch import EpochRunner, EpochSettings, NonFiniteError
from facetool.training.history import EpochRecord, best_epoch
from facetool.training.progress import TrainProgress
from facetool.training.recipe import check_plugins
from facetool.training.result import TrainResult
from facetool.training.resume import resolve_resume
from facetool.training.run_folder import (
    LAST,
    RunFolder,
    RunLog,
    absolute_paths,
    check_fresh_start,
)
from facetool.training.schedule import restore_scheduler
from facetool.training.selection import Selection
from facetool.training.sources import load_training_data, training_face_crop
from facetool.training.state import check_same_loss, check_training_fields, load_field
from facetool.training.validate import Validator

__all__ = ["NonFiniteError", "TrainResult", "Trainer", "train"]


class Trainer:
    """One run: data, engine, selection, validation set up once; `run` trains the remaining epochs.

    `folder` is the locked run folder (the caller opens it); without one, the trainer opens
    `config.checkpoint_dir` itself. `progress` is the display (shown the log lines too); `callbacks` are the
    caller's, run after train.log, the checkpoints and the config's plugins, before the display and the plots.
    """

    def __init__(
        self,
        config: TrainConfig,
        progress: TrainProgress | None = None,
        ranks: Ranks | None = None,
        folder: RunFolder | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.config = config
        self.ranks = ranks or Ranks()
        self.progress = progress if progress is not None and self.ranks.main else TrainProgress()
        self.plots = Plots()
        self.callbacks = Callbacks(
            [EpochLog(), Checkpoints(), *callbacks_from_config(config), *callbacks, self.progress, self.plots]
        )
        self.stop_reason: str | None = None
        self.failed = False
        self._started = False
        self.folder = folder or RunFolder(Path(config.checkpoint_dir), main=self.ranks.main)
        self.run_dir = self.folder.path
        self.log = RunLog(self.run_dir / "train.log", self.progress, enabled=self.ranks.main)
        self.device = resolve_device(rank_device(config.device, self.ranks))
        init_process_group(self.ranks, self.device)
        dtype = resolve_precision(config.precision, self.device)
        self.miner_generator = torch.Generator(device=self.device)
        chosen = [config.miner, *(stage.miner for stage in config.miner_stages)]
        self.miners = {
            miner.label: get_miner(miner.name, miner.settings, generator=self.miner_generator)
            for miner in chosen
        }
        self.backbone = {
            "name": config.backbone.name,
            **({"settings": config.backbone.settings} if config.backbone.settings else {}),
            "embedding_dim": config.embedding_dim,
            "dropout": config.dropout_prob,
            "image_size": config.image_size,
        }
        if config.data_dir is None or not Path(config.data_dir).is_file():
            raise FacetoolError(f"{config.data_dir}: face cache not found")
        if self.ranks.distributed:
            torch.distributed.barrier()
        self.face_crop = training_face_crop(Path(config.data_dir))
        notes: list[str] = []  # logged once the model is built, so a bad setting fails in one line
        data = load_training_data(Path(config.data_dir), config, self.device, notes.append, self.ranks)
        self.prepared = data
        self.data, self.val_set, self.dropped = data.train, data.val, data.dropped
        self.engine, self.scheduler = engine_from_config(
            config, self.device, dtype, self.ranks.world_size, num_classes=len(data.train_identities)
        )
        plan = self.engine.plan
        for note in [*notes, *plan.notes]:
            self.log(note)
        self.log(
            f"{len(self.data)} training images of {len(self.data.identities)} identities"
            + (" on this rank" if self.ranks.distributed else "")
            + (
                f", {len(self.val_set)} validation images of {self.val_set.num_identities} identities"
                if self.val_set is not None
                else ""
            )
            + f"; device {self.device}, {str(dtype).removeprefix('torch.')}, faces {data.choice.kind}, "
            f"{STEP_NAMES[plan.compile]}{LAYOUT_NAMES[plan.channels_last, plan.channels_last_inputs]}"
            f"{', fused optimizer' if plan.fused else ''}, {torch.get_num_threads()} CPU threads"
            + (f", {self.ranks.world_size} processes" if self.ranks.distributed else "")
        )
        self.plan = plan_for(self.engine.criterion.needs, config.batch_size)
        sampler = PeopleSampler(
            self.data.labels, config.people_per_batch, config.images_per_person, config.extra_negatives
        )
        augment = Augmenter(config.augment, config.image_size)
        self.selection = Selection(
            self.data, self.engine, sampler, augment, mine=self.plan.mines, classes=data.classes
        )
        self.log(self.selection.resize_once())
        self.validator = Validator(
            self.val_set,
            num_pairs=config.validation.num_pairs,
            seed=config.seed,
            margin=self.engine.criterion.margin,
            pairs_file=config.validation.pairs_file,
            pairs_cache=config.validation.pairs_data or config.data_dir,
        )
        self.epoch_runner = EpochRunner(
            EpochSettings.from_config(config),
            self.plan,
            self.engine,
            self.selection,
            self.scheduler,
            self.miners,
            self.miner_generator,
            self._emit,
            self.log,
            self.ranks,
        )
        self.history: list[EpochRecord] = []
        self.epoch = 0

    @property
    def score_key(self) -> str:
        return "val_loss" if self.validator.valset is not None else "train_loss"

    def close(self) -> None:
        """Release the face sources (a streamed one's worker processes stop)."""
        self.prepared.close()

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint: weights, loss parameters, optimizer, LR schedule, history, epochs.

        Every field is checked first; resuming from the run folder's own last.pth also rewrites the files a
        kill may have left behind it (history.json, the periodic and best copies).
        """
        ck = load_checkpoint(path)
        if not isinstance(ck["backbone"], dict) or not same_backbone(ck["backbone"], self.backbone):
            raise FacetoolError(
                f"{path}: checkpoint backbone {ck['backbone']} differs from the configured {self.backbone}"
            )
        epoch, records = check_training_fields(path, ck)
        check_same_loss(path, ck["config"], self.config.loss)
        load_field(path, "model", self.engine.model.load_state_dict, ck["model"])
        load_field(path, "loss", self.engine.criterion.load_state_dict, ck.get("loss") or {})
        load_field(path, "optimizer", self.engine.optimizer.load_state_dict, ck["optimizer"])
        load_field(path, "scheduler", lambda s: restore_scheduler(self.scheduler, s), ck["scheduler"])
        self.epoch_runner.restore_carry(path, ck.get("carry"))
        self.history, self.epoch = records, epoch
        if self.ranks.main and Path(path).resolve() == (self.run_dir / LAST).resolve():
            chosen_elsewhere = any(getattr(cb, "chooses_best", False) for cb in self.callbacks.items)
            best = None if chosen_elsewhere else best_epoch(records, self.score_key)
            repaired = self.folder.repair(epoch, records, best, self.config.checkpoint_every)
            if repaired:
                self.log(
                    f"rewrote {', '.join(repaired)} from {path} (a kill had stopped the run before them)"
                )
        self.log(f"resumed from {path} after epoch {self.epoch}")

    def request_stop(self, reason: str) -> None:
        """End the run after the current epoch (its callbacks and checkpoint done); the first reason is kept."""
        self.stop_reason = self.stop_reason or reason

    def _emit(self, event: str, payload: object) -> None:
        self.callbacks.fire(event, self, payload)
        if isinstance(payload, NonFinite) and payload.policy == "stop":
            self._stop_nonfinite(payload)

    def _stop_nonfinite(self, event: NonFinite) -> None:
        last = self.run_dir / LAST
        kept = f"{last} (epoch {self.epoch}) is kept" if last.is_file() else "no checkpoint was written yet"
        message = (
            f"training stopped: non-finite loss or gradient in {event.count} batch(es) of epoch {event.epoch} "
            f"round {event.round}; {kept}; lower learning_rate or set on_nonfinite=skip"
        )
        self.log(message, show=False)
        raise NonFiniteError(message)

    def train_identity_digests(self) -> list[str]:
        """Digests of the people the model trains on (held-out validation people and singletons excluded)."""
        return identity_digests(self.prepared.train_identities)

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint of the current state (with the mined triplets carried into the next epoch, if any)."""
        checkpoint = make_checkpoint(
            model=self.engine.model.state_dict(),
            backbone=self.backbone,
            config=self.config.model_dump(mode="json"),
            epoch=self.epoch,
            history=[r.to_dict() for r in self.history],
            optimizer=self.engine.optimizer.state_dict(),
            loss=self.engine.criterion.state_dict(),
            scheduler=self.scheduler.state_dict(),
            train_identities=self.train_identity_digests(),
            face_crop=self.face_crop,
        )
        return checkpoint | self.epoch_runner.carry_fields()

    def _check_finite_weights(self) -> None:
        """Never save a NaN model: non-finite weights or batch-norm statistics end the run here."""
        state = [t for t in self.engine.model.state_dict().values() if t.is_floating_point()]
        if state and not bool(torch.stack([t.isfinite().all() for t in state]).all()):
            last = self.run_dir / LAST
            kept = (
                f"{last} (epoch {self.epoch - 1}) is kept" if last.is_file() else "no checkpoint was written"
            )
            message = f"training stopped: the weights became non-finite in epoch {self.epoch}; {kept}"
            self.log(message, show=False)
            raise NonFiniteError(message)

    def _finite_or_none(self, value: float | None, name: str) -> float | None:
        if value is None or np.isfinite(value):
            return value
        self.log(f"epoch {self.epoch + 1}: {name} is {value}, recorded as none")
        return None

    def _validated(self, record: EpochRecord) -> EpochRecord:
        """The epoch's record with its validation figures, whose time also counts in the epoch's."""
        val_start = time.perf_counter()
        val = self.validator(self.engine) if self.validator.active and self.ranks.main else None
        if val is None:
            return replace(record, time_s=record.time_s + time.perf_counter() - val_start)
        return replace(
            record,
            val_loss=self._finite_or_none(val.loss, "validation loss"),
            val_accuracy=self._finite_or_none(val.accuracy, "validation accuracy"),
            val_accuracy_std=val.accuracy_std,
            time_s=record.time_s + time.perf_counter() - val_start,
        )

    def _stop_agreed(self) -> bool:
        """Whether any rank's callbacks asked to stop (every rank then stops after the same epoch)."""
        if not self.ranks.distributed:
            return self.stop_reason is not None
        stop = all_reduce_min(0 if self.stop_reason is not None else 1, self.device) == 0
        if stop and self.stop_reason is None:
            self.stop_reason = "another process asked to stop"
        return stop

    def start(self) -> None:
        """Fire `on_train_start` once (a callback that refuses the run fails here, before any epoch)."""
        if self._started:
            return
        self._started = True
        try:
            self.callbacks.fire("on_train_start", self)
        except BaseException:
            self.failed = True
            self.callbacks.fire("on_train_end", self)
            raise

    def run(self) -> None:
        """Train from the current epoch to num_epochs, or until a callback asks to stop; callbacks see it all."""
        config = self.config
        self.start()
        try:
            while self.epoch < config.num_epochs:
                trained = self.epoch_runner(self.epoch)
                broadcast_buffers(self.engine.model)
                record = self._validated(trained)
                self.epoch += 1
                self._check_finite_weights()
                self.history.append(record)
                self.callbacks.fire("on_epoch_end", self, record)
                if self._stop_agreed():
                    if self.epoch < config.num_epochs:
                        self.log(f"stopped after epoch {self.epoch}: {self.stop_reason}")
                    break
            model, loss = self.engine.model.state_dict(), self.engine.criterion.state_dict()
            for what, state in (("weights", model), ("loss state", loss)) if self.ranks.distributed else ():
                if state:
                    digest = check_ranks_agree(state)
                    self.log(
                        f"{what} identical on all {self.ranks.world_size} ranks: sha256 {digest}", show=False
                    )
        except BaseException:
            self.failed = True
            raise
        finally:
            self.callbacks.fire("on_train_end", self)


def train(
    config: TrainConfig,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: TrainProgress | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train an embedding with the FaceNet triplet protocol from a face cache.

    `resume` is a checkpoint path or "auto"; a run folder that already holds a run is refused unless the call
    resumes it or `overwrite` replaces it. A start that fails leaves no folder behind it created. `progress`
    is the display; `callbacks` (facetool.training.callbacks.Callback objects) see every event of the run and
    can stop it.
    """
    if config.data_dir is None:
        raise ConfigError("data_dir: not set (give --data or data_dir in the config file)")
    config = absolute_paths(config)
    if config.data_dir.is_dir():
        raise UsageError(
            f"{config.data_dir}: is an image folder; the trainer takes a face cache "
            "(`facetool train` detects a folder into one, or run `facetool detect`)"
        )
    if not config.data_dir.is_file():
        raise FacetoolError(f"{config.data_dir}: face cache not found")
    check_plugins(config)
    started = time.perf_counter()
    ranks = ranks_from_env()
    run_dir = Path(config.checkpoint_dir)
    resume_path = resolve_resume(resume, run_dir)
    if ranks.main:
        check_fresh_start(run_dir, resume=resume is not None, overwrite=overwrite)
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    folder = RunFolder(run_dir, main=ranks.main)
    opened: list[Trainer] = []
    try:
        try:
            if ranks.main:
                cleared = folder.clear_earlier_run() if overwrite else []
                stale = folder.remove_stale()
            trainer = Trainer(config, progress, ranks, folder, callbacks)
            opened.append(trainer)
            if ranks.main:
                for path in cleared:
                    trainer.log(f"--overwrite: removed {path.name} of the earlier run")
                for path in stale:
                    trainer.log(f"removed {path.name}, left by an interrupted write")
            if resume_path is not None:
                trainer.restore(resume_path)
            elif resume is not None:
                trainer.log(f"no checkpoint in {run_dir} to resume from; starting at epoch 1")
            if ranks.main:
                folder.write_config(config)
            trainer.start()
        except BaseException:
            folder.discard_if_new()
            raise
        with keep_memory():
            trainer.run()
    finally:
        for running in opened:
            running.close()
        folder.close()
        torch.set_num_threads(threads)
        close_process_group()
    best = run_dir / "best.pth"
    return TrainResult(
        run_dir=run_dir,
        epochs=trainer.epoch,
        history=[r.to_dict() for r in trainer.history],
        last_checkpoint=run_dir / LAST,
        best_checkpoint=best if best.is_file() else None,
        train_identities=len(trainer.prepared.train_identities),
        val_identities=trainer.val_set.num_identities if trainer.val_set is not None else 0,
        dropped_identities=trainer.dropped,
        duration_s=time.perf_counter() - started,
        resumed_from=resume_path,
        plots=trainer.plots.paths,
        stopped=trainer.stop_reason,
    )
