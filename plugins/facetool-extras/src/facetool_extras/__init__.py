"""Extra facetool plugins: the `distance-weighted` miner and the `tiny-cnn` backbone."""

__version__ = "0.1.0"
