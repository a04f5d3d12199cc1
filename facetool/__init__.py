"""facetool: train and evaluate FaceNet-style face embeddings."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facetool")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
