"""Settings of `facetool demo`: a run small enough for a CPU in about two minutes that still shows training work.

The defaults were chosen on the synthetic set for a trained accuracy well above 0.90 on the held-out pairs
(docs/benchmarks.md, "The demo"): many identities of few images each, the batch-hard loss on facetool-extras'
tiny-cnn at 64 px, as the CPU recipes for LFW train.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from facetool.config.base import ImageSize, StrictModel
from facetool.config.train import BackboneConfig, LossConfig


class DemoConfig(StrictModel):
    """The synthetic data set and the short training run of the demo."""

    out: Path = Field(Path("facetool-demo"), description="Folder for the data, cache, run and report.")
    data: Path | None = Field(None, description="An LFW-style folder to use instead of synthetic data.")
    identities: int = Field(200, ge=6, description="Synthetic identities.")
    images_per_identity: int = Field(8, ge=2, description="Synthetic images of each identity.")
    test_identities: int = Field(40, ge=4, description="Identities kept out of training for the pairs.")
    folds: int = Field(4, ge=2, description="Folds of the synthetic pairs file (disjoint people).")
    pairs_per_fold: int = Field(50, ge=1, description="Matched (and mismatched) pairs per fold.")
    image_size: ImageSize = Field(64, description="Face crop side; small so a CPU trains quickly.")
    backbone: BackboneConfig = Field(
        default_factory=lambda: BackboneConfig(name="tiny-cnn", head="gdc"),
        description="Embedding network: a name or a table with its settings (facetool plugins list).",
    )
    loss: LossConfig = Field(
        default_factory=lambda: LossConfig(name="batch-hard", margin="hinge"),
        description="Training loss: a name or a table with its settings (facetool plugins list).",
    )
    alpha: float = Field(0.3, gt=0.0, allow_inf_nan=False, description="Margin of the triplet losses.")
    embedding_dim: int = Field(128, ge=2, le=65536, description="Embedding size.")
    num_epochs: int = Field(12, ge=1, description="Training epochs.")
    epoch_size: int = Field(20, ge=1, description="Training steps (batches) per epoch.")
    people_per_batch: int = Field(45, ge=2, description="Identities sampled per selection round.")
    images_per_person: int = Field(8, ge=2, description="Most images of each identity per round.")
    batch_size: int = Field(
        90, ge=3, multiple_of=3, description="Images per training step (a multiple of 3)."
    )
    learning_rate: float = Field(0.005, gt=0, allow_inf_nan=False, description="Peak learning rate (cosine).")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    seed: int = Field(0, ge=0, description="Seed of the synthetic set and of training.")
