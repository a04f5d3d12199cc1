"""Fast training steps for CUDA: the whole step as one replayed CUDA graph, or a torch.compile'd forward.

Small FaceNet steps (90 images) are launch-bound: the CPU cannot issue the step's thousands of kernels as
fast as the GPU runs them. A CUDA graph issues the recorded step with one launch (measured 4x at 90 images
on an H200). The graph reads its input from a static buffer and its optimizer step is the fused one, which
takes the non-finite flag as a device tensor, so a replay never waits for the host. The learning rate is a
launch argument of the fused kernel, so the graph is captured again when it changes (once per LR step).
The step is generic in the loss: the labels have a static buffer too, and the loss module (with any
parameters it holds, such as class centres) is part of the recorded step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

WARMUP_STEPS = 3


class StepHost(Protocol):
    """What a fast step needs from the engine that owns it (the engine satisfies this; no import of it)."""

    model: nn.Module
    train_model: nn.Module | None
    optimizer: torch.optim.Optimizer
    plan: Any
    active: torch.Tensor | None

    def layout(self, x: torch.Tensor) -> torch.Tensor: ...

    criterion: nn.Module

    def loss(
        self, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, cache: bool = True
    ) -> torch.Tensor: ...

    def update(self, loss: torch.Tensor, *, force_skip: bool = False) -> torch.Tensor: ...

    def eager_step(
        self, x: torch.Tensor, labels: torch.Tensor, *, set_to_none: bool = True, force_skip: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def save_buffers(self) -> list[torch.Tensor] | None: ...

    def restore_buffers(self, saved: list[torch.Tensor] | None, flag: torch.Tensor) -> None: ...


class StaticBatch:
    """A fixed-address input buffer: each batch is copied into it (same shape, the buffer's memory layout)."""

    def __init__(self, like: torch.Tensor, channels_last: bool = False) -> None:
        layout = torch.channels_last if channels_last and like.ndim == 4 else torch.contiguous_format
        self.buffer = torch.empty_like(like, memory_format=layout)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.buffer.shape)

    def load(self, x: torch.Tensor) -> torch.Tensor:
        """Copy `x` into the buffer in place (no new allocation) and return the buffer."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"batch of shape {tuple(x.shape)} does not fit the static buffer {self.shape}")
        self.buffer.copy_(x, non_blocking=True)
        return self.buffer


def _learning_rates(optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
    return tuple(float(group["lr"]) for group in optimizer.param_groups)


class GraphStep:
    """Forward, loss, backward, non-finite check and fused optimizer step captured as one CUDA graph."""

    def __init__(self, engine: StepHost) -> None:
        self.engine = engine
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key: tuple | None = None

    def _warm_up(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Run the step a few times on a side stream with the update forced off, then restore BN buffers.

        This allocates the optimizer state and lets cuDNN pick its kernels before capture, without
        changing weights, optimizer moments or batch-norm statistics.
        """
        engine = self.engine
        buffers = [b.detach().clone() for b in engine.model.buffers()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                engine.eager_step(x, labels, force_skip=True)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for saved, live in zip(buffers, engine.model.buffers(), strict=True):
                live.copy_(saved)

    def _capture(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        engine = self.engine
        self.graph = None
        self.static = StaticBatch(x, engine.plan.channels_last)
        self.static_labels = StaticBatch(labels)
        self.static.load(x)
        self.static_labels.load(labels)
        self._warm_up(self.static.buffer, self.static_labels.buffer)
        engine.model.train()
        engine.criterion.train()
        engine.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            saved = engine.save_buffers()
            loss = engine.loss(engine.train_model, self.static.buffer, self.static_labels.buffer, cache=False)
            flag = engine.update(loss)
            engine.restore_buffers(saved, flag)
            self.loss, self.flag = loss.detach(), flag
        self.active = engine.active
        self.graph = graph
        self.key = (self.static.shape, _learning_rates(engine.optimizer))

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(x.shape), _learning_rates(self.engine.optimizer))
        if self.graph is None or key != self.key:
            self._capture(x, labels)
        self.static.load(x)
        self.static_labels.load(labels)
        self.engine.model.train()
        self.graph.replay()
        self.engine.active = self.active
        return self.loss, self.flag


class CompiledStep:
    """The step with the model's forward (and its backward) compiled by torch.compile(mode="reduce-overhead")."""

    def __init__(self, engine: StepHost) -> None:
        self.engine = engine
        self.compiled = torch.compile(engine.train_model, mode="reduce-overhead", dynamic=False)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        engine = self.engine
        engine.model.train()
        engine.criterion.train()
        engine.optimizer.zero_grad(set_to_none=True)
        saved = engine.save_buffers()
        loss = engine.loss(self.compiled, engine.layout(x), labels)
        flag = engine.update(loss)
        engine.restore_buffers(saved, flag)
        return loss.detach(), flag


FastStep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

FAST_STEPS: dict[str, Callable[[StepHost], FastStep]] = {
    "cuda-graph": GraphStep,
    "reduce-overhead": CompiledStep,
}
