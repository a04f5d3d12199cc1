"""Settings of `facetool detect`: detector plugin and model, face choice, alignment, crop geometry, speed and
bomb guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from facetool.config.base import ImageSize, NamedTable, StrictModel, refuse_retired

ModelFormat = Literal["auto", "tensorflow", "caffe"]
FaceSelection = Literal["largest", "center", "score"]
Encoding = Literal["jpeg", "raw"]
Alignment = Literal["none", "five-point"]
DEFAULT_DETECTOR = "ssd"
ALIGNED_SIZE = 112  # insightface's aligned face, the size its template is drawn for
RETIRED = {
    "batch_size": "images per worker task is internal tuning, now facetool.detection.runner.BATCH_IMAGES",
    "commit_images": "how often the cache commits is internal tuning (a Ctrl-C commits every finished image), "
    "now facetool.detection.runner.COMMIT_IMAGES",
    "commit_seconds": "how often the cache commits is internal tuning (a Ctrl-C commits every finished image), "
    "now facetool.detection.runner.COMMIT_SECONDS",
}
"""Settings that became module constants: a config or --set naming one is an error saying so (no stored file
is read back as a DetectConfig; older protocol recipes drop them in `upgraded_recipe`)."""


class DetectorConfig(NamedTable):
    """The face detector: `name` picks the plugin (group `facetool.detectors`); every other key is its own
    setting, validated by its plugin's `Settings` model.

    Written as `detector = "mtcnn"` or as a table, `[detector]` with `name = "mtcnn"` and e.g.
    `min_face_size = 40`; on the command line `--set detect.detector=mtcnn --set detect.detector.min_face_size=40`.
    """

    name: str = Field(DEFAULT_DETECTOR, min_length=1, description="Detector plugin (facetool plugins list).")


class DetectConfig(StrictModel):
    """Everything `detect` needs besides the data directory and the cache path.

    `margin` follows FaceNet's alignment script: the crop grows by `margin` in total along each axis
    (half on each side), in pixels when it is >= 1, or as a fraction of the box's width/height when
    it is < 1 (a box crop only: `align = "five-point"` places the face by the template instead). The default 0.2 adds a tenth of the box on every side, roughly what FaceNet's 32-pixel
    margin on a 160-pixel MTCNN crop adds; SSD boxes already include the forehead and chin.
    """

    detector: DetectorConfig = Field(
        default_factory=DetectorConfig,
        description='face detector: "ssd" (the default) or "mtcnn" (five landmarks); its settings in a '
        "[detector] table",
    )
    align: Alignment = Field(
        "none",
        description='"five-point": map the five landmarks onto insightface\'s template (needs a detector '
        'with landmarks); "none": crop the box',
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="minimum detector confidence of a face")
    select: FaceSelection = Field(
        "largest", description="which face to keep when several pass: largest, center or score"
    )
    margin: float = Field(0.2, ge=0, description="context around the box: pixels if >= 1, fraction if < 1")
    image_size: ImageSize = Field(
        160,
        description=f"side of the square face crop ({ALIGNED_SIZE} when align = five-point and it is not set)",
    )
    encoding: Encoding = Field("jpeg", description="how the cache stores crops: jpeg or raw")
    workers: int | None = Field(None, ge=1, description="worker processes (unset: all usable cores)")
    max_pixels: int = Field(
        50_000_000, ge=1, description="refuse images larger than this (decompression bombs)"
    )
    model_format: ModelFormat = Field(
        "auto", description="SSD detector format to look for: auto, tensorflow or caffe"
    )
    model_dir: Path | None = Field(None, description="folder holding the SSD detector files (searched first)")
    model_weights: Path | None = Field(None, description="explicit SSD weights file (.pb or .caffemodel)")
    model_graph: Path | None = Field(None, description="explicit SSD graph file (.pbtxt or deploy.prototxt)")
    shard: str | None = Field(
        None,
        pattern=r"^\d+/\d+$",
        description="i/n: detect only shard i (0-based) of n, identities dealt out in sorted order; "
        "run each shard on its own machine, then `facetool dataset merge` the caches (unset under torchrun: "
        "RANK/WORLD_SIZE)",
    )

    @model_validator(mode="before")
    @classmethod
    def _retired_settings(cls, data: Any) -> Any:
        return refuse_retired(data, RETIRED)

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, value: str | None) -> str | None:
        if value is not None:
            index, count = (int(part) for part in value.split("/"))
            if count < 1 or index >= count:
                raise ValueError(f"shard {value}: expected i/n with 0 <= i < n")
        return value

    @model_validator(mode="after")
    def _aligned_size(self) -> DetectConfig:
        if self.align == "five-point" and "image_size" not in self.model_fields_set:
            self.__dict__["image_size"] = ALIGNED_SIZE  # a default, not a setting the user gave
        return self

    @property
    def shard_parts(self) -> tuple[int, int] | None:
        """(index, count) of the shard, or None for the whole directory."""
        if self.shard is None:
            return None
        index, count = self.shard.split("/")
        return int(index), int(count)
