"""facetool: train and evaluate FaceNet-style face embeddings."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`__version__`, looked up on first use: importing the package stays instant (the CLI holds Ctrl-C from
    its first lines on, and importlib.metadata would run before them)."""
    if name != "__version__":
        raise AttributeError(f"module 'facetool' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facetool")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"
