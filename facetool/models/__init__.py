"""Embedding networks: backbones found through entry points, and loading trained or pretrained models."""

from facetool.models.backbone import DEFAULT_BACKBONE, available_backbones, build_backbone
from facetool.models.loading import ModelInfo, load_embedding_model

__all__ = ["DEFAULT_BACKBONE", "ModelInfo", "available_backbones", "build_backbone", "load_embedding_model"]
