"""Extra facetool plugins: the `distance-weighted` miner, the `tiny-cnn`/`tiny-cnn-gdc`/`small-cnn` backbones, margin-softmax losses."""

__version__ = "0.1.0"
