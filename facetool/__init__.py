"""facetool: train and evaluate FaceNet-style face embeddings.

The Python API, one verb per command, each loaded on first use so that `import facetool` stays instant (the
CLI holds Ctrl-C from its first lines on, and nothing heavy may run before them):

- `train(config, callbacks=[...])`: the triplet loop (`facetool train`);
- `evaluate(checkpoint, ...)`: the LFW verification protocol on a face cache (`facetool eval`);
- `embed(model, inputs, ...)`: embeddings of images, folders or caches (`facetool embed`);
- `export(checkpoint, output, ...)`: ONNX or safetensors with a model card (`facetool export`);
- `verify(model, photo_a, photo_b, ...)`: same person or not (`facetool verify`);
- `create_backbone`, `create_miner`, `create_loss`, `create_callback`: a plugin by name;
- `list_plugins(...)`: the installed plugins (`facetool plugins list`).
"""

from importlib import import_module
from typing import Any

API: dict[str, str] = {
    "train": "facetool.training.loop:train",
    "evaluate": "facetool.evaluation.pipeline:evaluate_checkpoint",
    "embed": "facetool.embedding:embed_paths",
    "export": "facetool.models.export:export_model",
    "verify": "facetool.verification:verify_pair",
    "create_backbone": "facetool.models.backbone:build_backbone",
    "create_miner": "facetool.miners:get_miner",
    "create_loss": "facetool.losses:get_loss",
    "create_callback": "facetool.training.callbacks:create_callback",
    "list_plugins": "facetool.plugins:list_plugins",
}

__all__ = ["__version__", *API]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facetool")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    """`__version__` and the API verbs, looked up on first use."""
    if name == "__version__":
        return _version()
    if name not in API:
        raise AttributeError(f"module 'facetool' has no attribute {name!r}")
    module, _, attr = API[name].partition(":")
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
