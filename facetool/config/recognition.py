"""Settings of the commands that put a trained model to work on collections: `gallery build`, `identify`,
`dataset clean` and `cluster`. Every threshold derives from the model's verification threshold (the card's, or
`threshold`), so one number measured by `eval` drives them all."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from facetool.config.base import StrictModel
from facetool.config.detect import DetectConfig
from facetool.config.export import Runtime, runtime_field


class RecognitionSettings(StrictModel):
    """How a collection command runs the model and crops photos."""

    threshold: float | None = Field(
        None,
        ge=0,
        le=4,
        description="verification threshold (euclidean 0..4, cosine 0..2); None: the model card's "
        "(error when there is none)",
    )
    runtime: Runtime | None = runtime_field()
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (torch runtime).")
    batch_size: int = Field(256, ge=1, description="Faces per forward pass.")
    detect: DetectConfig | None = Field(
        None, description="face detection and crop; None: the model card's crop settings, else the defaults"
    )


class GalleryConfig(RecognitionSettings):
    """`gallery build` and `identify`: exact search, a bounded number of gallery faces at a time."""

    top_k: int = Field(5, ge=1, description="Nearest identities reported per probe.")
    chunk_faces: int = Field(
        65536, ge=1, description="Gallery faces compared at once (memory: chunk x (4 D + 8 probes) bytes)."
    )


class CleanConfig(RecognitionSettings):
    """`dataset clean`: each rule's distance is a factor times the verification threshold t."""

    far_factor: float = Field(
        1.0,
        gt=0,
        description="far: a face farther than far_factor * t from its identity's other faces' centre",
    )
    duplicate_factor: float = Field(
        0.05, ge=0, description="duplicate: two faces of one identity within duplicate_factor * t"
    )
    merge_factor: float = Field(
        0.5, ge=0, description="same-person: two identities' centres within merge_factor * t"
    )
    min_faces: int = Field(
        3, ge=2, description="The far rule needs this many faces in the identity (fewer: no typical face)."
    )
    mark_only: bool = Field(False, description="Keep every face in the output; only report the flags.")


class ClusterConfig(RecognitionSettings):
    """`cluster`: agglomerative clustering cut at threshold_factor * t."""

    threshold_factor: float = Field(1.0, gt=0, description="Clusters are cut at threshold_factor * t.")
    linkage: Literal["average", "complete", "single"] = Field(
        "average", description="How the distance of two clusters follows from their faces' distances."
    )
