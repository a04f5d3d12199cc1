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
    channels_last: bool | Literal["auto"] = Field(
        "auto",
        description="NHWC memory layout of model and inputs (auto: both on CUDA, the inputs only on a CPU; "
        "false: NCHW).",
    )
    fused_optimizer: bool | Literal["auto"] = Field(
        "auto",
        description="Fused optimizer kernels; they also skip a non-finite step on the device without a "
        "host round trip (auto: on).",
    )


# pixels of one CPU embedding chunk: 128 faces at 64 px, 20 at 160 px (docs/benchmarks.md, issue 36)
EMBED_CHUNK_PIXELS = 2**19


def embed_batch_for(setting: int | str, image_size: int, device_type: str) -> int:
    """The embedding pass's chunk: the setting, or for auto 256 on an accelerator and on a CPU as many faces as
    make EMBED_CHUNK_PIXELS (16 to 256), whose activations stay in the caches: at 64 px a chunk of 256 embedded
    1.9x slower per face than one of 128, at 160 px one of 128 1.5x slower than one of 16."""
    if setting != "auto":
        return int(setting)
    if device_type != "cpu":
        return 256
    return max(16, min(256, EMBED_CHUNK_PIXELS // (image_size * image_size)))


WORKER_TIMEOUT_S = 300.0


class DataConfig(StrictModel):
    """How training reads its faces: decoded once up front, or streamed per round by worker processes."""

    preload: Literal["auto", "preload", "stream"] = Field(
        "auto",
        description="preload: decode every face once (into accelerator memory when it fits, else host "
        "memory); stream: worker processes read each round's faces while the previous round trains; auto: "
        "preload when the decoded faces take at most half the memory available, else stream. The older "
        "values device and host both mean preload.",
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
    resize_once: bool = Field(
        True,
        description="Resize preloaded faces to the training input size (before crops) once, as float32, when "
        "that takes at most half the memory left where they live, instead of in every round: the same inputs, "
        "bit for bit, in less time when the network's input is smaller than the cache's faces.",
    )

    @field_validator("preload", mode="before")
    @classmethod
    def _older_preload_values(cls, value: object) -> object:
        return "preload" if value in ("device", "host") else value


class MinerStage(StrictModel):
    """From epoch `epoch` (1-based) on, `miner` chooses the triplets."""

    epoch: int = Field(ge=1, description="First epoch (1-based) of this miner.")
    miner: str = Field(min_length=1, description="Triplet miner (facetool plugins list).")


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
        allow_inf_nan=True,
        description="Triplet-loss margin on squared L2 distances (inf makes every loss infinite: a fault drill).",
    )
    miner: str = Field("semihard", min_length=1, description="Triplet miner (facetool plugins list).")
    miner_stages: list[MinerStage] = Field(
        default_factory=list,
        description='Later miners, e.g. [{epoch = 30, miner = "hard"}]: semi-hard first, then harder.',
    )

    loss: LossConfig = Field(
        default_factory=LossConfig,
        description='Training loss: "triplet" (mined triplets, the default) or a plugin such as "arcface"; '
        "its settings in a [loss] table.",
    )

    backbone: str = Field("inception_resnet_v1", min_length=1, description="Embedding network.")
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
        description="Torch intra-op CPU threads (unset: torch's default, one per core). On a machine shared "
        "with other jobs, fewer threads than cores avoids oversubscription, which made steps 3-6x slower.",
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="A NaN or infinite loss or gradient: stop (the run ends with an error; the last "
        "checkpoint, always finite, stays) or skip (that batch makes no update and is counted).",
    )

    embed_batch_size: int | Literal["auto"] = Field(
        "auto",
        description="Images per gradient-free forward pass (mining and validation); auto: 256 on an "
        "accelerator, on a CPU 128 at 64 px and fewer for larger inputs (embed_batch_for).",
    )

    @field_validator("embed_batch_size")
    @classmethod
    def _embed_batch_at_least_two(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 2:
            raise ValueError("must be at least 2 (or auto)")
        return value

    callbacks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Training callbacks by name (facetool plugins list --kind callback), e.g. callbacks = '
        '["csv"], or a [callbacks.tensorboard] table holding the plugin\'s own settings.',
    )

    engine: EngineConfig = Field(default_factory=EngineConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

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
