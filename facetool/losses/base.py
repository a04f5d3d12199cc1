"""The loss interface: every loss's output is checked here, so a faulty plugin fails loudly with its name.

A loss is an `nn.Module` (so a class-based loss holds its class centres as parameters, which join the
optimizer and the checkpoint) called with L2-normalised float32 embeddings and their integer labels. It
declares what a training step feeds it in `needs`:

- `"triplets"`: the inputs are mined triplets, ordered [anchors; positives; negatives] (3T rows), with the
  label of every row;
- `"labels"`: any batch of images with their labels (class-based losses; no mining pass);
- `"groups"`: batches of people, each person's images side by side (P×K batches, for losses that mine inside
  the batch, such as batch-hard; no mining pass).

Labels are training-class indices in [0, num_classes). A loss's own settings are the pydantic model `Settings`
(extra keys forbidden), filled from the `[loss]` table of the training config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from facetool.config.base import NoSettings, StrictModel
from facetool.errors import ConfigError, PluginError
from facetool.plugins import call_plugin

Needs = Literal["triplets", "labels", "groups"]
NEEDS: tuple[Needs, ...] = ("triplets", "labels", "groups")


class Loss(nn.Module, ABC):
    """A training loss; implement `compute`, call the instance.

    `compute(embeddings, labels)` returns the scalar loss. `__call__` runs it and checks the result: a
    tensor, a scalar, floating point, on the embeddings' device, carrying a gradient when the embeddings do,
    and not NaN when the inputs are finite (that check reads the value, so it runs on every CPU call and on the
    first call on an accelerator, never inside a CUDA-graph capture; an infinite loss can be an honest
    overflow and goes to the trainer's non-finite policy). A break of that contract, or an exception or
    `sys.exit()` inside `compute`, is a PluginError naming the loss; a NaN that a `[loss]` value the user gave
    causes (the same call with that key at its default is finite) is a ConfigError naming the key and value.
    `active`, when the loss sets it to a device count, is how many samples taught something in the last call
    (the triplets with a positive loss).
    """

    name: ClassVar[str] = "loss"
    description: ClassVar[str] = ""
    needs: ClassVar[Needs] = "triplets"
    Settings: ClassVar[type[StrictModel]] = NoSettings

    def __init__(
        self,
        settings: StrictModel | None = None,
        *,
        num_classes: int,
        embedding_dim: int,
        margin: float = 0.2,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings if settings is not None else type(self).Settings()
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.margin = float(margin)
        self.plugin_name = name or type(self).name
        self.active: Tensor | None = None
        self._value_checked = False

    @abstractmethod
    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The scalar loss of (N, D) normalised embeddings with (N,) int64 labels."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The validated scalar loss."""
        _check_inputs(embeddings, labels, self.needs)
        self.active = None
        out = call_plugin(f"loss {self.plugin_name!r} failed", self.compute, embeddings, labels)
        self._validate(out, embeddings, labels)
        return out

    def _validate(self, out: Any, embeddings: Tensor, labels: Tensor) -> None:
        def fail(why: str) -> PluginError:
            return PluginError(f"loss {self.plugin_name!r} broke its contract: {why}")

        if not isinstance(out, Tensor):
            raise fail(f"returned {type(out).__name__}, not a tensor")
        if out.dim() != 0:
            raise fail(f"returned shape {tuple(out.shape)}, not a scalar")
        if not out.is_floating_point():
            raise fail(f"returned dtype {out.dtype}, not floating point")
        if out.device != embeddings.device:
            raise fail(f"returned a tensor on {out.device}, the embeddings are on {embeddings.device}")
        if torch.is_grad_enabled() and embeddings.requires_grad and not out.requires_grad:
            raise fail("returned a loss with no gradient (detached from the embeddings)")
        capturing = embeddings.is_cuda and torch.cuda.is_current_stream_capturing()
        if capturing or (embeddings.device.type != "cpu" and self._value_checked):
            return
        self._value_checked = True
        if bool(torch.isnan(out.detach())) and bool(torch.isfinite(embeddings.detach()).all()):
            blamed = self._settings_to_blame(embeddings.detach(), labels)
            if blamed:
                given = ", ".join(f"loss.{key} = {getattr(self.settings, key)!r}" for key in blamed)
                fields = type(self).Settings.model_fields
                defaults = ", ".join(
                    repr(fields[key].get_default(call_default_factory=True)) for key in blamed
                )
                raise ConfigError(
                    f"{given} (your value in the [loss] table): loss {self.plugin_name!r} returns {out.item()} "
                    f"for finite embeddings with it and a number with the default ({defaults}); choose another"
                )
            raise fail(f"returned {out.item()} for finite embeddings")

    def _settings_to_blame(self, embeddings: Tensor, labels: Tensor) -> list[str]:
        """The keys the user set in `[loss]` whose default, in place of the value given, makes the same call
        finite: the value is the user's to change, not a fault of the plugin."""
        chosen = self.settings.model_fields_set
        blamed = []
        for key in sorted(chosen):
            try:
                kept = type(self).Settings.model_validate(self.settings.model_dump(include=chosen - {key}))
                probe = type(self)(
                    kept,
                    num_classes=self.num_classes,
                    embedding_dim=self.embedding_dim,
                    margin=self.margin,
                    name=self.plugin_name,
                )
                probe.load_state_dict(self.state_dict())
                with torch.no_grad():
                    finite = bool(torch.isfinite(probe.compute(embeddings, labels)))
            except Exception:
                finite = False
            if finite:
                blamed.append(key)
        return blamed


def _check_inputs(embeddings: Tensor, labels: Tensor, needs: Needs) -> None:
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError("embeddings must be a floating-point tensor of shape (N, D)")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype != torch.long:
        raise ValueError("labels must be an int64 tensor of shape (N,)")
    if labels.numel() != embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings but {labels.numel()} labels")
    if needs == "triplets" and (embeddings.shape[0] == 0 or embeddings.shape[0] % 3):
        raise ValueError(
            f"a triplet loss needs [anchors; positives; negatives], got {embeddings.shape[0]} rows"
        )
