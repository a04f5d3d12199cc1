"""Extra facetool plugins: the `distance-weighted` miner, the `tiny-cnn` and `small-cnn` backbones (`head = "avg" | "gdc"`), margin-softmax losses."""

__version__ = "0.1.0"
