"""Settings of `facetool train`: the FaceNet triplet loop, validation, checkpoints and augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from facetool.config.base import ImageSize, NamedTable, StrictModel

MAX_PAIRS = 100_000


class AugmentConfig(StrictModel):
    """On-device augmentation of training faces; each part can be switched off."""

    random_crop: bool = Field(True, description="Random crop of the face, resized back to image_size.")
    crop_scale: float = Field(
        0.9,
        allow_inf_nan=False,
        gt=0.5,
        le=1.0,
        description="Smallest crop side as a fraction of the face side.",
    )
    flip: bool = Field(True, description="Random horizontal flip (probability 0.5).")
    color_jitter: bool = Field(True, description="Random brightness, contrast and saturation.")
    brightness: float = Field(
        0.2, allow_inf_nan=False, ge=0.0, le=1.0, description="Brightness factor range 1 +/- this."
    )
    contrast: float = Field(
        0.2, allow_inf_nan=False, ge=0.0, le=1.0, description="Contrast factor range 1 +/- this."
    )
    saturation: float = Field(
        0.2, allow_inf_nan=False, ge=0.0, le=1.0, description="Saturation factor range 1 +/- this."
    )


class ValidationConfig(StrictModel):
    """Held-out identities each epoch, or an LFW-style pairs file evaluated like `facetool eval`."""

    fraction: float = Field(
        0.1,
        allow_inf_nan=False,
        ge=0.0,
        lt=1.0,
        description="Fraction of identities held out for validation (0: none).",
    )
    pairs_file: Path | None = Field(None, description="LFW-format pairs file; replaces held-out pairs.")
    pairs_data: Path | None = Field(
        None, description="Face cache holding the pairs file's images (default: the training cache)."
    )
    num_pairs: int = Field(
        600,
        ge=20,
        le=MAX_PAIRS,
        description="Verification pairs drawn from held-out identities (half matched).",
    )


class EngineConfig(StrictModel):
    """How the training step runs; none of these change what is computed, only how fast."""

    compile: Literal["auto", "none", "reduce-overhead", "cuda-graph"] = Field(
        "auto",
        description="Step execution: auto (cuda-graph on one CUDA device, eager otherwise), none (eager), "
        "reduce-overhead (torch.compile of the forward) or cuda-graph (the whole step captured once and "
        "replayed). CUDA-only modes fall back to eager on a CPU.",
    )


WORKER_TIMEOUT_S = 300.0
RETIRED: dict[str, tuple[str, ...]] = {
    "": ("embed_batch_size",),
    "engine": ("channels_last", "fused_optimizer"),
    "data": ("resize_once",),
}
"""Settings that became module constants (facetool.training.engine, facetool.training.selection): read from
older configs and checkpoints, and ignored."""


class DataConfig(StrictModel):
    """How training reads its faces: decoded once up front, or streamed per round by worker processes."""

    preload: Literal["auto", "preload", "stream"] = Field(
        "auto",
        description="preload: decode every face once (into accelerator memory when it fits, else host "
        "memory); stream: worker processes read each round's faces while the previous round trains; auto: "
        "preload when the decoded faces take at most half the memory available, else stream.",
    )
    workers: int | None = Field(
        None, ge=1, le=64, description="Reading worker processes when streaming (none: usable cores but one)."
    )
    worker_timeout_s: float = Field(
        WORKER_TIMEOUT_S,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a streaming worker may hold a chunk of faces without answering before training "
        "stops with an error naming it (a stopped or hung worker); a chunk normally takes milliseconds, so the "
        "default leaves room for a slow or swapping machine.",
    )

    @field_validator("preload", mode="before")
    @classmethod
    def _older_preload_values(cls, value: object) -> object:
        return "preload" if value in ("device", "host") else value


class MinerConfig(NamedTable):
    """The triplet miner: `name` picks the plugin; every other key is its own setting, validated by its plugin.

    Written as `miner = "semihard"` or as a table, `[miner]` with `name = "distance-weighted"` and e.g.
    `cutoff = 0.5`.
    """

    name: str = Field("semihard", min_length=1, description="Miner plugin (facetool plugins list).")


class BackboneConfig(NamedTable):
    """The embedding network: `name` picks the plugin; every other key is its own setting, validated by its
    plugin.

    Written as `backbone = "tiny-cnn"` or as a table, `[backbone]` with `name = "tiny-cnn"` and `head = "gdc"`.
    """

    name: str = Field(
        "inception_resnet_v1", min_length=1, description="Backbone plugin (facetool plugins list)."
    )


class MinerStage(StrictModel):
    """From epoch `epoch` (1-based) on, `miner` chooses the triplets."""

    epoch: int = Field(ge=1, description="First epoch (1-based) of this miner.")
    miner: MinerConfig = Field(description="Triplet miner: a name or a table with its settings.")


class LossConfig(NamedTable):
    """The training loss: `name` picks the plugin; every other key is its own setting, validated by its plugin.

    Written as `loss = "arcface"` or as a table, `[loss]` with `name = "arcface"` and e.g. `scale = 32.0`.
    """

    name: str = Field("triplet", min_length=1, description="Loss plugin (facetool plugins list).")


class TrainConfig(StrictModel):
    """Everything a training run depends on; written to the run directory as config.toml."""

    data_dir: Path | None = Field(None, description="Face cache (.h5) or an LFW-style image directory.")
    checkpoint_dir: Path = Field(Path("runs/train"), description="Run directory: config, log, checkpoints.")
    checkpoint_every: int = Field(10, ge=1, description="Write epoch_NNNN.pth every this many epochs.")

    batch_size: int = Field(
        90,
        ge=3,
        multiple_of=3,
        description="IMAGES per training step, a multiple of 3: 90 images are 30 triplets (anchor, "
        "positive, negative), as in the classic FaceNet trainer.",
    )
    num_epochs: int = Field(50, ge=1, description="Epochs to train (a resumed run counts the finished ones).")
    epoch_size: int = Field(1000, ge=1, description="Training steps (batches) per epoch.")
    people_per_batch: int = Field(45, ge=2, description="Identities sampled per selection round.")
    images_per_person: int = Field(40, ge=2, description="Most images of each identity per round.")
    extra_negatives: int = Field(
        0,
        ge=0,
        description="Faces of other people added to every round, one per person, as negatives only "
        "(FaceNet's random negatives); with it, people with a single image train too, as such negatives.",
    )

    learning_rate: float = Field(0.1, allow_inf_nan=False, gt=0.0, description="Initial learning rate.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="Optimizer.")
    weight_decay: float = Field(1e-4, allow_inf_nan=False, ge=0.0, description="Weight decay.")
    momentum: float = Field(0.9, allow_inf_nan=False, ge=0.0, lt=1.0, description="Momentum (sgd only).")
    lr_schedule: Literal["step", "cosine"] = Field(
        "step", description="step: times lr_gamma every lr_step_size epochs; cosine: half a cosine to 0."
    )
    lr_step_size: int = Field(15, ge=1, description="step schedule: epochs between learning-rate drops.")
    lr_gamma: float = Field(
        0.1, allow_inf_nan=False, gt=0.0, le=1.0, description="step schedule: factor of each drop."
    )
    lr_cycles: int = Field(
        1,
        ge=1,
        description="cosine: restart the half cosine this many times, each cycle num_epochs / lr_cycles "
        "epochs (warm restarts); every cycle ends near 0, a model worth keeping (protocol's snapshots).",
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        description="Linear warm-up: epoch k < warmup_epochs runs at (k+1)/(warmup_epochs+1) of the rate.",
    )

    alpha: float = Field(
        0.2,
        gt=0.0,
        allow_inf_nan=False,
        description="Triplet-loss margin on squared L2 distances.",
    )
    miner: MinerConfig = Field(
        default_factory=MinerConfig,
        description='Triplet miner, e.g. "semihard" (facetool plugins list); its settings in a [miner] table.',
    )
    miner_stages: list[MinerStage] = Field(
        default_factory=list,
        description='Later miners, e.g. [{epoch = 30, miner = "hard"}]: semi-hard first, then harder.',
    )

    loss: LossConfig = Field(
        default_factory=LossConfig,
        description='Training loss: "triplet" (mined triplets, the default) or a plugin such as "arcface"; '
        "its settings in a [loss] table.",
    )

    backbone: BackboneConfig = Field(
        default_factory=BackboneConfig,
        description='Embedding network, e.g. "inception_resnet_v1" (facetool plugins list); its settings in a '
        "[backbone] table.",
    )
    embedding_dim: int = Field(512, ge=2, le=65536, description="Embedding size.")
    dropout_prob: float = Field(
        0.6, allow_inf_nan=False, ge=0.0, lt=1.0, description="Dropout before the embedding layer."
    )
    pretrained: str = Field("none", description="none, vggface2, casia-webface or a weights file.")
    image_size: ImageSize = Field(160, description="Network input side in pixels.")

    seed: int = Field(0, ge=0, description="Seed of every random choice; a fixed seed makes CPU runs repeat.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU."
    )

    threads: int | None = Field(
        None,
        ge=1,
        description="Torch intra-op CPU threads (unset: torch's default, one per core); fewer than the cores "
        "on a machine shared with other jobs.",
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="A NaN or infinite loss or gradient: stop (the run ends with an error; the last "
        "checkpoint, always finite, stays) or skip (that batch makes no update and is counted).",
    )

    callbacks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Training callbacks by name (facetool plugins list --kind callback), e.g. callbacks = "
        '["csv"], or a [callbacks.tensorboard] table holding the plugin\'s own settings.',
    )

    engine: EngineConfig = Field(default_factory=EngineConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @model_validator(mode="before")
    @classmethod
    def _retired_settings(cls, data: Any) -> Any:
        """Configs and checkpoints written before the internal tuning knobs became constants still load."""
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if key not in RETIRED.get("", ())}
        for section, keys in RETIRED.items():
            if section and isinstance(data.get(section), dict):
                data[section] = {key: value for key, value in data[section].items() if key not in keys}
        return data

    @field_validator("callbacks", mode="before")
    @classmethod
    def _callback_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [name.strip() for name in value.split(",") if name.strip()]
        if isinstance(value, list | tuple):
            if not all(isinstance(name, str) and name for name in value):
                raise ValueError("a list of callback names must hold names only")
            return {name: {} for name in value}
        return value

    @field_validator("miner_stages")
    @classmethod
    def _stages_in_order(cls, stages: list[MinerStage]) -> list[MinerStage]:
        epochs = [stage.epoch for stage in stages]
        if epochs != sorted(set(epochs)):
            raise ValueError(f"stage epochs must increase, got {epochs}")
        return stages

    @model_validator(mode="after")
    def _whole_cycles(self) -> TrainConfig:
        if self.lr_cycles > 1 and self.lr_schedule != "cosine":
            raise ValueError(
                f"lr_cycles = {self.lr_cycles} restarts the cosine schedule: set lr_schedule = cosine"
            )
        if self.num_epochs % self.lr_cycles:
            raise ValueError(
                f"lr_cycles = {self.lr_cycles} does not divide num_epochs = {self.num_epochs} into whole cycles"
            )
        return self
