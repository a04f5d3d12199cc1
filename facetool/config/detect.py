"""Settings of `facetool detect`: detector plugin and model, face choice, alignment, crop geometry, speed and
bomb guard."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from facetool.config.base import ImageSize, NamedTable, StrictModel

ModelFormat = Literal["auto", "tensorflow", "caffe"]
FaceSelection = Literal["largest", "center", "score"]
Encoding = Literal["jpeg", "raw"]
Alignment = Literal["none", "five-point"]
DEFAULT_DETECTOR = "ssd"
ALIGNED_SIZE = 112  # insightface's aligned face, the size its template is drawn for


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
    select: FaceSelection = Field("largest", description="which face to keep when several pass")
    margin: float = Field(0.2, ge=0, description="context around the box: pixels if >= 1, fraction if < 1")
    image_size: ImageSize = Field(
        160,
        description=f"side of the square face crop ({ALIGNED_SIZE} when align = five-point and it is not set)",
    )
    encoding: Encoding = Field("jpeg", description="how the cache stores crops")
    workers: int | None = Field(None, ge=1, description="worker processes; None means all usable cores")
    batch_size: int = Field(16, ge=1, le=4096, description="images per worker task")
    commit_images: int = Field(256, ge=1, description="commit the cache at least every this many images")
    commit_seconds: float = Field(5.0, gt=0, description="... or every this many seconds")
    max_pixels: int = Field(
        50_000_000, ge=1, description="refuse images larger than this (decompression bombs)"
    )
    model_format: ModelFormat = Field("auto", description="SSD detector format to look for")
    model_dir: Path | None = Field(None, description="folder holding the SSD detector files (searched first)")
    model_weights: Path | None = Field(None, description="explicit SSD weights file (.pb or .caffemodel)")
    model_graph: Path | None = Field(None, description="explicit SSD graph file (.pbtxt or deploy.prototxt)")
    shard: str | None = Field(
        None,
        pattern=r"^\d+/\d+$",
        description="i/n: detect only shard i (0-based) of n, identities dealt out in sorted order; "
        "run each shard on its own machine, then `facetool dataset merge` the caches",
    )

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
