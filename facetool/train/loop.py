"""The FaceNet training loop: sample people, embed them, mine triplets, train on them; epochs, checkpoints.

Randomness: every epoch draws from generators seeded by (seed, epoch) (people sampling, augmentation,
dropout, triplet order), so a run resumed at an epoch boundary repeats an uninterrupted one exactly on the
CPU. The RNG states are also stored in each checkpoint and restored on resume.
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facetool.config.base import dump_toml
from facetool.config.train import TrainConfig
from facetool.data.augment import Augmenter
from facetool.data.faceset import drop_small_identities, load_faceset, split_identities
from facetool.data.preload import gather, place_faceset
from facetool.data.sampling import PeopleSampler
from facetool.device import resolve_device, resolve_precision
from facetool.errors import ConfigError, FacetoolError
from facetool.files import atomic_write, atomic_write_text, make_dir, remove_stale_temp_files
from facetool.miners import get_miner
from facetool.models import build_backbone
from facetool.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from facetool.train.distributed import (
    Ranks,
    all_reduce_min,
    all_reduce_sum,
    broadcast_buffers,
    check_ranks_agree,
    close_process_group,
    init_process_group,
    rank_device,
    ranks_from_env,
)
from facetool.train.engine import OPTIMIZERS, Engine, plan_engine
from facetool.train.history import EpochRecord, save_history
from facetool.train.progress import TrainProgress
from facetool.train.resume import resolve_resume
from facetool.train.schedule import make_scheduler, miner_for_epoch, restore_scheduler
from facetool.train.validate import Validator

CACHE_NAME = "faces.h5"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left behind and how it went."""

    run_dir: Path
    epochs: int
    history: list[dict[str, Any]]
    last_checkpoint: Path
    best_checkpoint: Path | None
    train_identities: int
    val_identities: int
    dropped_identities: int
    duration_s: float
    resumed_from: Path | None = None
    plots: list[Path] = field(default_factory=list)


class NonFiniteError(FacetoolError):
    """Training met a NaN or infinite loss or gradient with on_nonfinite=stop; the last checkpoint is kept."""


class RunLog:
    """Appends timestamped lines to train.log and shows them through the progress reporter (rank 0 only)."""

    def __init__(self, path: Path, progress: TrainProgress, enabled: bool = True) -> None:
        self.path = path
        self.progress = progress
        self.enabled = enabled

    def __call__(self, text: str, *, show: bool = True) -> None:
        if not self.enabled:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")
        if show:
            self.progress.message(text)


def _faces_cache(config: TrainConfig, run_dir: Path, log: RunLog, detect: bool = True) -> Path:
    data = config.data_dir
    if data is None:
        raise ConfigError("data_dir: not set (give --data_dir or data_dir in the config file)")
    if data.is_dir() and not detect:
        return run_dir / CACHE_NAME
    if data.is_dir():
        from facetool.config.detect import DetectConfig
        from facetool.detect.runner import detect_directory

        cache = run_dir / CACHE_NAME
        log(f"detecting faces in {data} into {cache}")
        detect_directory(data, cache, DetectConfig(image_size=config.image_size))
        return cache
    if not data.is_file():
        raise FacetoolError(f"{data}: data_dir not found (expected a face cache or an image directory)")
    return data


