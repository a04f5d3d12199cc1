"""Settings of `facetool export` (ONNX / safetensors files with a model card) and `facetool verify`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from facetool.config.base import StrictModel
from facetool.config.detect import DetectConfig

Runtime = Literal["torch", "onnx"]


def runtime_field() -> Any:
    """The `runtime` setting of every command that runs a model file (verify, eval, embed)."""
    return Field(
        None, description="torch or onnx (onnxruntime on the CPU); unset: onnx for .onnx files, else torch"
    )


class ExportConfig(StrictModel):
    """How a checkpoint becomes an ONNX or safetensors file, and how closely ONNX must match torch."""

    opset: int = Field(17, ge=13, le=23, description="ONNX opset (17 runs on every current onnxruntime)")
    tolerance: float = Field(
        1e-4, gt=0, description="largest allowed |onnxruntime - torch| over the check embeddings"
    )
    check_faces: int = Field(8, ge=1, le=256, description="faces the ONNX file is checked on")


class VerifyConfig(StrictModel):
    """How `facetool verify` embeds two photos and decides: same person when distance <= threshold."""

    threshold: float | None = Field(
        None,
        ge=0,
        le=4,
        description="decision threshold, within the distance's range (euclidean 0..4, cosine 0..2); "
        "None: the model card's (error when there is none)",
    )
    runtime: Runtime | None = runtime_field()
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (torch runtime).")
    detect: DetectConfig | None = Field(
        None, description="face detection and crop; None: the model card's crop settings, else the defaults"
    )
