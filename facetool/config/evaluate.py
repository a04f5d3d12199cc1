"""Settings of `facetool eval` (the LFW protocol) and `facetool embed` (embedding export)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from facetool.config.base import StrictModel
from facetool.config.detect import DetectConfig
from facetool.config.export import Runtime, runtime_field

DistanceName = Literal["euclidean", "cosine"]


class EmbeddingSettings(StrictModel):
    """How a command that embeds faces runs the model: `facetool.inference.embedder_for` reads these."""

    flip: bool = Field(False, description="Add the mirrored face's embedding, then re-normalise.")
    batch_size: int = Field(256, ge=1, description="Faces per forward pass.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    runtime: Runtime | None = runtime_field()


class EvalConfig(EmbeddingSettings):
    """What `facetool eval` measures and where it writes report.json and roc.png."""

    data: Path | None = Field(None, description="Face cache (.h5) or LFW-style image directory.")
    pairs: Path | None = Field(
        None,
        description="Pairs file: LFW's format, or CSV `path1,path2,same[,fold]` relative to --data "
        "(default: pairs.txt beside the data, see `facetool eval --help`).",
    )
    packs: list[Path] = Field(
        default_factory=list,
        description="insightface verification packs (.bin) to score instead of --data: one row each, flip sum, "
        "10 contiguous folds, as insightface scores them.",
    )
    train_pairs: Path | None = Field(
        None, description="View 1: choose thresholds on these pairs, score --pairs (e.g. pairsDevTrain.txt)."
    )
    fold: int | None = Field(
        None,
        ge=1,
        description="Score only this fold (1..n) of a pairs file with folds, thresholds from the others "
        "(View 2 with a model trained without the fold's people), or from --train-pairs when given.",
    )
    distance: DistanceName = Field(
        "euclidean", description="euclidean (squared, 0..4) or cosine (1-cos, 0..2)."
    )
    out: Path = Field(Path("runs/eval"), description="Folder for report.json, roc.png and a detection cache.")
    detect: DetectConfig = Field(default_factory=DetectConfig, description="Detection when data is a folder.")
    identification: bool = Field(
        False,
        description="Also score 1:N search (rank-1/5, open-set DIR) and clustering (pairwise F, NMI) on every "
        "cached face of the scored pairs' people (clustering needs scikit-learn).",
    )
    identification_far: float = Field(
        0.01, gt=0, lt=1, description="False-alarm rate of the open-set detection-and-identification rate."
    )
    clustering_min_faces: int = Field(
        1, ge=1, description="Cluster only the scored people with at least this many cached faces."
    )


class EmbedConfig(EmbeddingSettings):
    """How `facetool embed` turns images, folders and caches into an embeddings file."""

    detect: DetectConfig = Field(default_factory=DetectConfig, description="Detection of raw images.")