def _epoch_seeds(seed: int, epoch: int) -> tuple[np.random.Generator, list[int]]:
    """The epoch's sampling generator and three torch seeds (dropout, augmentation, miner)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(3, dtype=np.uint64)
    return np.random.default_rng([seed, epoch, 1]), [int(s >> 1) for s in state]


def _rng_state() -> dict[str, Any]:
    legacy = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [legacy[0], torch.from_numpy(legacy[1].astype(np.int64)), *legacy[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """One run: data, engine, sampler and validation set up once; `run` trains the remaining epochs."""

    def __init__(self, config: TrainConfig, progress: TrainProgress, ranks: Ranks | None = None) -> None:
        self.config = config
        self.ranks = ranks or Ranks()
        self.progress = progress if self.ranks.main else TrainProgress()
        self.run_dir = Path(config.checkpoint_dir)
        make_dir(self.run_dir, "run folder")
        self.log = RunLog(self.run_dir / "train.log", self.progress, enabled=self.ranks.main)
        self.device = resolve_device(rank_device(config.device, self.ranks))
        init_process_group(self.ranks, self.device)
        dtype = resolve_precision(config.precision, self.device)
        self.miner_generator = torch.Generator(device=self.device)
        names = [config.miner, *(stage.miner for stage in config.miner_stages)]
        self.miners = {name: get_miner(name, generator=self.miner_generator) for name in names}

        torch.manual_seed(config.seed)
        self.backbone = {
            "name": config.backbone,
            "embedding_dim": config.embedding_dim,
            "dropout": config.dropout_prob,
            "image_size": config.image_size,
        }
        model = build_backbone(
            config.backbone,
            embedding_dim=config.embedding_dim,
            dropout=config.dropout_prob,
            pretrained=config.pretrained,
            image_size=config.image_size,
        ).to(self.device)
        plan = plan_engine(config.engine, self.device, config.optimizer, self.ranks.world_size)
        optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config, plan.fused)
        self.scheduler = make_scheduler(optimizer, config)
        train_model = None
        if self.ranks.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(model, device_ids=ids)
        self.engine = Engine(
            model,
            optimizer,
            self.device,
            dtype,
            config.alpha,
            config.image_size,
            config.embed_batch_size,
            plan=plan,
            train_model=train_model,
            guard_buffers=config.on_nonfinite == "skip",
            batch_size=config.batch_size,
        )
        for note in plan.notes:
            self.log(note)

        cache_path = _faces_cache(config, self.run_dir, self.log, detect=self.ranks.main)
        if self.ranks.distributed:
            torch.distributed.barrier()
        faces, self.dropped = drop_small_identities(load_faceset(cache_path))
        if self.dropped:
            self.log(f"left out {self.dropped} identities with fewer than 2 images")
        if faces.num_identities < 2:
            raise FacetoolError(
                f"{cache_path}: training needs at least 2 identities with 2 or more images, "
                f"found {faces.num_identities}"
            )
        train_set, val_set = split_identities(faces, config.validation.fraction, config.seed)
        self.train_set, where = place_faceset(train_set, self.device, config.data.preload)
        self.val_set = val_set.to(self.device) if val_set is not None and where == "device" else val_set
        self.log(
            f"{len(self.train_set)} training images of {self.train_set.num_identities} identities"
            + (
                f", {len(self.val_set)} validation images of {self.val_set.num_identities} identities"
                if self.val_set is not None
                else ""
            )
            + f"; device {self.device}, {str(dtype).removeprefix('torch.')}, faces in {where} memory, "
            f"step {plan.compile}{', channels_last' if plan.channels_last else ''}"
            f"{', fused optimizer' if plan.fused else ''}, {torch.get_num_threads()} CPU threads"
            + (f", {self.ranks.world_size} processes" if self.ranks.distributed else "")
        )
        self.sampler = PeopleSampler(
            self.train_set.labels.cpu().numpy(), config.people_per_batch, config.images_per_person
        )
        self.augment = Augmenter(config.augment, config.image_size)
        pairs_cache = config.validation.pairs_data or (
            self.run_dir / CACHE_NAME if config.data_dir and config.data_dir.is_dir() else config.data_dir
        )
        self.validator = Validator(
            self.val_set,
            num_pairs=config.validation.num_pairs,
            seed=config.seed,
            margin=config.alpha,
            pairs_file=config.validation.pairs_file,
            pairs_cache=pairs_cache,
        )

        self.history: list[dict[str, Any]] = []
        self.epoch = 0

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint: weights, optimizer, LR schedule, history, epoch count, RNG states."""
        ck = load_checkpoint(path)
        if ck["backbone"] != self.backbone:
            raise FacetoolError(
                f"{path}: checkpoint backbone {ck['backbone']} differs from the configured {self.backbone}"
            )
        self.engine.model.load_state_dict(ck["model"])
        if ck.get("optimizer") is None or ck.get("scheduler") is None:
            raise FacetoolError(
                f"{path}: checkpoint has no optimizer state, so training cannot resume from it"
            )
        self.engine.optimizer.load_state_dict(ck["optimizer"])
        restore_scheduler(self.scheduler, ck["scheduler"])
        self.history = list(ck["history"])
        self.epoch = int(ck["epoch"])
        _restore_rng(ck.get("rng"))
        self.log(f"resumed from {path} after epoch {self.epoch}")

    def _best_score(self) -> float | None:
        key = "val_loss" if self.validator.valset is not None else "train_loss"
        scores = [r[key] for r in self.history if r.get(key) is not None]
        return min(scores) if scores else None

    def _round_stats(self, epoch: int, rounds: int, n_images: int, pairs: int, found: int) -> None:
        stats = {
            "epoch": epoch + 1,
            "round": rounds,
            "people": self.sampler.people_per_batch,
            "images": n_images,
            "anchor_positive_pairs": pairs,
            "triplets": found,
            "valid_negative_fraction": found / max(pairs, 1),
        }
        self.log(
            f"epoch {epoch + 1} round {rounds}: {n_images} images of {stats['people']} people, "
            f"{pairs} anchor-positive pairs, {found} triplets "
            f"({stats['valid_negative_fraction']:.1%} with a valid negative)",
            show=False,
        )
        self.progress.round(stats)

    def _stop_nonfinite(self, epoch: int, rounds: int, count: int) -> None:
        last = self.run_dir / "last.pth"
        kept = f"{last} (epoch {self.epoch}) is kept" if last.is_file() else "no checkpoint was written yet"
        message = (
            f"training stopped: non-finite loss or gradient in {count} batch(es) of epoch {epoch + 1} "
            f"round {rounds}; {kept}; lower learning_rate or set on_nonfinite=skip"
        )
        self.log(message, show=False)
        raise NonFiniteError(message)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of selection rounds; losses and non-finite flags stay on the device, read once per round.

        Under DDP every rank runs the same number of steps per round (the fewest any rank can fill), and
        the loss figures are summed over ranks.
        """
        config = self.config
        rank = self.ranks.rank
        rng, (torch_seed, aug_seed, miner_seed) = _epoch_seeds(config.seed + rank, epoch)
        torch.manual_seed(torch_seed)
        generator = torch.Generator(device=self.device).manual_seed(aug_seed)
        self.miner_generator.manual_seed(miner_seed)
        per_step = config.batch_size // 3
        lr = self.scheduler.get_last_lr()[0]
        miner_name = miner_for_epoch(config, epoch)
        miner = self.miners[miner_name]
        if epoch == 0 or miner_for_epoch(config, epoch - 1) != miner_name:
            self.log(f"epoch {epoch + 1}: triplets mined by {miner_name}", show=False)
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        rounds = batches = skipped = pairs = selected = nonfinite = fed = 0
        running_loss: float | None = None
        start = time.perf_counter()
        while batches < config.epoch_size:
            indices = torch.as_tensor(self.sampler.sample(rng))
            x = self.augment(gather(self.train_set, indices, self.device), generator)
            labels = self.train_set.labels.index_select(0, indices.to(self.device))
            mined = miner(self.engine.embed_inputs(x), labels, config.alpha)
            rounds += 1
            found = int(mined.num_triplets)
            pairs += int(mined.num_pairs)
            selected += found
            self._round_stats(epoch, rounds, len(indices), int(mined.num_pairs), found)
            steps = min(-(-found // per_step), config.epoch_size - batches)
            steps = all_reduce_min(steps, self.device)
            if steps == 0:
                skipped += 1
                batches += 1
                self.log(f"epoch {epoch + 1} round {rounds}: no valid triplet, batch skipped", show=False)
                continue
            order = torch.as_tensor(rng.permutation(found), device=self.device)
            a, p, n = (t.index_select(0, order) for t in (mined.anchors, mined.positives, mined.negatives))
            sums = torch.zeros(3, dtype=torch.float64, device=self.device)
            flags = torch.zeros((), device=self.device)
            for lo in range(0, steps * per_step, per_step):
                sel = slice(lo, lo + per_step)
                loss, flag = self.engine.step(torch.cat([x[a[sel]], x[p[sel]], x[n[sel]]]))
                good = 1.0 - flag.double()
                kept = torch.where(flag > 0, 0.0, loss.double())
                sums += torch.stack([kept, good, good * len(a[sel])])
                flags += flag
                batches += 1
                fed += 3 * len(a[sel])
                self.progress.batch(
                    epoch=epoch,
                    batch=batches,
                    loss=running_loss,
                    images_per_s=fed / max(time.perf_counter() - start, 1e-9),
                    lr=lr,
                )
            totals += all_reduce_sum(sums)
            loss_sum, good_steps, _, bad = torch.cat([totals, flags.double().view(1)]).tolist()
            running_loss = loss_sum / good_steps if good_steps else None
            bad = round(bad)
            if bad and config.on_nonfinite == "stop":
                self._stop_nonfinite(epoch, rounds, bad)
            if bad:
                nonfinite += bad
                skipped += bad
                self.log(f"epoch {epoch + 1} round {rounds}: {bad} non-finite batch(es) skipped", show=False)
        elapsed = time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            self.scheduler.step()
        loss_sum, good_steps, trained = totals.tolist()
        trained = round(trained)
        images = 3 * trained
        return {
            "train_loss": loss_sum / good_steps if good_steps else None,
            "learning_rate": lr,
            "miner": miner_name,
            "rounds": rounds,
            "batches": batches,
            "skipped_batches": skipped,
            "nonfinite_batches": nonfinite,
            "anchor_positive_pairs": pairs,
            "triplets": selected,
            "trained_triplets": trained,
            "valid_negative_fraction": selected / max(pairs, 1),
            "images": images,
            "images_per_s": images / max(elapsed, 1e-9),
            "time_s": elapsed,
        }

    def _checkpoint(self) -> dict[str, Any]:
        return make_checkpoint(
            model=self.engine.model.state_dict(),
            backbone=self.backbone,
            config=self.config.model_dump(mode="json"),
            epoch=self.epoch,
            history=self.history,
            optimizer=self.engine.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=_rng_state(),
        )

    def _check_finite_weights(self) -> None:
        """Never save a NaN model: non-finite weights or batch-norm statistics end the run here."""
        state = [t for t in self.engine.model.state_dict().values() if t.is_floating_point()]
        if state and not bool(torch.stack([t.isfinite().all() for t in state]).all()):
            self._stop_nonfinite_weights()

    def _stop_nonfinite_weights(self) -> None:
        last = self.run_dir / "last.pth"
        kept = f"{last} (epoch {self.epoch - 1}) is kept" if last.is_file() else "no checkpoint was written"
        message = f"training stopped: the weights became non-finite in epoch {self.epoch}; {kept}"
        self.log(message, show=False)
        raise NonFiniteError(message)

    def _save(self, improved: bool) -> None:
        """last.pth (plus best.pth and epoch_NNNN.pth copies) and history.json, each written atomically.

        A failed write (disk full, file size limit) leaves the previous files intact and ends the run with
        one line naming the file.
        """
        last = self.run_dir / "last.pth"
        copies = []
        if improved:
            copies.append(self.run_dir / "best.pth")
        if self.epoch % self.config.checkpoint_every == 0:
            copies.append(self.run_dir / f"epoch_{self.epoch:04d}.pth")
        target = last
        try:
            save_checkpoint(self._checkpoint(), last)
            for target in copies:
                with last.open("rb") as src:
                    atomic_write(target, lambda handle, src=src: handle.write(src.read()))
            target = self.run_dir / "history.json"
            save_history(self.history, target)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise FacetoolError(
                f"{target}: cannot write after epoch {self.epoch} ({reason}); the previous file is unchanged "
                f"and --resume auto continues from it"
            ) from None

    def _finite_or_none(self, value: float | None, name: str) -> float | None:
        if value is None or np.isfinite(value):
            return value
        self.log(f"epoch {self.epoch + 1}: {name} is {value}, recorded as none")
        return None

    def run(self) -> None:
        """Train from the current epoch to num_epochs, checkpointing after every epoch."""
        config = self.config
        self.progress.start(
            start_epoch=self.epoch, num_epochs=config.num_epochs, epoch_size=config.epoch_size
        )
        try:
            while self.epoch < config.num_epochs:
                stats = self._train_epoch(self.epoch)
                broadcast_buffers(self.engine.model)
                val_start = time.perf_counter()
                validate = self.validator.active and self.ranks.main
                val = self.validator(self.engine) if validate else None
                best_before = self._best_score()
                record = EpochRecord(
                    epoch=self.epoch + 1,
                    val_loss=self._finite_or_none(val.loss if val else None, "validation loss"),
                    val_accuracy=self._finite_or_none(val.accuracy if val else None, "validation accuracy"),
                    val_accuracy_std=val.accuracy_std if val else None,
                    **stats,
                ).to_dict()
                self.epoch += 1
                self._check_finite_weights()
                record["time_s"] = stats["time_s"] + time.perf_counter() - val_start
                self.history.append(record)
                score = self._best_score()
                if self.ranks.main:
                    self._save(improved=score is not None and (best_before is None or score < best_before))
                self.log(
                    f"epoch {self.epoch}/{config.num_epochs}: train loss {record['train_loss']}, "
                    f"val loss {record['val_loss']}, val accuracy {record['val_accuracy']}, "
                    f"lr {record['learning_rate']:.4g}, {record['triplets']} triplets, "
                    f"{record['skipped_batches']} skipped batches, {record['images_per_s']:.1f} img/s",
                    show=False,
                )
                self.progress.epoch_end(record)
            if self.ranks.distributed:
                digest = check_ranks_agree(self.engine.model.state_dict())
                self.log(
                    f"weights identical on all {self.ranks.world_size} ranks: sha256 {digest}", show=False
                )
        finally:
            self.progress.finish()


def write_run_config(config: TrainConfig, run_dir: Path) -> Path:
    """The resolved configuration as config.toml in the run directory (atomic)."""
    path = run_dir / "config.toml"
    text = dump_toml(config.model_dump(mode="json"))
    atomic_write_text(path, text)
    return path


def train(
    config: TrainConfig, *, resume: str | Path | None = None, progress: TrainProgress | None = None
) -> TrainResult:
    """Train an embedding with the FaceNet triplet protocol; `resume` is a checkpoint path or "auto"."""
    if config.data_dir is None:
        raise ConfigError("data_dir: not set (give --data_dir or data_dir in the config file)")
    started = time.perf_counter()
    progress = progress or TrainProgress()
    ranks = ranks_from_env()
    run_dir = Path(config.checkpoint_dir)
    make_dir(run_dir, "run folder")
    resume_path = resolve_resume(resume, run_dir)
    if ranks.main:
        write_run_config(config, run_dir)
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        trainer = Trainer(config, progress, ranks)
        if ranks.main:
            for stale in remove_stale_temp_files(run_dir):
                trainer.log(f"removed {stale.name}, left by an interrupted write")
        if resume_path is not None:
            trainer.restore(resume_path)
        elif resume is not None:
            trainer.log(f"no checkpoint in {run_dir} to resume from; starting at epoch 1")
        trainer.run()
    finally:
        torch.set_num_threads(threads)
        close_process_group()
    plots: list[Path] = []
    if ranks.main:
        try:
            from facetool.train.plots import plot_history

            plots = plot_history(trainer.history, run_dir)
        except FacetoolError as exc:
            trainer.log(f"plots not written: {exc}")
    best = run_dir / "best.pth"
    return TrainResult(
        run_dir=run_dir,
        epochs=trainer.epoch,
        history=trainer.history,
        last_checkpoint=run_dir / "last.pth",
        best_checkpoint=best if best.is_file() else None,
        train_identities=trainer.train_set.num_identities,
        val_identities=trainer.val_set.num_identities if trainer.val_set is not None else 0,
        dropped_identities=trainer.dropped,
        duration_s=time.perf_counter() - started,
        resumed_from=resume_path,
        plots=plots,
    )
