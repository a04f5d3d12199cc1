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
from facetool.data.faceset import FaceSet, drop_small_identities, load_faceset, split_identities
from facetool.data.sampling import PeopleSampler
from facetool.device import resolve_device, resolve_precision
from facetool.errors import ConfigError, FacetoolError
from facetool.miners import get_miner
from facetool.models import build_backbone
from facetool.train.checkpoint import (
    atomic_write_bytes,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
)
from facetool.train.engine import OPTIMIZERS, Engine
from facetool.train.history import EpochRecord, save_history
from facetool.train.progress import TrainProgress
from facetool.train.resume import resolve_resume
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


class RunLog:
    """Appends timestamped lines to train.log and shows them through the progress reporter."""

    def __init__(self, path: Path, progress: TrainProgress) -> None:
        self.path = path
        self.progress = progress

    def __call__(self, text: str, *, show: bool = True) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")
        if show:
            self.progress.message(text)


def _faces_cache(config: TrainConfig, run_dir: Path, log: RunLog) -> Path:
    data = config.data_dir
    if data is None:
        raise ConfigError("data_dir: not set (give --data_dir or data_dir in the config file)")
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

    def __init__(self, config: TrainConfig, progress: TrainProgress) -> None:
        self.config = config
        self.progress = progress
        self.run_dir = Path(config.checkpoint_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.run_dir / "train.log", progress)
        self.device = resolve_device(config.device)
        dtype = resolve_precision(config.precision, self.device)
        self.miner_generator = torch.Generator(device=self.device)
        self.miner = get_miner(config.miner, generator=self.miner_generator)

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
        optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma
        )
        self.engine = Engine(
            model, optimizer, self.device, dtype, config.alpha, config.image_size, config.embed_batch_size
        )

        cache_path = _faces_cache(config, self.run_dir, self.log)
        faces, self.dropped = drop_small_identities(load_faceset(cache_path))
        if self.dropped:
            self.log(f"left out {self.dropped} identities with fewer than 2 images")
        if faces.num_identities < 2:
            raise FacetoolError(
                f"{cache_path}: training needs at least 2 identities with 2 or more images, "
                f"found {faces.num_identities}"
            )
        train_set, val_set = split_identities(faces, config.validation.fraction, config.seed)
        self.train_set: FaceSet = train_set.to(self.device)
        self.val_set = val_set.to(self.device) if val_set is not None else None
        self.log(
            f"{len(self.train_set)} training images of {self.train_set.num_identities} identities"
            + (
                f", {len(self.val_set)} validation images of {self.val_set.num_identities} identities"
                if self.val_set is not None
                else ""
            )
            + f"; device {self.device}, {str(dtype).removeprefix('torch.')}"
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
        self.scheduler.load_state_dict(ck["scheduler"])
        self.history = list(ck["history"])
        self.epoch = int(ck["epoch"])
        _restore_rng(ck.get("rng"))
        self.log(f"resumed from {path} after epoch {self.epoch}")

    def _best_score(self) -> float | None:
        key = "val_loss" if self.validator.valset is not None else "train_loss"
        scores = [r[key] for r in self.history if r.get(key) is not None]
        return min(scores) if scores else None

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        config = self.config
        rng, (torch_seed, aug_seed, miner_seed) = _epoch_seeds(config.seed, epoch)
        torch.manual_seed(torch_seed)
        generator = torch.Generator(device=self.device).manual_seed(aug_seed)
        self.miner_generator.manual_seed(miner_seed)
        per_step = config.batch_size // 3
        lr = self.scheduler.get_last_lr()[0]
        losses: list[torch.Tensor] = []
        rounds = batches = skipped = pairs = selected = trained = images = 0
        start = time.perf_counter()
        while batches < config.epoch_size:
            indices = torch.as_tensor(self.sampler.sample(rng), device=self.device)
            x = self.augment(self.train_set.faces.index_select(0, indices), generator)
            labels = self.train_set.labels.index_select(0, indices)
            mined = self.miner(self.engine.embed_inputs(x), labels, config.alpha)
            rounds += 1
            pairs += int(mined.num_pairs)
            found = int(mined.num_triplets)
            selected += found
            stats = {
                "epoch": epoch + 1,
                "round": rounds,
                "people": self.sampler.people_per_batch,
                "images": len(indices),
                "anchor_positive_pairs": int(mined.num_pairs),
                "triplets": found,
                "valid_negative_fraction": found / max(int(mined.num_pairs), 1),
            }
            self.log(
                f"epoch {epoch + 1} round {rounds}: {stats['images']} images of {stats['people']} people, "
                f"{stats['anchor_positive_pairs']} anchor-positive pairs, {found} triplets "
                f"({stats['valid_negative_fraction']:.1%} with a valid negative)",
                show=False,
            )
            self.progress.round(stats)
            if found == 0:
                skipped += 1
                batches += 1
                self.log(f"epoch {epoch + 1} round {rounds}: no valid triplet, batch skipped", show=False)
                continue
            order = torch.as_tensor(rng.permutation(found), device=self.device)
            a, p, n = (t.index_select(0, order) for t in (mined.anchors, mined.positives, mined.negatives))
            for lo in range(0, found, per_step):
                if batches >= config.epoch_size:
                    break
                sel = slice(lo, lo + per_step)
                loss = self.engine.step(torch.cat([x[a[sel]], x[p[sel]], x[n[sel]]]))
                if not torch.isfinite(loss):
                    raise FacetoolError(
                        f"training diverged at epoch {epoch + 1} (loss {float(loss)}); "
                        "lower learning_rate in the config"
                    )
                losses.append(loss)
                batches += 1
                trained += len(a[sel])
                images += 3 * len(a[sel])
                self.progress.batch(
                    epoch=epoch,
                    batch=batches,
                    loss=float(loss),
                    images_per_s=images / max(time.perf_counter() - start, 1e-9),
                    lr=lr,
                )
        elapsed = time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            self.scheduler.step()
        train_loss = float(torch.stack(losses).mean()) if losses else None
        return {
            "train_loss": train_loss,
            "learning_rate": lr,
            "rounds": rounds,
            "batches": batches,
            "skipped_batches": skipped,
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

    def _save(self, improved: bool) -> None:
        last = self.run_dir / "last.pth"
        save_checkpoint(self._checkpoint(), last)
        copies = []
        if improved:
            copies.append(self.run_dir / "best.pth")
        if self.epoch % self.config.checkpoint_every == 0:
            copies.append(self.run_dir / f"epoch_{self.epoch:04d}.pth")
        for target in copies:
            with last.open("rb") as src:
                atomic_write_bytes(target, lambda handle, src=src: handle.write(src.read()))
        save_history(self.history, self.run_dir / "history.json")

    def run(self) -> None:
        """Train from the current epoch to num_epochs, checkpointing after every epoch."""
        config = self.config
        self.progress.start(
            start_epoch=self.epoch, num_epochs=config.num_epochs, epoch_size=config.epoch_size
        )
        try:
            while self.epoch < config.num_epochs:
                stats = self._train_epoch(self.epoch)
                val_start = time.perf_counter()
                val = self.validator(self.engine) if self.validator.active else None
                best_before = self._best_score()
                self.epoch += 1
                record = EpochRecord(
                    epoch=self.epoch,
                    val_loss=val.loss if val else None,
                    val_accuracy=val.accuracy if val else None,
                    val_accuracy_std=val.accuracy_std if val else None,
                    **stats,
                ).to_dict()
                record["time_s"] = stats["time_s"] + time.perf_counter() - val_start
                self.history.append(record)
                score = self._best_score()
                self._save(improved=score is not None and (best_before is None or score < best_before))
                self.log(
                    f"epoch {self.epoch}/{config.num_epochs}: train loss {record['train_loss']}, "
                    f"val loss {record['val_loss']}, val accuracy {record['val_accuracy']}, "
                    f"lr {record['learning_rate']:.4g}, {record['triplets']} triplets, "
                    f"{record['skipped_batches']} skipped batches, {record['images_per_s']:.1f} img/s",
                    show=False,
                )
                self.progress.epoch_end(record)
        finally:
            self.progress.finish()


def write_run_config(config: TrainConfig, run_dir: Path) -> Path:
    """The resolved configuration as config.toml in the run directory (atomic)."""
    path = run_dir / "config.toml"
    text = dump_toml(config.model_dump(mode="json"))
    atomic_write_bytes(path, lambda handle: handle.write(text.encode("utf-8")))
    return path


def train(
    config: TrainConfig, *, resume: str | Path | None = None, progress: TrainProgress | None = None
) -> TrainResult:
    """Train an embedding with the FaceNet triplet protocol; `resume` is a checkpoint path or "auto"."""
    if config.data_dir is None:
        raise ConfigError("data_dir: not set (give --data_dir or data_dir in the config file)")
    started = time.perf_counter()
    progress = progress or TrainProgress()
    run_dir = Path(config.checkpoint_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume_path = resolve_resume(resume, run_dir)
    write_run_config(config, run_dir)
    trainer = Trainer(config, progress)
    if resume_path is not None:
        trainer.restore(resume_path)
    elif resume is not None:
        trainer.log(f"no checkpoint in {run_dir} to resume from; starting at epoch 1")
    trainer.run()
    plots: list[Path] = []
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
