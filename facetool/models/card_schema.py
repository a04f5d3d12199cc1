"""What a model card may say: every field's type and range, and the fields that must agree with each other.

`ModelCard.model_validate(card)` is run on every card facetool writes (before it is written) and reads (before
any value is used), so a card edited by hand, written by another tool or damaged fails in one line naming its
key instead of reaching a tensor allocation or a verdict. Values are strict: `"no"` is not a boolean, `"abc"` not
a number, and no number is NaN or infinite.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from facetool.config.base import ImageSize
from facetool.config.detect import DEFAULT_DETECTOR, Alignment, FaceSelection, ModelFormat

CARD_FORMAT = "facetool-model-card"
CARD_VERSION = 1
# The largest distance each metric reaches between two unit-length embeddings: squared Euclidean |a - b|^2 in
# [0, 4], cosine 1 - cos(a, b) in [0, 2]. A threshold outside [0, max] decides every pair the same way.
DISTANCE_MAX = {"euclidean": 4.0, "cosine": 2.0}
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=4096)]


class Section(BaseModel):
    """A card section: strict types, finite numbers, no keys this version does not know."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Backbone(Section):
    """The backbone plugin, its own settings (its `[backbone]` table; cards before them have none) and sizes."""

    name: Name
    settings: dict[str, object] = Field(default_factory=dict)
    embedding_dim: int = Field(ge=1, le=65536)
    image_size: ImageSize


class Resize(Section):
    """How a face crop of another size becomes the network's input (`facetool.data.transforms.resize`)."""

    function: Literal["torch.nn.functional.interpolate"] = "torch.nn.functional.interpolate"
    mode: Literal["bilinear"] = "bilinear"
    antialias: Literal[True] = True
    align_corners: Literal[False] = False
    applied_to: Literal["the standardised float32 NCHW crop"] = "the standardised float32 NCHW crop"
    when: Literal["face_crop.image_size differs from input.image_size"] = (
        "face_crop.image_size differs from input.image_size"
    )


class Input(Section):
    layout: Literal["NCHW"]
    channels: Literal["RGB"]
    dtype: Literal["float32"]
    normalization: Literal["(x - 127.5) / 128"]
    mean: Literal[127.5]
    divisor: Literal[128.0]
    image_size: ImageSize
    resize: Resize = Resize()


class Output(Section):
    name: Literal["embedding"]
    size: int = Field(ge=1, le=65536)
    l2_normalized: Literal[True]


SettingValue = bool | int | float | str | list[float] | list[int]


class Detector(Section):
    """The detector the training cache was cropped with: its plugin name and own settings, and for the SSD its
    format and weights file by name (never where it lay on the exporting machine)."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False, frozen=True)
    name: Name = DEFAULT_DETECTOR
    format: Literal["tensorflow", "caffe"] | None = None
    weights: Name | None = None
    settings: dict[Name, SettingValue] = Field(default_factory=dict)


class Template(Section):
    """The five points the training faces' landmarks were mapped onto, in pixels of the crop."""

    name: Text
    points: list[list[float]] = Field(min_length=5, max_length=5)


class FaceCrop(Section):
    """The crop settings of the training cache (`facetool detect`), which every command cropping for this model
    follows unless the user overrides them."""

    threshold: float = Field(gt=0, lt=1)
    select: FaceSelection
    margin: float = Field(ge=0, le=4096)
    image_size: ImageSize
    model_format: ModelFormat = "auto"
    detector: Detector | None = None
    align: Alignment = "none"
    template: Template | None = None
    source: Text = ""

    @model_validator(mode="after")
    def _alignment_has_its_template(self) -> FaceCrop:
        if self.align == "five-point" and self.template is None:
            raise ValueError("align is 'five-point' but the card gives no template")
        return self


class Verification(Section):
    """The threshold an eval report chose, with the distance, flip and accuracy it was measured with."""

    threshold: float = Field(ge=0)
    distance: Literal["euclidean", "cosine"]
    flip: bool
    accuracy: float = Field(ge=0, le=1)
    accuracy_std: float = Field(ge=0, le=1)
    protocol: Text = ""
    pairs_file: Text = ""
    num_pairs: int = Field(0, ge=0)
    report: Text = ""

    @model_validator(mode="after")
    def _threshold_reachable(self) -> Verification:
        top = DISTANCE_MAX[self.distance]
        if self.threshold > top:
            raise ValueError(
                f"threshold {self.threshold:g} is beyond the largest {self.distance} distance ({top:g})"
            )
        return self


class ExportCheck(Section):
    runtime: Text
    opset: int = Field(ge=1, le=100)
    faces: int = Field(ge=1)
    max_abs_diff: float = Field(ge=0)
    tolerance: float = Field(gt=0)


class ModelCard(Section):
    """A whole card; `model_format` must match the model file's suffix (checked by the reader)."""

    format: Literal["facetool-model-card"]
    format_version: Literal[1]
    facetool_version: Name
    model_file: Name
    model_format: Literal["onnx", "safetensors"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    backbone: Backbone
    input: Input
    output: Output
    face_crop: FaceCrop
    training: dict[str, object] | None
    verification: Verification | None
    export_check: ExportCheck | None = None
    train_identities: list[Digest] | None = None

    @model_validator(mode="after")
    def _sections_agree(self) -> ModelCard:
        if self.input.image_size != self.backbone.image_size:
            raise ValueError(
                f"input.image_size {self.input.image_size} differs from backbone.image_size "
                f"{self.backbone.image_size}"
            )
        if self.output.size != self.backbone.embedding_dim:
            raise ValueError(
                f"output.size {self.output.size} differs from backbone.embedding_dim {self.backbone.embedding_dim}"
            )
        return self
