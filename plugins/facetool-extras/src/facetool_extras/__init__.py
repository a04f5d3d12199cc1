"""Extra facetool plugins: the `distance-weighted` miner, the `tiny-cnn` and `small-cnn` backbones (`head = "avg" | "gdc"`), margin-softmax losses."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facetool-extras")  # one source of truth: `version` in its pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
