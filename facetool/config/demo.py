"""Settings of `facetool demo`: a run small enough for a CPU in a few minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from annotated_types import Ge
from pydantic import Field

from facetool.config.base import ImageSize, StrictModel


class DemoConfig(StrictModel):
    """The synthetic data set and the short training run of the demo."""

    out: Path = Field(Path("facetool-demo"), description="Folder for the data, cache, run and report.")
    data: Path | None = Field(None, description="An LFW-style folder to use instead of synthetic data.")
    identities: int = Field(40, ge=6, description="Synthetic identities.")
    images_per_identity: int = Field(10, ge=2, description="Synthetic images of each identity.")
    test_identities: int = Field(10, ge=4, description="Identities kept out of training for the pairs.")
    pairs_per_fold: int = Field(20, ge=1, description="Matched (and mismatched) pairs per fold.")
    image_size: Annotated[ImageSize, Ge(80)] = Field(
        96, description="Face crop side; small so a CPU trains quickly."
    )
    backbone: str = Field("inception_resnet_v1", description="Embedding network.")
    num_epochs: int = Field(5, ge=1, description="Training epochs.")
    epoch_size: int = Field(8, ge=1, description="Training steps per epoch.")
    people_per_batch: int = Field(10, ge=2, description="Identities sampled per selection round.")
    images_per_person: int = Field(6, ge=2, description="Most images of each identity per round.")
    batch_size: int = Field(
        30, ge=3, multiple_of=3, description="Images per training step (a multiple of 3)."
    )
    learning_rate: float = Field(0.001, gt=0, description="Initial learning rate.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    seed: int = Field(0, description="Seed of the synthetic data and the training run.")
