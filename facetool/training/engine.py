"""The compute of training: a gradient-free embedding pass and one optimisation step on a batch of inputs.

The step is generic in the loss: it embeds the batch, L2-normalises, and calls the run's loss module (a
facetool.losses.Loss) with the embeddings and labels; what a batch is (mined triplets or plain labelled
images) is the loss's `needs`. A class-based loss's parameters join the optimizer.

Everything device- and precision-specific lives here, so faster variants (channels_last, fused optimizers,
torch.compile, one CUDA graph per step, DistributedDataParallel) change these methods, not the loop.
A step never synchronises with the host: it returns the loss and a "non-finite" flag as device tensors,
and a non-finite step is skipped on the device by the fused optimizer (found_inf), as AMP's GradScaler does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from facetool.config.train import EngineConfig, TrainConfig
from facetool.data.augment import prepare
from facetool.device import autocast
from facetool.losses import Loss, TripletLoss, get_loss
from facetool.models import build_backbone
from facetool.training.graph import FAST_STEPS
from facetool.training.schedule import make_scheduler

# pixels of one CPU embedding chunk: 128 faces at 64 px, 20 at 160 px (docs/benchmarks.md, issue 36)
EMBED_CHUNK_PIXELS = 2**19


def embed_batch_for(image_size: int, device_type: str) -> int:
    """Faces per chunk of the gradient-free embedding pass: 256 on an accelerator; on a CPU as many as make
    EMBED_CHUNK_PIXELS (16 to 256), whose activations stay in the caches: at 64 px a chunk of 256 embedded
    1.9x slower per face than one of 128, at 160 px one of 128 1.5x slower than one of 16."""
    if device_type != "cpu":
        return 256
    return max(16, min(256, EMBED_CHUNK_PIXELS // (image_size * image_size)))


"""Images per gradient-free forward pass (mining and validation)."""

FUSABLE = frozenset({"adam", "adamw", "sgd"})


def _adam(params: Iterator[nn.Parameter], c: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.learning_rate, weight_decay=c.weight_decay, fused=fused or None)


def _adamw(params: Iterator[nn.Parameter], c: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay, fused=fused or None)


def _sgd(params: Iterator[nn.Parameter], c: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay, fused=fused or None
    )


OPTIMIZERS: dict[str, Callable[[Iterator[nn.Parameter], TrainConfig, bool], torch.optim.Optimizer]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


@dataclass(frozen=True)
class EnginePlan:
    """The resolved execution settings and, in `notes`, why a requested one was not used."""

    compile: str
    channels_last: bool
    fused: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    channels_last_inputs: bool = False


def plan_engine(
    settings: EngineConfig,
    device: torch.device,
    optimizer: str,
    world_size: int = 1,
    *,
    channels_last: bool | None = None,
    fused: bool | None = None,
) -> EnginePlan:
    """Pick the step's execution from the settings, the device and the run's shape.

    auto means the fast path on CUDA (one CUDA graph per step; eager under DDP) and plain eager on a CPU.
    CUDA-only modes asked for on a CPU fall back to eager; a CUDA graph needs a fused optimizer and a
    single process. Every fallback is stated in `notes`. The layout: channels_last model and inputs on CUDA;
    on a CPU (auto) channels_last inputs only, which a CPU convolution runs as fast as channels_last weights
    (1.3-1.4x faster than NCHW inputs, docs/benchmarks.md) and which leaves the weights' bits as they were.
    """
    cuda = device.type == "cuda"
    notes: list[str] = []
    fused = optimizer in FUSABLE if fused is None else fused
    if fused and optimizer not in FUSABLE:
        notes.append(f"optimizer {optimizer} has no fused kernel; using the plain one")
        fused = False
    mode = settings.compile
    if mode == "auto":
        mode = "cuda-graph" if cuda and fused and world_size == 1 else "none"
    if mode in ("cuda-graph", "reduce-overhead") and not cuda:
        notes.append(f"engine.compile={mode} needs CUDA; running eagerly on {device}")
        mode = "none"
    if mode == "cuda-graph" and world_size > 1:
        notes.append("engine.compile=cuda-graph is single-process; running eagerly under DDP")
        mode = "none"
    if mode == "cuda-graph" and not fused:
        notes.append("engine.compile=cuda-graph needs a fused optimizer; running eagerly")
        mode = "none"
    auto = channels_last is None
    channels_last = cuda if auto else channels_last
    inputs = channels_last or (auto and device.type == "cpu")
    return EnginePlan(mode, channels_last, fused, tuple(notes), channels_last_inputs=inputs)


def _average_over_ranks(criterion: Loss | None) -> None:
    """Average the loss parameters' gradients over DDP ranks (DDP itself covers only the backbone)."""
    if criterion is None or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    for p in criterion.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world)


def _all_reduce_max(flag: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return flag


@dataclass
class Engine:
    """Model, optimizer and the numeric setting they run under; `train_model` is the DDP wrapper if any."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    dtype: torch.dtype
    image_size: int
    embed_batch_size: int
    plan: EnginePlan = field(default_factory=lambda: EnginePlan("none", False, False))
    train_model: nn.Module | None = None
    guard_buffers: bool = False
    batch_size: int = 0
    criterion: Loss | None = None
    _fast: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = field(
        default=None, init=False
    )
    _fast_batch: int | None = field(default=None, init=False)
    active: torch.Tensor | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.plan.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.train_model is None:
            self.train_model = self.model
        if self.criterion is None:
            self.criterion = TripletLoss(num_classes=0, embedding_dim=0)
        self.criterion.to(self.device)

    def embed_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised float32 embeddings of standardised inputs, eval mode, no gradients."""
        self.model.eval()
        out = []
        with torch.no_grad(), autocast(self.device, self.dtype):
            for chunk in x.split(self.embed_batch_size):
                out.append(F.normalize(self.model(self.layout(chunk)).float(), dim=1))
        return torch.cat(out)

    def embed(self, faces: torch.Tensor) -> torch.Tensor:
        """Embeddings of uint8 NHWC faces without augmentation, prepared chunk by chunk."""
        parts = [
            self.embed_inputs(prepare(chunk.to(self.device), self.image_size))
            for chunk in faces.split(self.embed_batch_size)
        ]
        return torch.cat(parts)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """`x` in the memory layout the model runs in: channels_last when planned, else NCHW."""
        planned = self.plan.channels_last or self.plan.channels_last_inputs
        fmt = torch.channels_last if planned else torch.contiguous_format
        return x.contiguous(memory_format=fmt) if x.dim() == 4 else x

    def loss(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, cache: bool = True
    ) -> torch.Tensor:
        """The run's loss of inputs `x` with `labels` under the engine's precision (the loss in float32).

        Also sets `active` from the loss (for the triplet loss, the device count of triplets that teach).
        """
        if self.dtype == torch.float32:
            emb = model(x)
        else:
            with torch.autocast(device_type=self.device.type, dtype=self.dtype, cache_enabled=cache):
                emb = model(x)
        loss = self.criterion(F.normalize(emb.float(), dim=1), labels)
        self.active = self.criterion.active
        return loss

    def update(self, loss: torch.Tensor, *, force_skip: bool = False) -> torch.Tensor:
        """Backward and optimizer step unless the loss or a gradient is non-finite; returns that flag.

        With a fused optimizer the skip happens on the device (found_inf); otherwise the flag is read.
        Under DDP the flag is the maximum over ranks, so every rank skips the same steps.
        """
        loss.backward()
        _average_over_ranks(self.criterion)
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        bad = ~torch.isfinite(loss.detach())
        if params:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params], error_if_nonfinite=False)
            bad = bad | ~torch.isfinite(grad_norm)
        flag = _all_reduce_max(bad.float().reshape(()))
        if force_skip:
            flag = torch.ones_like(flag)
        if self.plan.fused:
            self.optimizer.found_inf = flag  # type: ignore[attr-defined]
            self.optimizer.grad_scale = None  # type: ignore[attr-defined]
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf, self.optimizer.grad_scale  # type: ignore[attr-defined]
        elif not bool(flag):
            self.optimizer.step()
        return flag

    def eager_step(
        self, x: torch.Tensor, labels: torch.Tensor, *, set_to_none: bool = True, force_skip: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step run op by op: (loss, non-finite flag), both device tensors."""
        self.model.train()
        self.criterion.train()
        self.optimizer.zero_grad(set_to_none=set_to_none)
        saved = self.save_buffers()
        loss = self.loss(self.train_model, self.layout(x), labels)
        flag = self.update(loss, force_skip=force_skip)
        self.restore_buffers(saved, flag)
        return loss.detach(), flag

    def save_buffers(self) -> list[torch.Tensor] | None:
        """Copies of the buffers (batch-norm statistics and counters) when a skipped step must not touch them."""
        if not self.guard_buffers:
            return None
        return [b.detach().clone() for b in self.model.buffers()]

    def restore_buffers(self, saved: list[torch.Tensor] | None, flag: torch.Tensor) -> None:
        """Put back the saved buffers where `flag` is set (on the device, no host read)."""
        if saved is None:
            return
        live = list(self.model.buffers())
        with torch.no_grad():
            for old, new in zip(saved, live, strict=True):
                new.copy_(torch.where(flag > 0, old, new))

    def step(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step: (loss, non-finite flag) as device tensors, valid until the next step.

        `labels` are the inputs' training-class indices; a loss that reads them must be given them (without,
        every input is labelled 0, which the triplet loss ignores). Batches of `batch_size` images (0: the
        size of the first batch) take the fast path (compiled forward or CUDA graph); a smaller one (the tail
        of a round) runs eagerly on the same weights and optimizer state.
        """
        if labels is None:
            labels = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if self.plan.compile == "none":
            return self.eager_step(x, labels)
        if self._fast is None:
            self._fast = FAST_STEPS[self.plan.compile](self)
            self._fast_batch = self.batch_size or x.shape[0]
        if x.shape[0] != self._fast_batch:
            return self.eager_step(x, labels, set_to_none=False)
        return self._fast(x, labels)


# (model channels_last, inputs channels_last): how the run's log line names the layout
LAYOUT_NAMES = {(True, True): ", channels_last", (False, True): ", channels_last inputs", (False, False): ""}
LAYOUT_NAMES[True, False] = LAYOUT_NAMES[True, True]

STEP_NAMES = {
    "none": "eager steps",
    "reduce-overhead": "torch.compile'd steps",
    "cuda-graph": "CUDA-graph steps",
}


def engine_from_config(
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype,
    world_size: int = 1,
    num_classes: int = 0,
) -> tuple[Engine, torch.optim.lr_scheduler.LambdaLR]:
    """The run's engine (backbone, loss, optimizer, execution plan, DDP wrapper) and its LR scheduler.

    The backbone's and then the loss's initial weights (a class-based loss's centres, one per training
    class of `num_classes`) come from torch's global generator, seeded with `config.seed` here; the loss's
    parameters join the optimizer's one parameter group.
    """
    torch.manual_seed(config.seed)
    model = build_backbone(
        config.backbone.name,
        config.backbone.settings,
        embedding_dim=config.embedding_dim,
        dropout=config.dropout_prob,
        pretrained=config.pretrained,
        image_size=config.image_size,
    ).to(device)
    criterion = get_loss(
        config.loss.name,
        config.loss.settings,
        num_classes=num_classes,
        embedding_dim=config.embedding_dim,
        margin=config.alpha,
    ).to(device)
    plan = plan_engine(config.engine, device, config.optimizer, world_size)
    params = [*model.parameters(), *criterion.parameters()]
    optimizer = OPTIMIZERS[config.optimizer](iter(params), config, plan.fused)
    scheduler = make_scheduler(optimizer, config)
    train_model = None
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    engine = Engine(
        model,
        optimizer,
        device,
        dtype,
        config.image_size,
        embed_batch_for(config.image_size, device.type),
        plan=plan,
        train_model=train_model,
        guard_buffers=config.on_nonfinite == "skip",
        batch_size=config.batch_size,
        criterion=criterion,
    )
    return engine, scheduler
